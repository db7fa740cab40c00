import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from portal import users
from portal.database import atomic
from tests.factories import PASSWORD, make_user

ROOT = Path(__file__).resolve().parents[2]


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}  # alive; the database is /readyz's (test_health.py)


def test_home_and_security_headers(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"pay as you go" in response.data
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_dashboard_requires_login(client):
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_login_shows_balance(client, auth):
    make_user(credit=5_000_000)
    response = auth.login()
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert b'data-testid="balance">$5.00<' in page.data


@pytest.mark.parametrize("email, password", [
    ("person@example.com", "wrong password!"),
    ("nobody@example.com", PASSWORD),
])
def test_login_failure_does_not_say_which_part_was_wrong(client, email, password, auth):
    make_user()
    response = auth.login(email, password)
    assert response.status_code == 422
    assert b"Email or password is not correct." in response.data
    assert client.get("/dashboard/").status_code == 302


@pytest.mark.parametrize("next_url, location", [
    ("/dashboard/?tab=keys", "/dashboard/?tab=keys"),
    ("https://evil.example/", "/dashboard/"),
    ("//evil.example/", "/dashboard/"),
    ("/\\evil.example", "/dashboard/"),
])
def test_login_next_only_to_local_paths(client, next_url, location, auth):
    make_user()
    response = auth.login(next=next_url)
    assert response.headers["Location"] == location


def test_suspended_user_is_logged_out_on_next_request(client, auth):
    user = make_user()
    auth.login()
    assert client.get("/dashboard/").status_code == 200
    with atomic():
        users.suspend(users.find_user(user.email), "abuse")
    assert client.get("/dashboard/").status_code == 302
    # Issue 10: they may log in again, to a read-only portal that says why.
    assert auth.login().status_code == 302
    page = client.get("/dashboard/").get_data(as_text=True)
    assert "Your account is suspended" in page and "abuse" in page


def test_csrf_is_enforced_when_enabled(app, client, auth):
    make_user()
    app.config["WTF_CSRF_ENABLED"] = True
    response = auth.login()
    # Refused: the login form comes back (views/csrf.py) with the reason, the email typed and a fresh
    # token, and nobody is logged in.
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "This form was open too long and has expired." in html and 'value="person@example.com"' in html
    assert client.get("/dashboard/").status_code == 302
    token = html.split('name="csrf_token" type="hidden" value="', 1)[1].split('"', 1)[0]
    assert token
    again = client.post("/login", data={"email": "person@example.com", "password": PASSWORD, "csrf_token": token})
    assert again.status_code == 302 and client.get("/dashboard/").status_code == 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_command_answers_healthz(tmp_path):
    """What `make run` ends with: waitress serving the app on HOST:PORT."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}", SECRET_KEY="x",
               HOST="127.0.0.1", PORT=str(port))
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    server = subprocess.Popen([*flask, "serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.1)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert response.headers["Server"] == "tollgate"
    finally:
        server.terminate()
        server.communicate(timeout=10)


def test_portal_errors_are_readable_pages(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404 and b"There is nothing at this address." in response.data
    assert response.mimetype == "text/html"


def test_public_pages_read_in_chinese(client):
    """Long `{% trans trimmed %}` paragraphs find their translation at runtime, not only at extraction."""
    zh = {"Accept-Language": "zh"}
    assert "本网关兼容 OpenAI 和 Anthropic 的 API" in client.get("/quickstart", headers=zh).get_data(as_text=True)
    assert "每次调用的费用为各类 token" in client.get("/pricing", headers=zh).get_data(as_text=True)
    refunds = client.get("/legal/refunds", headers=zh).get_data(as_text=True)
    assert "已付费但尚未使用的充值" in refunds and "有疑问？" in refunds
    assert "可用率：未因本服务" in client.get("/status", headers=zh).get_data(as_text=True)
