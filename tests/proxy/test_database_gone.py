"""The database goes away: dead pooled connections are replaced unseen, and while it is unreachable
every API answers 503 in its own error shape, with Retry-After, and the portal a readable page."""
import logging
import os
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from portal import create_app, serving
from portal import database as portal_database
from portal.config import database_url


@contextmanager
def served(app):
    """`app` served by waitress in a thread on a free loopback port, as the gateway fixture does."""
    server = serving.create(app, "127.0.0.1", 0, asyncore_loop_timeout=0.05)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        deadline = time.monotonic() + 30  # let the last task finish writing before the trigger closes
        while server.task_dispatcher.active_count and time.monotonic() < deadline:
            time.sleep(0.01)
        server.close()
        for channel in list(server._map.values()):
            channel.close()
        server.task_dispatcher.shutdown(timeout=5)
        thread.join(timeout=5)


def _admin():
    url = make_url(database_url(os.environ["TEST_DATABASE_URL"]))
    return psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, password=url.password,
                           dbname=url.database, autocommit=True)


def _terminate_backends(dbname: str) -> None:
    """Kill every server process of `dbname` (as a Postgres restart or a network reset would) and wait till gone."""
    with _admin() as conn:
        pids = [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))]
        assert pids, "the app should have pooled connections open by now"
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0]:
            assert time.monotonic() < deadline, "terminated backends did not go away"
            time.sleep(0.05)


def chat(gateway: str, key: str):
    return requests.post(f"{gateway}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}, timeout=30)


@pytest.fixture
def postgres_only(database):
    if database.name != "postgres":
        pytest.skip("connection resets are a client-server database's failure")


def test_a_reset_connection_costs_no_request(postgres_only, app, gateway, key):
    assert chat(gateway, key).status_code == 200
    assert requests.get(f"{gateway}/v1/balance", headers={"Authorization": f"Bearer {key}"}, timeout=30).ok
    _terminate_backends(make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database)
    # Every pooled connection is dead now; each is tested before use and replaced.
    for _ in range(3):
        response = chat(gateway, key)
        assert response.status_code == 200, response.text
    assert requests.get(f"{gateway}/v1/balance", headers={"Authorization": f"Bearer {key}"}, timeout=30).ok


def _unreachable_urls(database, tmp_path):
    yield "postgresql://postgres@127.0.0.1:1/tollgate"  # nothing listens there: connection refused
    if database.name == "postgres":
        gone = make_url(database_url(os.environ["TEST_DATABASE_URL"])).set(database="tollgate_dropped_long_ago")
        yield gone.render_as_string(hide_password=False)  # the server answers; the database is not there
    else:
        yield f"sqlite:///{tmp_path / 'no-such-folder' / 'portal.db'}"  # the file cannot be opened


def test_unreachable_database_answers_503_in_each_shape(database, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.WARNING)
    monkeypatch.setitem(portal_database._quiet, "until", 0.0)  # an earlier test's outage line is not this one's
    for number, url in enumerate(_unreachable_urls(database, tmp_path)):
        app = create_app({"SQLALCHEMY_DATABASE_URI": database_url(url), "INSTANCE_PATH": str(tmp_path / f"instance{number}"),
                          "SECRET_KEY": "test-secret", "PUBLIC_URL": "http://localhost"})
        with served(app) as gateway:
            bearer = {"Authorization": "Bearer tg-sk-whatever"}
            openai = requests.post(f"{gateway}/v1/chat/completions", headers=bearer, timeout=30,
                                   json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
            assert openai.status_code == 503, (url, openai.text)
            assert int(openai.headers["Retry-After"]) > 0
            error = openai.json()["error"]
            assert error["type"] == "server_error" and error["code"] == "database_unavailable"
            assert "nothing was charged" in error["message"]

            anthropic = requests.post(f"{gateway}/v1/messages", timeout=30,
                                      headers={"x-api-key": "tg-sk-whatever", "anthropic-version": "2023-06-01"},
                                      json={"model": "claude-test", "max_tokens": 10,
                                            "messages": [{"role": "user", "content": "hi"}]})
            assert anthropic.status_code == 503, (url, anthropic.text)
            assert int(anthropic.headers["Retry-After"]) > 0
            body = anthropic.json()
            assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"

            page = requests.get(f"{gateway}/pricing", timeout=30, headers={"Host": "localhost"})
            assert page.status_code == 503, (url, page.status_code)
            assert "Temporarily unavailable" in page.text and "Traceback" not in page.text
            assert int(page.headers["Retry-After"]) > 0
            assert requests.get(f"{gateway}/", timeout=30, headers={"Host": "localhost"}).status_code in (200, 503)
        app.extensions["tollgate.gateway"].close()
    # An outage is one warning line, never a traceback per request.
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert any("database unreachable" in r.getMessage() for r in caplog.records)
