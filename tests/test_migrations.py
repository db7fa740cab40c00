"""The migrations build exactly the schema the models describe, from empty, on every backend."""
import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import DBAPIError

from portal import create_app
from portal.extensions import db
from portal.models import CatalogModel, ModelPrice


def test_upgrade_from_empty_matches_models_and_downgrades_cleanly(database, tmp_path):
    with database.empty() as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "t"})
        with app.app_context():
            flask_migrate.upgrade()
            with db.engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
                tables = set(inspect(conn).get_table_names())
            assert {t.name for t in db.metadata.sorted_tables} | {"alembic_version"} == tables

            flask_migrate.downgrade(revision="base")
            with db.engine.connect() as conn:
                assert set(inspect(conn).get_table_names()) <= {"alembic_version"}

            flask_migrate.upgrade()
            with db.engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
            db.engine.dispose()


def test_0007_chains_the_entries_that_existed_before_it(database, tmp_path):
    """Entries written before the hash chain get one, in each account's order; the append-only guard stays."""
    from sqlalchemy import text

    from portal import ledger

    with database.empty() as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "t"})
        with app.app_context():
            flask_migrate.upgrade(revision="0006")
            with db.engine.begin() as conn:
                for user_id in (1, 2):
                    conn.execute(text("INSERT INTO user_account (id, email, email_normalized, is_verified, is_admin, "
                                      "status, created_at, session_epoch) VALUES (:id, :e, :e, true, false, 'active', "
                                      "CURRENT_TIMESTAMP, 0)"), {"id": user_id, "e": f"u{user_id}@example.com"})
                    conn.execute(text("INSERT INTO account (id, user_id, balance, held, created_at) "
                                      "VALUES (:id, :id, 0, 0, CURRENT_TIMESTAMP)"), {"id": user_id})
                balances = {1: 0, 2: 0}
                for account_id, kind, amount, memo, reference in [
                        (1, "grant", 1_000_000, "welcome", None), (2, "topup", 5_000_000, "card ünïcode", "stripe:x"),
                        (1, "charge", -1_234, "echo-1 req_1", None), (2, "charge", -7, "", None)]:
                    balances[account_id] += amount
                    conn.execute(text("INSERT INTO ledger_entry (account_id, kind, amount, balance_after, reference, memo, "
                                      "created_at) VALUES (:a, :k, :m, :b, :r, :memo, :t)"),
                                 {"a": account_id, "k": kind, "m": amount, "b": balances[account_id], "r": reference,
                                  "memo": memo, "t": "2026-10-01 12:00:00.123456"})
                    conn.execute(text("UPDATE account SET balance = :b WHERE id = :a"),
                                 {"b": balances[account_id], "a": account_id})
            flask_migrate.upgrade()
            hashes = db.session.scalars(text("SELECT entry_hash FROM ledger_entry ORDER BY id")).all()
            assert all(len(h) == 64 for h in hashes) and len(set(hashes)) == 4
            assert ledger.verify() == []
            db.session.rollback()
            with pytest.raises(DBAPIError, match="append-only"):  # the guard is back after the migration
                db.session.execute(text("UPDATE ledger_entry SET memo = 'x'"))
                db.session.commit()
            db.session.rollback()
            db.session.remove()
            db.engine.dispose()


def test_0009_keeps_the_cache_write_price_and_guesses_dialects(database, tmp_path):
    """The old cache-write price is the 5-minute one; each upstream's dialect is guessed from its host."""
    from sqlalchemy import text

    from portal import catalog
    from portal.pricing import Price

    upstreams = [(1, "oai", "openai", "https://api.openai.com/v1"), (2, "ds", "openai", "https://API.DeepSeek.com"),
                 (3, "kimi", "openai", "https://api.moonshot.cn/v1"), (4, "local", "openai", "http://10.0.0.5:8000/v1"),
                 (5, "claude", "anthropic", "https://api.anthropic.com"), (6, "echo", "echo", None),
                 (7, "or", "openai", "https://openrouter.ai/api/v1")]
    with database.empty() as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "t"})
        with app.app_context():
            flask_migrate.upgrade(revision="0008")
            with db.engine.begin() as conn:
                for upstream_id, name, protocol, base_url in upstreams:
                    conn.execute(text("INSERT INTO upstream (id, name, protocol, base_url, created_at) "
                                      "VALUES (:id, :n, :p, :u, CURRENT_TIMESTAMP)"),
                                 {"id": upstream_id, "n": name, "p": protocol, "u": base_url})
                conn.execute(text("INSERT INTO model (id, public_id, upstream_id, upstream_model, max_output_tokens, "
                                  "enabled, created_at) VALUES (1, 'sonnet', 5, 'claude-sonnet-4-5', 64000, true, "
                                  "CURRENT_TIMESTAMP)"))
                for price_id, cache_write in ((1, 3_750_000), (2, None)):
                    conn.execute(text("INSERT INTO model_price (id, model_id, input, output, cache_read, cache_write, "
                                      "effective_at) VALUES (:id, 1, 3000000, 15000000, 300000, :w, :t)"),
                                 {"id": price_id, "w": cache_write, "t": f"2026-0{price_id}-01 00:00:00"})
            flask_migrate.upgrade()
            assert dict(db.session.execute(text("SELECT name, dialect FROM upstream")).all()) == {
                "oai": "openai", "ds": "deepseek", "kimi": "moonshot", "local": "generic-openai",
                "claude": "anthropic", "echo": "echo", "or": "openrouter"}
            prices = {row.id: catalog.as_price(row) for row in db.session.scalars(select(ModelPrice))}
            assert prices == {1: Price(input=3_000_000, output=15_000_000, cache_read=300_000, cache_write_5m=3_750_000),
                              2: Price(input=3_000_000, output=15_000_000, cache_read=300_000)}
            model = db.session.get(CatalogModel, 1)
            assert (model.context_window, model.input_by_reference, model.unpriced_tier, model.tool_calls_ceiling) == \
                (None, "hold", "refuse", None)
            db.session.rollback()
            with pytest.raises(DBAPIError):  # the renamed column keeps its check
                db.session.execute(text("UPDATE model_price SET cache_write_5m = -1 WHERE id = 1"))
                db.session.commit()
            db.session.rollback()
            db.session.remove()
            db.engine.dispose()
