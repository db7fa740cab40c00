"""`flask --app wsgi doctor`: each check, on a good and a bad setup (portal/doctor.py), and the command."""
import os
import secrets

import pytest
from sqlalchemy import text

from portal import catalog, doctor, legal
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import LegalKind

GOOD = {"PORTAL_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48), "PUBLIC_URL": "https://ai.example.com",
        "SMTP_URL": "smtp://mailer:pw@mail.example.com:587", "MAIL_FROM": "Tollgate <no-reply@example.com>",
        "MAIL_OUTBOX": "/srv/outbox", "STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_WEBHOOK_SECRET": "whsec_abc",
        "REDIS_URL": "", "TRUSTED_PROXY_HOPS": 1, "TRUSTED_PROXY": "127.0.0.1", "HOST": "127.0.0.1"}


def levels(finding) -> str:
    return finding.level


@pytest.mark.one_backend
@pytest.mark.parametrize("check, bad, level, says", [
    (doctor.secret_key, {"SECRET_KEY": "short"}, doctor.PROBLEM, "5 characters"),
    (doctor.secret_key, {"SECRET_KEY": "a" * 20 + "b" * 20}, doctor.PROBLEM, "not random"),
    (doctor.public_url, {"PUBLIC_URL": "http://ai.example.com"}, doctor.PROBLEM, "not https"),
    (doctor.public_url, {"PUBLIC_URL": "https://localhost"}, doctor.PROBLEM, "names this machine"),
    (doctor.public_url, {"PORTAL_ENV": "development"}, doctor.WARNING, "not production"),
    (doctor.smtp, {"SMTP_URL": ""}, doctor.WARNING, "written to files in /srv/outbox"),
    (doctor.smtp, {"SMTP_URL": "mail.example.com"}, doctor.PROBLEM, "must look like"),
    (doctor.smtp, {"MAIL_FROM": "Tollgate <no-reply@localhost>"}, doctor.WARNING, "MAIL_FROM"),
    (doctor.stripe, {"STRIPE_SECRET_KEY": ""}, doctor.WARNING, "cannot top up by card"),
    (doctor.stripe, {"STRIPE_WEBHOOK_SECRET": ""}, doctor.PROBLEM, "never be credited"),
    (doctor.stripe, {"STRIPE_SECRET_KEY": "sk_test_abc"}, doctor.WARNING, "test-mode"),
    (doctor.trusted_proxy, {"TRUSTED_PROXY": "*"}, doctor.PROBLEM, "any client can pose"),
    (doctor.trusted_proxy, {"HOST": "0.0.0.0"}, doctor.WARNING, "go around the proxy"),
    (doctor.trusted_proxy, {"TRUSTED_PROXY_HOPS": 0, "HOST": "0.0.0.0"}, doctor.WARNING, "faces the internet"),
    (doctor.trusted_proxy, {"TRUSTED_PROXY_HOPS": 0}, doctor.WARNING, "looks like the proxy's address"),
])
def test_each_configuration_check_good_and_bad(check, bad, level, says):
    assert check(GOOD).level == doctor.OK, check(GOOD)
    finding = check({**GOOD, **bad})
    assert finding.level == level and says in finding.message, finding
    for secret in ("pw", GOOD["SECRET_KEY"], "sk_live_abc", "whsec_abc"):
        assert f":{secret}@" not in finding.message and (len(secret) < 4 or secret not in finding.message)


@pytest.mark.one_backend
def test_redis_good_and_bad():
    assert doctor.redis_reachable({"REDIS_URL": ""}).level == doctor.OK
    down = doctor.redis_reachable({"REDIS_URL": "redis://:hunter22@127.0.0.1:1/0"})
    assert down.level == doctor.PROBLEM and "hunter22" not in down.message
    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL names no Redis to reach")
    assert doctor.redis_reachable({"REDIS_URL": os.environ["REDIS_URL"]}).level == doctor.OK


def test_terms_and_privacy_good_and_bad(app):
    finding = doctor.legal_documents()
    assert finding.level == doctor.PROBLEM and "nobody can register" in finding.message
    assert "terms publish" in finding.message and "privacy publish" in finding.message
    with atomic():
        legal.publish(LegalKind.TERMS, "1", "# Terms", actor=Actor.cli())
    assert "no privacy" in doctor.legal_documents().message
    with atomic():
        legal.publish(LegalKind.PRIVACY, "1", "# Privacy", actor=Actor.cli())
    assert doctor.legal_documents().level == doctor.OK


def test_migrations_good_and_bad(app):
    assert doctor.migrations().level == doctor.OK
    with atomic():
        current = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
        db.session.execute(text("UPDATE alembic_version SET version_num = '0019'"))
    try:
        finding = doctor.migrations()
        assert finding.level == doctor.PROBLEM and "db upgrade" in finding.message
    finally:
        with atomic():  # the Postgres test database is shared by the session's tests
            db.session.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})


def test_upstream_keys_good_and_bad(app, cli):
    with atomic():
        catalog.add_upstream("good", "openai", "https://api.openai.com/v1", "sk-encrypted-at-rest-123")
        catalog.add_upstream("legacy", "openai", "https://api.openai.com/v1", "sk-placeholder")
        db.session.execute(text("UPDATE upstream SET api_key = 'sk-stored-in-plaintext' WHERE name = 'legacy'"))
    finding = doctor.upstream_keys()
    assert finding.level == doctor.PROBLEM and "legacy" in finding.message and "good" not in finding.message
    assert "upstreams rotate-keys" in finding.message and "sk-stored-in-plaintext" not in finding.message
    assert cli("upstreams", "rotate-keys").exit_code == 0  # the fix the finding names
    assert doctor.upstream_keys().level == doctor.OK


def test_check_url_good_and_bad(app, gateway):
    app.config["PUBLIC_URL"] = gateway
    assert doctor.served_url(app.config, gateway).level == doctor.OK  # real /readyz, through real waitress
    app.config["PUBLIC_URL"] = "https://ai.example.com"
    mismatch = doctor.served_url(app.config, gateway)
    assert mismatch.level == doctor.PROBLEM and "not PUBLIC_URL" in mismatch.message
    app.config["PUBLIC_URL"] = gateway
    not_ready = doctor.served_url(app.config, gateway, fetch=lambda url: (url, 503))
    assert not_ready.level == doctor.PROBLEM and "503" in not_ready.message
    gone = doctor.served_url(app.config, "http://127.0.0.1:1")
    assert gone.level == doctor.PROBLEM and "could not be fetched" in gone.message


@pytest.fixture
def app_config():
    return {key: value for key, value in GOOD.items() if key != "MAIL_OUTBOX"}


def test_the_command_passes_a_good_setup_and_fails_a_bad_one(app, cli):
    with atomic():
        legal.publish(LegalKind.TERMS, "1", "# Terms", actor=Actor.cli())
        legal.publish(LegalKind.PRIVACY, "1", "# Privacy", actor=Actor.cli())
        catalog.add_upstream("good", "openai", "https://api.openai.com/v1", "sk-encrypted-at-rest-123")
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert all(line.startswith("ok ") for line in lines[:-1]), result.output
    assert len(lines) == 10 and lines[-1] == "0 problem(s), 0 warning(s)"

    app.config.update(SECRET_KEY="short", TRUSTED_PROXY="*")
    result = cli("doctor")
    assert result.exit_code == 1
    assert "problem  secret key" in result.output and "problem  trusted proxy" in result.output
    assert "2 problem(s)" in result.output and "short" not in result.output.replace("5 characters", "")
