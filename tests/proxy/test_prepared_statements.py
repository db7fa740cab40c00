"""A billed call ends none of its transactions with ROLLBACK, so Postgres runs its statements prepared.

At each ROLLBACK psycopg forgets the statements it was counting towards preparing and deallocates
those it prepared; with the key lookup's read ended that way, every money statement of every call
was parsed and planned anew (docs/performance.md). The pool here is one connection, so every call
uses the connection the test then inspects.
"""
import pytest
import requests
from sqlalchemy import event, text

from portal.extensions import db

CALLS = 8  # psycopg prepares a statement at its fifth run on a connection


@pytest.fixture
def app_config(app_config):
    return {**app_config, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 1, "max_overflow": 0, "pool_timeout": 10}}


@pytest.mark.parametrize("path, model", [("/v1/chat/completions", "gpt-test"), ("/v1/messages", "claude-test"),
                                          ("/v1/chat/completions", "echo-1")])
def test_billed_calls_roll_nothing_back(app, gateway, fake, key, path, model):
    ended = []
    listeners = {"commit": lambda conn: ended.append("commit"), "rollback": lambda conn: ended.append("rollback")}
    for name, listener in listeners.items():
        event.listen(db.engine, name, listener)
    try:
        for _ in range(CALLS):
            response = requests.post(f"{gateway}{path}", headers={"x-api-key": key}, timeout=30, json={
                "model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 200, response.text
    finally:
        for name, listener in listeners.items():
            event.remove(db.engine, name, listener)
    assert "rollback" not in ended
    assert ended.count("commit") >= 2 * CALLS  # the hold and the settlement of each call, at least

    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:  # the pool's one connection: the one every call used
            prepared = conn.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
        for start in ("SELECT api_key.id", "UPDATE account SET held", "INSERT INTO hold",
                      "UPDATE account SET balance", "INSERT INTO ledger_entry", "INSERT INTO usage_record"):
            assert any(s.startswith(start) for s in prepared), (start, prepared)
