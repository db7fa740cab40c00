"""/healthz (alive) and /readyz (database, migrations, Redis), on the real app and databases; and a
serving process whose Redis is gone, or goes away and comes back, as an operator would see it."""
import re
import shutil
import subprocess
import time

import pytest
import redis
import requests
from sqlalchemy import select, text

from portal import maintenance
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import User
from portal.views import health
from tests.conftest import make_app
from tests.processes import Serving, free_port, serving_env


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


# -- Redis gone, as a serving process sees it ----------------------------------------------------------

def _caller(app) -> tuple[str, str]:
    """An echo model, a user with credit and the published terms; (email, API key)."""
    from portal import apikeys, catalog
    from portal.pricing import Price
    from tests.factories import make_user
    from tests.web.helpers import publish_terms

    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("echo-1", "echo", Price(input=2_500_000, output=10_000_000), max_output_tokens=1024)
    publish_terms()
    user = make_user("caller@example.com", credit=5_000_000)
    with atomic():
        return user.email, apikeys.issue(user, "tests")[1]


def _api_call(url: str, key: str) -> int:
    return requests.post(f"{url}/v1/chat/completions", timeout=60, headers={"Authorization": f"Bearer {key}"},
                         json={"model": "echo-1", "max_tokens": 8,
                               "messages": [{"role": "user", "content": "hi"}]}).status_code


def _form(session: requests.Session, url: str, data: dict) -> requests.Response:
    """Submit a portal form as a browser does: its page first, for the session cookie and CSRF token."""
    page = session.get(url, timeout=30)
    assert page.status_code == 200, page.text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    return session.post(url, data={"csrf_token": token, **data}, timeout=30, allow_redirects=False)


def _login_and_sign_up(url: str, email: str, number: int) -> None:
    from tests.factories import PASSWORD

    with requests.Session() as browser:
        answer = _form(browser, f"{url}/login", {"email": email, "password": PASSWORD})
        assert answer.status_code == 302 and "/login" not in answer.headers["Location"], answer.text
        assert browser.get(url + answer.headers["Location"], timeout=30).status_code == 200
    with requests.Session() as browser:
        answer = _form(browser, f"{url}/register", {"email": f"new{number}@example.com",
                                                   "password": "a long passphrase", "accept_terms": "y"})
        # post/redirect/get: the sign-up answers 303 back to /register, which then says "check your inbox"
        assert answer.status_code == 303 and answer.headers["Location"].endswith("/register"), answer.text
        inbox = browser.get(url + "/register", timeout=30)
        assert inbox.status_code == 200 and f"new{number}@example.com" in inbox.text, inbox.text
    db.session.rollback()
    assert db.session.scalar(select(User.id).where(User.email == f"new{number}@example.com")) is not None


def _redis_failures(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    answer = requests.get(f"{url}/metrics", timeout=30)
    assert answer.status_code == 200
    return sum(s.value for family in text_string_to_metric_families(answer.text) for s in family.samples
               if s.name == "tollgate_redis_failures_total" and s.labels == {"use": "ratelimit"})


def _readiness(url: str) -> tuple[int, dict]:
    answer = requests.get(f"{url}/readyz", timeout=30)
    return answer.status_code, answer.json()["checks"]


def _poll(check, what: str, server: Serving, timeout: float = 90.0):
    deadline = time.monotonic() + timeout  # /readyz keeps its answer a few seconds; a busy machine adds more
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}\n{server.tail()}"
        time.sleep(0.2)
    return found


@pytest.mark.slow
def test_a_server_whose_redis_never_answers_serves_all_the_same(app, tmp_path):
    email, key = _caller(app)
    closed = free_port()  # nothing listens there: every Redis call is refused
    env = serving_env(app, tmp_path, WORKERS=1, REDIS_URL=f"redis://127.0.0.1:{closed}/0")
    with Serving(env) as server:
        server.wait_ready()
        assert _redis_failures(server.url) == 0
        assert _api_call(server.url, key) == 200  # its rate limits fall back to this process's counters
        assert _redis_failures(server.url) >= 1
        _login_and_sign_up(server.url, email, 1)
        status, checks = _readiness(server.url)
        assert status == 503 and checks == {"database": "ok", "migrations": "ok", "redis": "unreachable"}
        server.wait_for(r"rate-limit counters: Redis unreachable")
        assert server.stop() == 0


class RedisServer:
    """A redis-server of this test's own, on a port of its own, to stop and start again."""

    def __init__(self, port: int, folder):
        self.port, self.folder, self.process = port, folder, None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", str(self.folder)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                assert time.monotonic() < deadline and self.process.poll() is None, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server binary here")
def test_redis_going_away_and_coming_back_while_serving(app, tmp_path):
    email, key = _caller(app)
    own = RedisServer(free_port(), tmp_path).start()
    prefix = app.config["REDIS_PREFIX"]
    try:
        env = serving_env(app, tmp_path, WORKERS=1, REDIS_URL=f"redis://127.0.0.1:{own.port}/0")
        with Serving(env) as server:
            server.wait_ready()
            assert _api_call(server.url, key) == 200
            assert list(redis.Redis(port=own.port).scan_iter(match=prefix + "*")), "counted in Redis"
            assert _readiness(server.url) == (200, {"database": "ok", "migrations": "ok", "redis": "ok"})
            failures = _redis_failures(server.url)

            own.stop()
            assert _api_call(server.url, key) == 200
            _login_and_sign_up(server.url, email, 2)
            assert _redis_failures(server.url) > failures
            _poll(lambda: _readiness(server.url) == (503, {"database": "ok", "migrations": "ok",
                                                           "redis": "unreachable"}),
                  "/readyz did not report Redis gone", server)
            server.wait_for(r"rate-limit counters: Redis unreachable")

            own.start()  # empty: what it counted before is gone, as after a real Redis restart
            _poll(lambda: _readiness(server.url)[0] == 200, "/readyz did not see Redis back", server)
            server.wait_for(r"rate-limit counters: Redis reachable again")
            assert _api_call(server.url, key) == 200
            assert list(redis.Redis(port=own.port).scan_iter(match=prefix + "*")), "counted in Redis again"
            assert server.stop() == 0
    finally:
        own.stop()
