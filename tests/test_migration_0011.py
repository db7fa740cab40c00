"""Migration 0011: existing upstream credentials are encrypted (once), loopback upstreams keep working, and the
downgrade gives the plaintext back."""
import flask_migrate
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from portal import catalog, create_app, secretbox
from portal.extensions import db
from portal.models import AuditEntry

KEYS = {"oai": "sk-proj-PlainBeforeTheUpgrade123", "local": "local-token-456789"}


def raw_keys() -> dict:
    db.session.rollback()
    return dict(db.session.execute(text("SELECT name, api_key FROM upstream")).all())


def test_0012_encrypts_existing_credentials_and_downgrades(database, tmp_path):
    rotated_in = Fernet.generate_key().decode()
    already = Fernet(rotated_in).encrypt(b"sk-already-encrypted-000").decode()
    with database.empty() as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "t",
                          "UPSTREAM_KEYS_SECRET": (Fernet.generate_key().decode(), rotated_in)})
        with app.app_context():
            flask_migrate.upgrade(revision="0010")
            with db.engine.begin() as conn:
                for upstream_id, name, protocol, base_url, key in [
                        (1, "oai", "openai", "https://api.openai.com/v1", KEYS["oai"]),
                        (2, "local", "openai", "http://127.0.0.1:11434/v1", KEYS["local"]),
                        (3, "done", "openai", "https://api.example.com/v1", already),
                        (4, "echo", "echo", None, None)]:
                    conn.execute(text("INSERT INTO upstream (id, name, protocol, base_url, api_key, dialect, created_at) "
                                      "VALUES (:id, :n, :p, :u, :k, 'generic-openai', CURRENT_TIMESTAMP)"),
                                 {"id": upstream_id, "n": name, "p": protocol, "u": base_url, "k": key})
            flask_migrate.upgrade()

            stored = raw_keys()
            assert stored["echo"] is None and stored["done"] == already  # already a token: left alone
            for name, key in KEYS.items():
                assert secretbox.looks_encrypted(stored[name]) and key not in stored[name]
                assert catalog.find_upstream(name).api_key == key
            assert catalog.find_upstream("done").api_key == "sk-already-encrypted-000"
            states = {u.name: (u.enabled, u.allow_private_host) for u in catalog.list_upstreams()}
            assert states == {"oai": (True, False), "local": (True, True), "done": (True, False), "echo": (True, False)}
            [entry] = db.session.scalars(select(AuditEntry)).all()
            assert (entry.action, entry.target_id, entry.actor, entry.after) == \
                ("upstream.update", "local", "migration 0011", {"allow_private_host": True})

            db.session.rollback()
            flask_migrate.downgrade(revision="0010")
            assert raw_keys() == {"oai": KEYS["oai"], "local": KEYS["local"], "done": "sk-already-encrypted-000",
                                  "echo": None}
            db.session.rollback()  # the session's read transaction predates the migration: a fresh one
            flask_migrate.upgrade()
            db.session.rollback()
            assert catalog.find_upstream("oai").api_key == KEYS["oai"]
            assert KEYS["oai"] not in raw_keys()["oai"]

            # A credential no key opens stops the downgrade before anything is changed.
            app.config["UPSTREAM_KEYS_SECRET"] = (Fernet.generate_key().decode(),)
            app.config["SECRET_KEY"] = "another"
            before = raw_keys()
            db.session.rollback()
            flask_migrate.downgrade(revision="0011")
            with pytest.raises(SystemExit):  # Flask-Migrate logs the error and exits 1
                flask_migrate.downgrade(revision="0010")
            db.session.rollback()
            assert raw_keys() == before
            db.session.remove()
            db.engine.dispose()
