"""/healthz (alive) and /readyz (database, migrations, Redis), on the real app and databases."""
import pytest
from sqlalchemy import text

from portal import maintenance
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.views import health
from tests.conftest import make_app


def test_healthz_answers_without_touching_the_database(client, app):
    app.config["SQLALCHEMY_DATABASE_URI"] = "unused"  # not read: /healthz runs no query
    db.engine.dispose()
    with app.app_context():
        answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.get_json() == {"status": "ok"}
    assert answer.headers["X-Request-Id"]


def test_readyz_is_ok_on_a_migrated_database(client, app):
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.get_json()
    checks = answer.get_json()["checks"]
    assert checks["database"] == "ok" and checks["migrations"] == "ok"
    assert checks.get("redis", "ok") == "ok" and ("redis" in checks) == bool(app.config["REDIS_URL"])


def test_readyz_says_when_migrations_are_not_at_head(client, app):
    [head] = health.head_revisions()
    with atomic():
        db.session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        answer = client.get("/readyz")
        assert answer.status_code == 503 and answer.headers["Retry-After"]
        assert answer.get_json() == {"status": "unavailable", "checks": {"database": "ok", "migrations": "not at head",
                                                                           **_redis_ok(app)}}
    finally:
        with atomic():
            db.session.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head})


def _redis_ok(app) -> dict:
    return {"redis": "ok"} if app.config["REDIS_URL"] else {}


def test_readyz_names_an_unreachable_database_without_its_url(database, tmp_path):
    password = "pw-never-shown-7f3a9"
    app = make_app(database, tmp_path, SQLALCHEMY_DATABASE_URI=f"postgresql+psycopg://tollgate:{password}@127.0.0.1:9/x",
                   SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": 2}})
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["database"] == "unreachable"
    assert password not in answer.get_data(as_text=True) and "127.0.0.1" not in answer.get_data(as_text=True)
    assert app.test_client().get("/healthz").status_code == 200  # alive all the same


def test_readyz_names_unreachable_redis_without_its_url(database, tmp_path):
    password = "redis-pw-never-shown-91c"
    app = make_app(database, tmp_path, REDIS_URL=f"redis://:{password}@127.0.0.1:9/0")
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    with app.app_context():
        db.engine.dispose()  # the app is this test's own: close its pooled connection now
    body = answer.get_json()
    assert body["checks"]["redis"] == "unreachable" and body["checks"]["database"] == "ok"
    assert password not in answer.get_data(as_text=True)


def test_readiness_is_cached_for_a_few_seconds(client, app, monkeypatch):
    ran = []
    real = health.check
    monkeypatch.setattr(health, "check", lambda a: ran.append(1) or real(a))
    for _ in range(3):
        assert client.get("/readyz").status_code == 200
    assert len(ran) == 1


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_health_answers_during_maintenance_and_without_consent(client, app, path):
    with atomic():
        maintenance.turn_on(Actor.cli())
    answer = client.get(path, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert answer.status_code == 200
