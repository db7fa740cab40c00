import pytest

from portal import serving
from portal.config import ConfigError, database_url, load, trusted_hosts


def test_development_generates_and_keeps_a_secret_key(tmp_path):
    first = load(str(tmp_path), {})
    assert first["PORTAL_ENV"] == "development" and len(first["SECRET_KEY"]) >= 32
    assert load(str(tmp_path), {})["SECRET_KEY"] == first["SECRET_KEY"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert first["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.db'}"
    assert first["SESSION_COOKIE_SECURE"] is False


PRODUCTION = {"PORTAL_ENV": "production", "SECRET_KEY": "s" * 40, "PUBLIC_URL": "https://ai.example.com"}


def test_production_refuses_to_start_without_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="SECRET_KEY must be set"):
        load(str(tmp_path), {"PORTAL_ENV": "production", "PUBLIC_URL": "https://ai.example.com"})
    assert not (tmp_path / "secret_key").exists()
    config = load(str(tmp_path), PRODUCTION)
    assert config["SESSION_COOKIE_SECURE"] is True and config["SECRET_KEY"] == "s" * 40


@pytest.mark.parametrize("environ, message", [
    ({"PORTAL_ENV": "staging"}, "PORTAL_ENV must be one of"),
    ({"PORT": "http"}, "PORT must be a whole number"),
    ({"PORT": "0"}, "PORT must be at least 1"),
    ({"DRAIN_SECONDS": "-1"}, "DRAIN_SECONDS"),
    ({"DRAIN_SECONDS": "soon"}, "DRAIN_SECONDS must be a number of seconds"),
    ({"TOOL_CALLS_CEILING": "0"}, "TOOL_CALLS_CEILING must be at least 1"),
    ({"TOOL_CALLS_CEILING": "1.5"}, "TOOL_CALLS_CEILING must be a whole number"),
])
def test_bad_settings_are_named(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        load(str(tmp_path), environ)


def test_pricing_settings_defaults_and_zero_drain(tmp_path):
    config = load(str(tmp_path), {})
    assert (config["DRAIN_SECONDS"], config["TOOL_CALLS_CEILING"]) == (5.0, 20)
    config = load(str(tmp_path), {"DRAIN_SECONDS": "0", "TOOL_CALLS_CEILING": "3"})
    assert (config["DRAIN_SECONDS"], config["TOOL_CALLS_CEILING"]) == (0.0, 3)  # 0 turns draining off


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
    assert load(str(tmp_path), PRODUCTION)["SIGNUP_CREDIT"] == 0
    assert load(str(tmp_path), {"SIGNUP_CREDIT_USD": "0.25"})["SIGNUP_CREDIT"] == 250_000
    with pytest.raises(ConfigError, match="SIGNUP_CREDIT_USD"):
        load(str(tmp_path), {"SIGNUP_CREDIT_USD": "lots"})


@pytest.mark.parametrize("key", ["x", "s" * 31])
def test_production_refuses_a_short_secret_key(tmp_path, key):
    with pytest.raises(ConfigError, match="SECRET_KEY must be at least 32 characters"):
        load(str(tmp_path), {**PRODUCTION, "SECRET_KEY": key})
    assert load(str(tmp_path), {**PRODUCTION, "SECRET_KEY": "s" * 32})["SECRET_KEY"] == "s" * 32
    assert load(str(tmp_path), {"SECRET_KEY": "x"})["SECRET_KEY"] == "x"  # development: the operator's choice


def test_public_url_defaults_to_the_served_address_in_development(tmp_path):
    assert load(str(tmp_path), {})["PUBLIC_URL"] == "http://127.0.0.1:8000"
    assert load(str(tmp_path), {"HOST": "localhost", "PORT": "9000"})["PUBLIC_URL"] == "http://localhost:9000"
    assert load(str(tmp_path), {"HOST": "0.0.0.0"})["PUBLIC_URL"] == "http://127.0.0.1:8000"
    assert load(str(tmp_path), {"PUBLIC_URL": "https://AI.Example.com/"})["PUBLIC_URL"] == "https://ai.example.com"


def test_production_requires_an_https_public_url(tmp_path):
    with pytest.raises(ConfigError, match="PUBLIC_URL must be set"):
        load(str(tmp_path), {**PRODUCTION, "PUBLIC_URL": ""})
    with pytest.raises(ConfigError, match="PUBLIC_URL must use https"):
        load(str(tmp_path), {**PRODUCTION, "PUBLIC_URL": "http://ai.example.com"})
    assert load(str(tmp_path), {**PRODUCTION, "PUBLIC_URL": "http://localhost:8000"})["PUBLIC_URL"] == \
        "http://localhost:8000"
    assert load(str(tmp_path), PRODUCTION)["PUBLIC_URL"] == "https://ai.example.com"


@pytest.mark.parametrize("raw, message", [
    ("ai.example.com", "must look like"),
    ("ftp://ai.example.com", "must look like"),
    ("https://", "must look like"),
    ("https://exa mple.com", "must look like"),
    ("https://münchen.example", "must look like"),
    ("https://ai.example.com/portal", "site's root"),
    ("https://ai.example.com/?a=1", "site's root"),
    ("https://ai.example.com#top", "site's root"),
    ("https://user:pw@ai.example.com", "site's root"),
    ("https://ai.example.com:99999", "not a valid URL"),
    ("http://[::1", "not a valid URL"),
])
def test_bad_public_urls_are_named(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=f"PUBLIC_URL.*{message}"):
        load(str(tmp_path), {"PUBLIC_URL": raw})


def test_trusted_proxy_is_one_address_or_star(tmp_path):
    assert load(str(tmp_path), {})["TRUSTED_PROXY"] == "127.0.0.1"
    assert load(str(tmp_path), {"TRUSTED_PROXY": " 10.0.0.2 "})["TRUSTED_PROXY"] == "10.0.0.2"
    assert load(str(tmp_path), {"TRUSTED_PROXY": "*"})["TRUSTED_PROXY"] == "*"
    with pytest.raises(ConfigError, match="TRUSTED_PROXY must be"):
        load(str(tmp_path), {"TRUSTED_PROXY": "10.0.0.0/8"})


def test_trusted_hosts_come_from_public_url_and_the_served_address():
    assert trusted_hosts("https://ai.example.com", "0.0.0.0") == ["ai.example.com", "localhost", "127.0.0.1"]
    assert trusted_hosts("http://127.0.0.1:8000", "10.1.2.3") == ["127.0.0.1", "localhost", "10.1.2.3"]


def test_waitress_believes_forwarded_headers_only_from_the_trusted_proxy(tmp_path):
    config = load(str(tmp_path), {})
    assert serving.options(config)["clear_untrusted_proxy_headers"] is True
    assert "trusted_proxy" not in serving.options(config)
    config = load(str(tmp_path), {"TRUSTED_PROXY_HOPS": "1", "TRUSTED_PROXY": "10.0.0.2"})
    options = serving.options(config)
    assert (options["trusted_proxy"], options["trusted_proxy_count"], options["trusted_proxy_headers"]) == \
        ("10.0.0.2", 1, {"x-forwarded-for", "x-forwarded-proto"})


@pytest.mark.parametrize("environ, message", [
    ({"STRIPE_SECRET_KEY": "sk_test_x"}, "STRIPE_WEBHOOK_SECRET must be set with STRIPE_SECRET_KEY"),
    ({"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "sk_test_x"}, "signing secret \\(whsec_"),
    ({"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_a,,"}, "signing secret \\(whsec_"),
    ({"STRIPE_PAYMENT_METHODS": "card,bitcoin"}, "unknown: bitcoin"),
    ({"STRIPE_PAYMENT_METHODS": " , "}, "unknown: \\(empty\\)"),
    ({"STRIPE_API_BASE": "ftp://x"}, "STRIPE_API_BASE must be an http"),
    ({"TOPUP_MIN_USD": "10", "TOPUP_MAX_USD": "5"}, "TOPUP_MIN_USD must be positive and at most TOPUP_MAX_USD"),
    ({"TOPUP_MIN_USD": "0"}, "TOPUP_MIN_USD must be positive"),
    ({"TOPUP_PRESETS_USD": "5,1000"}, "every TOPUP_PRESETS_USD amount must lie between"),
    ({"TOPUP_PRESETS_USD": "5.005"}, "TOPUP_PRESETS_USD must be whole cents"),
    ({"TOPUP_PRESETS_USD": "five"}, "TOPUP_PRESETS_USD"),
    ({"JOBS_INTERVAL_SECONDS": "-1"}, "JOBS_INTERVAL_SECONDS must be at least 0"),
])
def test_bad_payment_settings_are_named(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        load(str(tmp_path), environ)


def test_payment_settings_defaults_and_spelling(tmp_path):
    config = load(str(tmp_path), {})
    assert (config["STRIPE_SECRET_KEY"], config["STRIPE_PAYMENT_METHODS"]) == ("", ("card",))
    assert (config["TOPUP_MIN"], config["TOPUP_MAX"], config["JOBS_INTERVAL_SECONDS"]) == (5_000_000, 500_000_000, 3600)
    config = load(str(tmp_path), {"STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_new, whsec_old",
                                  "STRIPE_PAYMENT_METHODS": "Card, alipay,wechat_pay,card", "TOPUP_PRESETS_USD": "10,10,25.50",
                                  "STRIPE_API_BASE": "http://127.0.0.1:12111/"})
    assert config["STRIPE_PAYMENT_METHODS"] == ("card", "alipay", "wechat_pay")
    assert config["TOPUP_PRESETS"] == (10_000_000, 25_500_000)
    assert config["STRIPE_API_BASE"] == "http://127.0.0.1:12111"
