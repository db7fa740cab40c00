"""`flask upstreams ...`: the private-host allowance, the chat-only flag, enable/disable, test, list with health,
rotate-keys."""
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from portal import catalog, egress
from portal.extensions import db
from portal.models import AuditEntry
from tests.cli.helpers import ok, refused
from tests.web.test_admin_upstreams import SECRET, ModelsServer


def actions() -> list[tuple[str, str]]:
    db.session.rollback()
    return [(e.action, e.actor) for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


@pytest.fixture
def models_server():
    server = ModelsServer()
    yield server
    server.stop()


@pytest.mark.parametrize("base_url", ["http://169.254.169.254/v1", "http://127.0.0.1:8000/v1", "http://[::1]:8000/v1",
                                      "http://10.0.0.1/v1", "http://2130706433/v1", "http://0x7f.1/v1"])
def test_add_refuses_private_hosts_without_the_flag(app, cli, base_url):
    refused(cli("upstreams", "add", "local", "--protocol", "openai", "--base-url", base_url), "address")
    assert catalog.list_upstreams() == [] and actions() == []


def test_add_and_update_with_the_private_host_flag(app, cli):
    out = ok(cli("upstreams", "add", "local", "--protocol", "openai", "--base-url", "http://127.0.0.1:11434/v1",
                 "--allow-private-host", "--reason", "ollama on this box"))
    assert "private host allowed" in out
    refused(cli("upstreams", "update", "local", "--no-allow-private-host"), "private, loopback")
    ok(cli("upstreams", "update", "local", "--base-url", "https://models.example.com/v1", "--no-allow-private-host"))
    db.session.rollback()
    up = catalog.find_upstream("local")
    assert (up.base_url, up.allow_private_host) == ("https://models.example.com/v1", False)
    assert [a for a, _ in actions()] == ["upstream.add", "upstream.update"]
    assert all(actor.startswith("cli:") for _, actor in actions())


def test_production_wants_https_unless_the_host_is_allowed_private(app, cli):
    app.config["PORTAL_ENV"] = "production"
    refused(cli("upstreams", "add", "plain", "--protocol", "openai", "--base-url", "http://api.example.com/v1"),
            "must use https")
    ok(cli("upstreams", "add", "lan", "--protocol", "openai", "--base-url", "http://10.0.0.7:8000/v1",
           "--allow-private-host"))


def test_disable_and_enable_are_idempotent(app, cli):
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    assert "disabled upstream echo" in ok(cli("upstreams", "disable", "echo", "--reason", "outage"))
    assert ok(cli("upstreams", "disable", "echo")) == "upstream echo is already disabled; nothing changed\n"
    assert "DISABLED" in ok(cli("upstreams", "list"))
    assert "enabled upstream echo" in ok(cli("upstreams", "enable", "echo"))
    assert ok(cli("upstreams", "enable", "echo")) == "upstream echo is already enabled; nothing changed\n"
    refused(cli("upstreams", "disable", "ghost"), "no upstream named 'ghost'")
    assert [a for a, _ in actions()] == ["upstream.add", "upstream.disable", "upstream.enable"]


def test_list_shows_state_credential_and_health_never_the_key(app, cli):
    ok(cli("upstreams", "add", "oai", "--protocol", "openai", "--base-url", "https://api.example.com/v1",
           "--api-key", "-", input=SECRET + "\n"))
    listing = ok(cli("upstreams", "list"))
    assert listing == ("oai\topenai\thttps://api.example.com/v1\tcredential set\tdialect generic-openai\n"
                       "  enabled; last hour: 0 calls, – errors, latency p50 -, first byte p50 -\n")
    assert SECRET not in listing and "gAAAA" not in listing


def test_test_reports_the_models_or_the_failure(app, cli, models_server, monkeypatch):
    ok(cli("upstreams", "add", "local", "--protocol", "openai", "--base-url", models_server.url + "/v1",
           "--api-key", SECRET, "--allow-private-host"))
    out = ok(cli("upstreams", "test", "local"))
    assert out.startswith("local: OK: HTTP 200, 3 models listed, in ") and SECRET not in out
    ok(cli("upstreams", "update", "local", "--api-key", "sk-not-the-right-one-000"))
    out = refused(cli("upstreams", "test", "local"), "Failed: HTTP 401")
    assert "not-the-right" not in out
    # A name that now resolves to the metadata service is refused before any connection.
    port = models_server.url.rsplit(":", 1)[1]
    monkeypatch.setattr(egress, "resolver", lambda host, p: [(2, 1, 6, "", ("93.184.216.34", p))])
    ok(cli("upstreams", "add", "named", "--protocol", "openai", "--base-url", f"http://named.example:{port}/v1"))
    monkeypatch.setattr(egress, "resolver", lambda host, p: [(2, 1, 6, "", ("169.254.169.254", p))])
    refused(cli("upstreams", "test", "named"), "cloud metadata")
    assert len(models_server.requests) == 2


def test_rotate_keys_moves_credentials_to_the_first_key(app, cli):
    ok(cli("upstreams", "add", "oai", "--protocol", "openai", "--base-url", "https://api.example.com/v1",
           "--api-key", SECRET))
    new = Fernet.generate_key().decode()
    app.config["UPSTREAM_KEYS_SECRET"] = (new,)  # the key derived from SECRET_KEY still decrypts
    assert ok(cli("upstreams", "rotate-keys")) == "re-encrypted 1 credential under the first key\n"
    token = db.session.execute(text("SELECT api_key FROM upstream")).scalar_one()
    assert Fernet(new).decrypt(token.encode()).decode() == SECRET
    app.config["SECRET_KEY"] = "a different secret key"
    db.session.expire_all()
    assert catalog.find_upstream("oai").api_key == SECRET
    app.config["UPSTREAM_KEYS_SECRET"] = (Fernet.generate_key().decode(),)
    refused(cli("upstreams", "rotate-keys"), "could not be decrypted with any key (oai)")
    assert "credential unreadable" in ok(cli("upstreams", "list"))


def test_chat_only_is_set_shown_cleared_and_audited(app, cli):
    out = ok(cli("upstreams", "add", "vllm", "--protocol", "openai", "--base-url", "https://llm.example.com/v1",
                 "--chat-only"))
    assert out == "added upstream vllm (openai, https://llm.example.com/v1, dialect generic-openai, " \
                  "chat completions only (flag))\n"
    assert "  enabled, chat completions only (flag); last hour:" in ok(cli("upstreams", "list"))
    assert catalog.upstream_info(catalog.find_upstream("vllm").id).chat_only is True
    out = ok(cli("upstreams", "update", "vllm", "--no-chat-only", "--reason", "it has /v1/responses now"))
    assert out == "updated upstream vllm (https://llm.example.com/v1, dialect generic-openai, no credential)\n"
    db.session.rollback()
    assert catalog.find_upstream("vllm").chat_only is False
    assert "chat completions only" not in ok(cli("upstreams", "list"))
    ok(cli("upstreams", "update", "vllm", "--chat-only"))
    db.session.rollback()
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.before and e.before["chat_only"], e.after["chat_only"]) for e in entries] == [
        ("upstream.add", None, True), ("upstream.update", True, False), ("upstream.update", False, True)]
    assert entries[1].reason == "it has /v1/responses now"


def test_a_chat_only_dialect_says_so_whatever_the_flag(app, cli):
    out = ok(cli("upstreams", "add", "ds", "--protocol", "openai", "--base-url", "https://api.deepseek.com"))
    assert "dialect deepseek, chat completions only (dialect deepseek))" in out
    assert "chat completions only (flag, dialect deepseek)" in ok(cli("upstreams", "update", "ds", "--chat-only"))
    # Clearing the flag leaves the dialect's answer, and the confirmation shows it.
    assert "chat completions only (dialect deepseek)" in ok(cli("upstreams", "update", "ds", "--no-chat-only"))
    ok(cli("upstreams", "add", "oai", "--protocol", "openai", "--base-url", "https://api.openai.com/v1"))
    listing = ok(cli("upstreams", "list"))
    assert "  enabled, chat completions only (dialect deepseek); last hour" in listing
    assert "oai\topenai\thttps://api.openai.com/v1\tno credential\tdialect openai\n  enabled; last hour" in listing


@pytest.mark.parametrize("protocol, base_url", [("anthropic", "https://api.anthropic.com"), ("echo", None)])
def test_chat_only_is_refused_on_an_upstream_not_speaking_openai(app, cli, protocol, base_url):
    where = ["--base-url", base_url] if base_url else []
    refused(cli("upstreams", "add", "x", "--protocol", protocol, *where, "--chat-only"),
            "only an openai upstream can be chat-only")
    assert catalog.list_upstreams() == []
    ok(cli("upstreams", "add", "x", "--protocol", protocol, *where))
    refused(cli("upstreams", "update", "x", "--chat-only"), "only an openai upstream can be chat-only")
    db.session.rollback()
    assert catalog.find_upstream("x").chat_only is False
    assert [a for a, _ in actions()] == ["upstream.add"]
