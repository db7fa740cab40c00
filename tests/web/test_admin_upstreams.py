"""Console: upstreams. List with health, add, edit (the chat-only flag too), credentials never shown, enable/disable,
test connection."""
import json
import re
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select, text

from portal import catalog, egress
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry, Upstream, UsageRecord, utcnow
from tests.factories import make_user
from tests.web.test_admin_models import text_of

SECRET = "sk-proj-ConsoleSecret0123456789abcdef"


class ModelsServer:
    """A provider's models endpoint on loopback: GET /v1/models (OpenAI-style under base /v1, Anthropic-style
    under the host root). A wrong credential gets a 401 that echoes it, as real providers do."""

    def __init__(self, key=SECRET, models=("m-a", "m-b", "m-c")):
        server = self
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, dict(self.headers)))
                given = self.headers.get("x-api-key") or self.headers.get("authorization", "").removeprefix("Bearer ")
                if self.path != "/v1/models":
                    status, body = 404, {"error": {"message": "no such route"}}
                elif given != key:
                    status, body = 401, {"error": {"message": f"Incorrect API key provided: {given}"}}
                else:
                    status, body = 200, {"object": "list", "data": [{"id": m} for m in models]}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def models_server():
    server = ModelsServer()
    yield server
    server.stop()


def audit_actions() -> list[str]:
    db.session.rollback()
    return [e.action for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def upstream(name: str) -> Upstream:
    db.session.rollback()
    db.session.expire_all()
    return catalog.find_upstream(name)


def test_only_admins_see_the_upstreams(client, auth):
    auth.user("someone@example.com")
    assert client.get("/admin/upstreams").status_code == 403
    assert client.post("/admin/upstreams/new", data={"name": "x", "protocol": "echo"}).status_code == 403
    assert db.session.scalar(select(Upstream)) is None


def test_add_an_upstream_and_the_credential_is_never_shown(client, auth):
    auth.admin()
    response = client.post("/admin/upstreams/new", data={
        "name": "oai", "protocol": "openai", "base_url": "https://api.example.com/v1/", "api_key": SECRET,
        "reason": "our main provider"})
    assert response.status_code == 303
    page = client.get(response.headers["Location"], follow_redirects=False)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "oai" in html and "https://api.example.com/v1" in html
    assert "not shown again" in html and ">set<" in html.replace("</dd>", "<").replace("<dd>", ">")
    assert SECRET not in html and "gAAAA" not in html
    listing = client.get("/admin/upstreams").get_data(as_text=True)
    assert "oai" in listing and SECRET not in listing
    assert upstream("oai").api_key == SECRET
    assert audit_actions() == ["upstream.add"]
    entry = db.session.scalar(select(AuditEntry))
    assert entry.reason == "our main provider" and SECRET not in json.dumps(entry.after)


@pytest.mark.parametrize("base_url", ["http://169.254.169.254/latest", "http://127.0.0.1:8000/v1", "http://[::1]/v1",
                                      "http://10.0.0.1/v1", "http://2130706433/v1", "http://[::ffff:127.0.0.1]/v1",
                                      "http://localhost:11434/v1"])
def test_a_private_host_is_refused_with_a_readable_error(client, auth, base_url):
    auth.admin()
    response = client.post("/admin/upstreams/new", data={"name": "local", "protocol": "openai", "base_url": base_url,
                                                         "api_key": SECRET})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "private" in html or "metadata" in html
    assert SECRET not in html  # not even the one just typed
    assert db.session.scalar(select(Upstream)) is None and audit_actions() == []


def test_a_name_resolving_to_a_private_address_is_refused(client, auth, monkeypatch):
    auth.admin()
    monkeypatch.setattr(egress, "resolver", lambda host, port: [(2, 1, 6, "", ("169.254.169.254", port))])
    response = client.post("/admin/upstreams/new", data={"name": "x", "protocol": "openai",
                                                         "base_url": "https://rebind.example/v1"})
    assert response.status_code == 422 and "cloud metadata" in response.get_data(as_text=True)


def test_allowing_a_private_host_is_explicit_and_audited(client, auth):
    auth.admin()
    response = client.post("/admin/upstreams/new", data={"name": "local", "protocol": "openai",
                                                         "base_url": "http://127.0.0.1:11434/v1",
                                                         "allow_private_host": "yes"})
    assert response.status_code == 303
    assert upstream("local").allow_private_host is True
    entry = db.session.scalar(select(AuditEntry))
    assert entry.after["allow_private_host"] is True
    # Taking the allowance away while the host is private is refused; nothing changes.
    response = client.post(f"/admin/upstreams/{upstream('local').id}/edit",
                           data={"base_url": "http://127.0.0.1:11434/v1", "dialect": "generic-openai",
                                 "credential": "keep"})
    assert response.status_code == 422 and "private" in response.get_data(as_text=True)
    assert upstream("local").allow_private_host is True


def test_chat_only_is_set_on_add_shown_and_cleared_on_edit(client, auth):
    auth.admin()
    form = client.get("/admin/upstreams/new").get_data(as_text=True)
    assert 'name="chat_only" value="yes"' in form and "Chat completions only (no Responses API)" in form
    response = client.post("/admin/upstreams/new", data={"name": "vllm", "protocol": "openai",
                                                         "base_url": "https://llm.example.com/v1", "chat_only": "yes"})
    assert response.status_code == 303 and upstream("vllm").chat_only is True
    up_id = upstream("vllm").id
    page = client.get(f"/admin/upstreams/{up_id}").get_data(as_text=True)
    assert "Responses API no: marked chat completions only" in text_of(page)
    assert re.search(r'name="chat_only" value="yes" checked', page)
    listing = text_of(client.get("/admin/upstreams").get_data(as_text=True))
    assert "openai · https://llm.example.com/v1 · chat completions only" in listing
    # Unticked (a form without the box sends nothing): cleared, audited.
    edit = f"/admin/upstreams/{up_id}/edit"
    base = {"base_url": "https://llm.example.com/v1", "dialect": "generic-openai", "credential": "keep"}
    response = client.post(edit, data={**base, "reason": "it serves /v1/responses now"})
    assert response.status_code == 303 and upstream("vllm").chat_only is False
    page = client.get(f"/admin/upstreams/{up_id}").get_data(as_text=True)
    assert "Responses API yes" in text_of(page) and not re.search(r'name="chat_only" value="yes" checked', page)
    assert "chat completions only" not in text_of(client.get("/admin/upstreams").get_data(as_text=True))
    response = client.post(edit, data=base, follow_redirects=True)
    assert "Nothing changed" in response.get_data(as_text=True)
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.after["chat_only"]) for e in entries] == [("upstream.add", True), ("upstream.update", False)]
    assert entries[1].reason == "it serves /v1/responses now"
    assert "chat_only : True → False" in text_of(page)  # its page lists the change


def test_chat_only_is_refused_on_an_anthropic_upstream_and_absent_from_its_form(client, auth):
    auth.admin()
    response = client.post("/admin/upstreams/new", data={"name": "claude", "protocol": "anthropic",
                                                         "base_url": "https://api.anthropic.com", "chat_only": "yes"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "Only an OpenAI-style upstream can be chat completions only" in html
    assert re.search(r'name="chat_only" value="yes" checked aria-invalid="true"', html)  # kept, and marked
    assert db.session.scalar(select(Upstream)) is None and audit_actions() == []
    with atomic():
        catalog.add_upstream("claude", "anthropic", "https://api.anthropic.com")
    page = client.get(f"/admin/upstreams/{upstream('claude').id}").get_data(as_text=True)
    assert 'name="chat_only"' not in page and "Responses API" not in page
    # A crafted box on its edit form is not the anthropic upstream's to have: nothing changes.
    response = client.post(f"/admin/upstreams/{upstream('claude').id}/edit", follow_redirects=True, data={
        "base_url": "https://api.anthropic.com", "dialect": "anthropic", "credential": "keep", "chat_only": "yes"})
    assert "Nothing changed" in response.get_data(as_text=True) and upstream("claude").chat_only is False


def test_a_chat_only_dialect_says_so_on_its_page_and_in_the_list(client, auth):
    auth.admin()
    with atomic():
        catalog.add_upstream("ds", "openai", "https://api.deepseek.com")
    page = client.get(f"/admin/upstreams/{upstream('ds').id}").get_data(as_text=True)
    text = text_of(page)
    assert "Responses API no: chat completions only, by its dialect ( deepseek )" in text
    assert "Calls to /v1/responses reach it translated to chat completions." in text
    assert "This one's dialect, deepseek , is chat completions only whatever the box says." in text
    assert not re.search(r'name="chat_only" value="yes" checked', page)  # the flag itself is not set
    assert "· chat completions only" in text_of(client.get("/admin/upstreams").get_data(as_text=True))


def test_chat_only_in_chinese(client, auth):
    auth.admin()
    response = client.post("/admin/upstreams/new", headers={"Accept-Language": "zh"}, data={
        "name": "claude", "protocol": "anthropic", "base_url": "https://api.anthropic.com", "chat_only": "yes"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "只有 OpenAI 风格的上游可以设为仅支持对话补全" in html
    assert "仅支持对话补全（无 Responses API）" in html


def test_edit_replace_and_remove_the_credential(client, auth):
    auth.admin()
    with atomic():
        catalog.add_upstream("oai", "openai", "https://api.example.com/v1", "sk-old-credential-1")
    up_id = upstream("oai").id
    edit = f"/admin/upstreams/{up_id}/edit"
    base = {"base_url": "https://api.example.com/v1", "dialect": "openai"}
    # Replace without pasting one: refused, nothing saved.
    response = client.post(edit, data={**base, "credential": "replace", "api_key": ""})
    assert response.status_code == 422 and "Paste the new credential" in response.get_data(as_text=True)
    response = client.post(edit, data={**base, "credential": "replace", "api_key": SECRET, "reason": "rotated"})
    assert response.status_code == 303
    assert upstream("oai").api_key == SECRET
    page = client.get(f"/admin/upstreams/{up_id}").get_data(as_text=True)
    assert SECRET not in page and "sk-old" not in page
    response = client.post(edit, data={**base, "credential": "remove"})
    assert response.status_code == 303
    assert upstream("oai").api_key is None
    # Same values again: nothing changed, no audit entry.
    before = audit_actions()
    response = client.post(edit, data={**base, "credential": "keep"}, follow_redirects=True)
    assert "Nothing changed" in response.get_data(as_text=True) and audit_actions() == before
    # A new base URL, checked like a new upstream.
    response = client.post(edit, data={**base, "base_url": "http://10.1.2.3/v1", "credential": "keep"})
    assert response.status_code == 422
    response = client.post(edit, data={**base, "base_url": "https://eu.api.example.com/v1", "credential": "keep"})
    assert response.status_code == 303 and upstream("oai").base_url == "https://eu.api.example.com/v1"
    assert [a for a in audit_actions() if a.startswith("upstream")] == ["upstream.update"] * 3


def test_disable_needs_a_reason_and_the_box_then_enable(client, auth):
    auth.admin()
    with atomic():
        catalog.add_upstream("echo", "echo")
    up_id = upstream("echo").id
    response = client.post(f"/admin/upstreams/{up_id}/disable", data={"reason": "provider outage"})
    assert response.status_code == 422 and "Tick the box" in response.get_data(as_text=True)
    response = client.post(f"/admin/upstreams/{up_id}/disable", data={"confirm": "yes"})
    assert response.status_code == 422 and "Give a reason" in response.get_data(as_text=True)
    assert upstream("echo").enabled is True
    response = client.post(f"/admin/upstreams/{up_id}/disable", data={"reason": "provider outage", "confirm": "yes"},
                           follow_redirects=True)
    assert "is disabled" in response.get_data(as_text=True) and upstream("echo").enabled is False
    response = client.post(f"/admin/upstreams/{up_id}/disable", data={"reason": "again", "confirm": "yes"},
                           follow_redirects=True)
    assert "already disabled; nothing changed" in response.get_data(as_text=True)
    response = client.post(f"/admin/upstreams/{up_id}/enable", data={"reason": "back"}, follow_redirects=True)
    assert "is enabled" in response.get_data(as_text=True) and upstream("echo").enabled is True
    assert audit_actions() == ["upstream.disable", "upstream.enable"]


def test_test_connection_shows_status_models_and_latency(client, auth, models_server):
    auth.admin()
    with atomic():
        catalog.add_upstream("local", "openai", models_server.url + "/v1", SECRET, allow_private_host=True)
        catalog.add_upstream("claude", "anthropic", models_server.url, SECRET, allow_private_host=True)
    response = client.post(f"/admin/upstreams/{upstream('local').id}/test", follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "OK: HTTP 200, 3 models listed, in " in html and SECRET not in html
    response = client.post(f"/admin/upstreams/{upstream('claude').id}/test", follow_redirects=True)
    assert "OK: HTTP 200, 3 models listed" in response.get_data(as_text=True)
    path, headers = models_server.requests[-1]
    assert path == "/v1/models" and headers["anthropic-version"] and headers["x-api-key"] == SECRET
    assert audit_actions() == []  # a test changes nothing


def test_test_connection_with_a_wrong_key_never_shows_it(client, auth, models_server):
    auth.admin()
    wrong = "sk-proj-Zq9Xw8Vu7Ts6Rq5Po4Nm3Lk2Jh1"
    with atomic():
        catalog.add_upstream("local", "openai", models_server.url + "/v1", wrong, allow_private_host=True)
    response = client.post(f"/admin/upstreams/{upstream('local').id}/test", follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "Failed: HTTP 401: Incorrect API key provided" in html
    assert "Zq9Xw8" not in html and "Lk2Jh1" not in html and "[redacted]" in html


def test_test_connection_goes_through_the_egress_guard_at_call_time(client, auth, models_server, monkeypatch):
    """Saved while its name resolved to a public address; by the test it resolves to loopback (DNS rebinding)."""
    auth.admin()
    answers = {"ip": "93.184.216.34"}
    port = int(models_server.url.rsplit(":", 1)[1])
    monkeypatch.setattr(egress, "resolver", lambda host, p: [(2, 1, 6, "", (answers["ip"], p))])
    with atomic():
        catalog.add_upstream("rebind", "openai", f"http://rebind.example:{port}/v1", SECRET)
    answers["ip"] = "127.0.0.1"
    response = client.post(f"/admin/upstreams/{upstream('rebind').id}/test", follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "Failed:" in html and "private, loopback" in html
    assert models_server.requests == []  # it never connected


def test_test_connection_to_the_echo_upstream_answers_locally(client, auth):
    auth.admin()
    with atomic():
        catalog.add_upstream("echo", "echo")
    response = client.post(f"/admin/upstreams/{upstream('echo').id}/test", follow_redirects=True)
    assert "OK: HTTP 200, 0 models listed" in response.get_data(as_text=True)


def test_test_connection_that_cannot_connect_says_so(client, auth):
    auth.admin()
    with atomic():
        catalog.add_upstream("dead", "openai", "http://127.0.0.1:9/v1", allow_private_host=True)
    response = client.post(f"/admin/upstreams/{upstream('dead').id}/test", follow_redirects=True)
    assert "Failed: could not connect" in response.get_data(as_text=True)


def _record(upstream_id, model_id, account_id, key_id, price_id, status, duration, first_byte, http_status=None,
            minutes_ago=5):
    import uuid
    db.session.add(UsageRecord(request_id=uuid.uuid4().hex, account_id=account_id, api_key_id=key_id,
                               model_id=model_id, upstream_id=upstream_id, price_id=price_id, status=status,
                               http_status=http_status, duration_ms=duration, first_byte_ms=first_byte,
                               started_at=utcnow() - timedelta(minutes=minutes_ago)))


def test_the_list_shows_the_last_hours_health(client, auth):
    from portal import apikeys
    from tests.factories import make_model

    auth.admin()
    model = make_model("m", upstream="echo")
    user = make_user("caller@example.com")
    with atomic():
        key, _ = apikeys.issue(user, "k")
        price_id = db.session.execute(text("SELECT id FROM model_price")).scalar_one()
        args = (model.upstream_id, model.id, user.account.id, key.id, price_id)
        for duration, first in ((100, 10), (200, 20), (300, 30)):
            _record(*args, "ok", duration, first)
        _record(*args, "upstream_timeout", 9000, None)
        _record(*args, "upstream_error", 50, None, http_status=400)   # the caller's fault: not an error
        _record(*args, "ok", 99_999, 99_999, minutes_ago=90)          # older than an hour
    html = client.get("/admin/upstreams").get_data(as_text=True)
    row = html[html.index(">echo</a>"):]
    row = row[:row.index("</tr>")]
    # Cells labelled for phones (the circuit cell, with its test id, is left out as before).
    cells = [c.split("<", 1)[0].strip() for c in re.split(r'<td data-label="[^"]*">', row)[1:]]
    # state, credential, models, calls, errors, latency p50, first byte p50
    assert cells[:4] == ["enabled", "–", "1", "5"]
    assert cells[4].startswith("20.0%") and cells[5:] == ["200 ms", "20 ms"]
