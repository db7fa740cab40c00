"""Upstream credentials encrypted at rest: what the database holds, keys, rotation, and a lost key."""
import json

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from portal import catalog, secretbox
from portal.audit import Actor
from portal.config import ConfigError, load
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry, Upstream
from tests.conftest import make_app

SECRET = "sk-proj-ThisIsTheUpstreamSecret0123456789"


def stored(name: str) -> str:
    """The credential column as the database has it, past the ORM."""
    db.session.rollback()
    return db.session.execute(text("SELECT api_key FROM upstream WHERE name = :n"), {"n": name}).scalar_one()


def add(name="oai", key=SECRET):
    with atomic():
        catalog.add_upstream(name, "openai", "https://api.example.com/v1", key, actor=Actor.cli())


def test_the_database_holds_a_token_and_the_app_reads_the_credential(app):
    add()
    token = stored("oai")
    assert token != SECRET and SECRET not in token and secretbox.looks_encrypted(token)
    assert secretbox.decrypt(token) == SECRET
    db.session.rollback()
    assert catalog.find_upstream("oai").api_key == SECRET
    assert db.session.scalar(select(Upstream.api_key)) == SECRET
    # Each save is a fresh token (random IV): equal keys do not show as equal ciphertexts.
    add("other")
    assert stored("other") != token


def test_replacing_and_removing_the_credential(app):
    add()
    first = stored("oai")
    with atomic():
        catalog.update_upstream("oai", api_key="sk-new-one-456789", actor=Actor.cli())
    assert stored("oai") != first and secretbox.decrypt(stored("oai")) == "sk-new-one-456789"
    with atomic():
        catalog.update_upstream("oai", api_key="", actor=Actor.cli(), reason="leaked")
    assert stored("oai") is None


def test_audit_entries_never_hold_the_credential(app):
    add()
    with atomic():
        catalog.update_upstream("oai", api_key="sk-replacement-999999", actor=Actor.cli())
        catalog.update_upstream("oai", api_key="", actor=Actor.cli())
    db.session.rollback()
    entries = list(db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [e.action for e in entries] == ["upstream.add", "upstream.update", "upstream.update"]
    dumped = json.dumps([[e.before, e.after] for e in entries])
    assert "sk-" not in dumped and "gAAAA" not in dumped
    assert entries[0].after["api_key"] == "(set)"
    assert (entries[1].after["credential"], entries[2].after["credential"]) == ("replaced", "removed")
    assert entries[2].after["api_key"] is None


def test_without_upstream_keys_secret_the_key_comes_from_secret_key(database, tmp_path):
    app = make_app(database, tmp_path, SECRET_KEY="first-secret-key")
    with app.app_context():
        add()
        token = stored("oai")
        assert Fernet(secretbox.derived_key("first-secret-key")).decrypt(token.encode()).decode() == SECRET
        db.session.remove()
        db.engine.dispose()
        app.extensions["tollgate.gateway"].close()


def test_a_changed_secret_key_makes_the_credential_unreadable_not_an_error(app, caplog):
    add()
    app.config["SECRET_KEY"] = "another-secret-key"
    db.session.rollback()
    db.session.expire_all()
    upstream = catalog.find_upstream("oai")
    assert secretbox.is_unreadable(upstream.api_key)
    assert SECRET not in upstream.api_key
    assert "cannot be decrypted" in caplog.text and "SECRET_KEY" in caplog.text and SECRET not in caplog.text
    # Listing and changing other settings still work, and leave the stored token as it was.
    token = stored("oai")
    with atomic():
        catalog.update_upstream("oai", dialect="deepseek", actor=Actor.cli())
    assert stored("oai") == token
    # Entering the credential again mends it.
    with atomic():
        catalog.update_upstream("oai", api_key="sk-entered-again-1234", actor=Actor.cli())
    db.session.expire_all()
    assert catalog.find_upstream("oai").api_key == "sk-entered-again-1234"


def test_rotation_first_key_encrypts_every_key_decrypts(app):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app.config["UPSTREAM_KEYS_SECRET"] = (old,)
    add()
    assert Fernet(old).decrypt(stored("oai").encode()).decode() == SECRET
    app.config["UPSTREAM_KEYS_SECRET"] = (new, old)
    db.session.expire_all()
    assert catalog.find_upstream("oai").api_key == SECRET  # the old key still decrypts
    with atomic():
        rotated, unreadable = catalog.rotate_upstream_keys(actor=Actor.cli())
    assert (rotated, unreadable) == (1, [])
    assert Fernet(new).decrypt(stored("oai").encode()).decode() == SECRET
    app.config["UPSTREAM_KEYS_SECRET"] = (new,)
    db.session.expire_all()
    assert catalog.find_upstream("oai").api_key == SECRET
    # A key no configured key opens is reported, not lost or overwritten.
    app.config["UPSTREAM_KEYS_SECRET"] = (Fernet.generate_key().decode(),)
    app.config["SECRET_KEY"] = "yet another"
    token = stored("oai")
    with atomic():
        assert catalog.rotate_upstream_keys(actor=Actor.cli()) == (0, ["oai"])
    assert stored("oai") == token


def test_a_key_derived_from_secret_key_still_opens_after_setting_upstream_keys_secret(app):
    add()
    app.config["UPSTREAM_KEYS_SECRET"] = (Fernet.generate_key().decode(),)
    db.session.expire_all()
    assert catalog.find_upstream("oai").api_key == SECRET


@pytest.mark.one_backend
@pytest.mark.parametrize("value", ["not-a-key", "c2hvcnQ=", Fernet.generate_key().decode() + ",oops"])
def test_an_invalid_upstream_keys_secret_refuses_to_start(tmp_path, value):
    environ = {"PORTAL_ENV": "production", "SECRET_KEY": "x" * 40, "PUBLIC_URL": "https://ai.example.com",
               "UPSTREAM_KEYS_SECRET": value}
    with pytest.raises(ConfigError, match="UPSTREAM_KEYS_SECRET") as refused:
        load(str(tmp_path), environ)
    assert value not in str(refused.value)


@pytest.mark.one_backend
def test_a_list_of_keys_is_read_in_order(tmp_path):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    config = load(str(tmp_path), {"UPSTREAM_KEYS_SECRET": f" {first} , {second} "})
    assert config["UPSTREAM_KEYS_SECRET"] == (first, second)
    assert load(str(tmp_path), {})["UPSTREAM_KEYS_SECRET"] == ()
