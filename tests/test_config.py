import pytest

from portal.config import ConfigError, database_url, load


def test_development_generates_and_keeps_a_secret_key(tmp_path):
    first = load(str(tmp_path), {})
    assert first["PORTAL_ENV"] == "development" and len(first["SECRET_KEY"]) >= 32
    assert load(str(tmp_path), {})["SECRET_KEY"] == first["SECRET_KEY"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert first["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.db'}"
    assert first["SESSION_COOKIE_SECURE"] is False


def test_production_refuses_to_start_without_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY must be set"):
        load(str(tmp_path), {"PORTAL_ENV": "production"})
    assert not (tmp_path / "secret_key").exists()
    config = load(str(tmp_path), {"PORTAL_ENV": "production", "SECRET_KEY": "s" * 40})
    assert config["SESSION_COOKIE_SECURE"] is True and config["SECRET_KEY"] == "s" * 40


@pytest.mark.parametrize("environ, message", [
    ({"PORTAL_ENV": "staging"}, "PORTAL_ENV must be one of"),
    ({"PORT": "http"}, "PORT must be a whole number"),
    ({"PORT": "0"}, "PORT must be at least 1"),
])
def test_bad_settings_are_named(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        load(str(tmp_path), environ)


@pytest.mark.parametrize("raw, url", [
    ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
    ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
    ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ("sqlite:////var/lib/tollgate.db", "sqlite:////var/lib/tollgate.db"),
])
def test_database_url_uses_psycopg3(raw, url):
    assert database_url(raw) == url


def test_signup_credit_defaults_and_validation(tmp_path):
    assert load(str(tmp_path), {})["SIGNUP_CREDIT"] == 1_000_000
    assert load(str(tmp_path), {"PORTAL_ENV": "production", "SECRET_KEY": "s"})["SIGNUP_CREDIT"] == 0
    assert load(str(tmp_path), {"SIGNUP_CREDIT_USD": "0.25"})["SIGNUP_CREDIT"] == 250_000
    with pytest.raises(ConfigError, match="SIGNUP_CREDIT_USD"):
        load(str(tmp_path), {"SIGNUP_CREDIT_USD": "lots"})
