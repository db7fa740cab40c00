"""Operator commands, through Flask's CLI runner and once through the real `flask --app wsgi`."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from portal import apikeys, catalog, ledger
from portal.database import atomic
from portal.extensions import db
from portal.models import (ApiKey, AuditEntry, ContactMessage, LedgerEntry,
                           ModelPrice, RefundRequest, Upstream, User, utcnow)
from tests.factories import make_user

ROOT = Path(__file__).resolve().parents[2]


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def refused(result, message):
    assert result.exit_code != 0
    last = result.output.strip().splitlines()[-1]
    assert message in last, result.output
    return last


def test_users_create_and_flags(app, cli):
    ok(cli("users", "create", "Op@Example.com", "--password", "long enough pw", "--admin", "--verified"))
    user = db.session.scalar(select(User))
    assert (user.email, user.email_normalized, user.is_admin, user.is_verified) == \
        ("Op@Example.com", "op@example.com", True, True)
    assert user.password_hash.startswith("$argon2id$")
    assert user.account.balance == 0


@pytest.mark.parametrize("args, message", [
    (["not-an-email"], "is not a valid email address"),
    (["a@example.com", "--password", "short"], "password must be at least 10 characters"),
])
def test_users_create_refuses_bad_input(app, cli, args, message):
    refused(cli("users", "create", *args), message)
    assert db.session.scalar(select(User)) is None


def test_users_create_refuses_the_same_person_twice(app, cli):
    ok(cli("users", "create", "first.last@gmail.com"))
    refused(cli("users", "create", "FirstLast+spam@googlemail.com"), "already exists")


def test_suspend_and_unsuspend(app, cli):
    make_user("s@example.com")
    out = ok(cli("users", "suspend", "s@example.com", "--reason", "card testing"))
    assert "card testing" in out
    user = db.session.scalar(select(User))
    assert (user.status, user.status_reason) == ("suspended", "card testing")
    refused(cli("users", "suspend", "nobody@example.com", "--reason", "x"), "no user with email")
    ok(cli("users", "unsuspend", "s@example.com"))
    db.session.rollback()
    assert db.session.scalar(select(User.status)) == "active"
    # Issue 10: a repeated idempotent command exits 0 and says that nothing changed.
    assert "is not suspended; nothing changed" in ok(cli("users", "unsuspend", "s@example.com"))


def test_credits_grant_exact_micro_dollars(app, cli):
    user = make_user("g@example.com")
    out = ok(cli("credits", "grant", "g@example.com", "0.000050", "--reason", "goodwill"))
    assert "granted $0.00005" in out
    entry = db.session.scalar(select(LedgerEntry))
    assert (entry.account_id, entry.kind, entry.amount, entry.memo) == (user.account.id, "grant", 50, "goodwill")
    assert ledger.verify() == []


def test_credits_grant_with_reference_credits_once(app, cli):
    make_user("g@example.com")
    for _ in range(2):
        ok(cli("credits", "grant", "g@example.com", "1", "--reason", "promo", "--reference", "promo-42"))
    assert db.session.scalar(select(db.func.sum(LedgerEntry.amount))) == 1_000_000


def test_credits_grant_moves_the_expiry_only_when_it_counts_as_a_topup(app, cli):
    user = make_user("g@example.com")
    ok(cli("credits", "grant", "g@example.com", "1", "--reason", "plain"))
    db.session.rollback()
    assert (user.account.last_topup_at, user.account.credits_expire_at) == (None, None)
    before = utcnow()
    out = ok(cli("credits", "grant", "g@example.com", "2", "--reason", "prize", "--counts-as-topup"))
    db.session.rollback()
    account = user.account
    assert account.last_topup_at >= before
    assert account.credits_expire_at == ledger.expiry_after(account.last_topup_at)
    assert f"credits expire {account.credits_expire_at:%Y-%m-%d}" in out
    assert account.balance == 3_000_000


@pytest.mark.parametrize("args, message", [
    (["g@example.com", "abc", "--reason", "x"], "must be a non-negative decimal"),
    (["g@example.com", "--reason", "x", "--", "-5"], "must be a non-negative decimal"),
    (["g@example.com", "0", "--reason", "x"], "amount must be greater than zero"),
    (["g@example.com", "0.0000001", "--reason", "x"], "more than 6 decimal places"),
    (["g@example.com", "1", "--reason", "  "], "--reason must not be empty"),
    (["g@example.com", "1"], "Missing option '--reason'"),
    (["nobody@example.com", "1", "--reason", "x"], "no user with email"),
])
def test_credits_grant_refuses_bad_input(app, cli, args, message):
    make_user("g@example.com")
    refused(cli("credits", "grant", *args), message)
    assert db.session.scalar(select(LedgerEntry)) is None


def test_keys_create_prints_key_alone_on_last_line(app, cli):
    make_user("k@example.com")
    out = ok(cli("keys", "create", "k@example.com", "--name", "laptop"))
    plaintext = out.strip().splitlines()[-1]
    assert plaintext.startswith(apikeys.PREFIX) and " " not in plaintext
    caller = apikeys.authenticate(plaintext)
    assert (caller.key_name, caller.hint) == ("laptop", f"tg_…{plaintext[-4:]}")
    assert plaintext not in db.session.scalar(select(ApiKey.key_hash))
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "key.create")).all()
    assert entry.actor.startswith("cli:") and entry.after["hint"] == caller.hint
    assert plaintext not in repr(entry.after)


def test_keys_create_refuses_unverified_and_suspended(app, cli):
    make_user("u@example.com", verified=False)
    refused(cli("keys", "create", "u@example.com"), "has not verified their email")
    ok(cli("users", "verify", "u@example.com"))
    ok(cli("users", "suspend", "u@example.com", "--reason", "card testing"))
    refused(cli("keys", "create", "u@example.com"), "is suspended")


def test_upstreams_add(app, cli):
    ok(cli("upstreams", "add", "oai", "--protocol", "openai", "--base-url", "https://api.openai.com/v1/",
           "--api-key", "sk-test-123"))
    ok(cli("upstreams", "add", "claude", "--protocol", "anthropic", "--base-url", "https://api.anthropic.com",
           "--api-key", "-", input="sk-ant-from-stdin\n"))
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    rows = {u.name: (u.protocol, u.base_url, u.api_key) for u in db.session.scalars(select(Upstream))}
    assert rows == {
        "oai": ("openai", "https://api.openai.com/v1", "sk-test-123"),
        "claude": ("anthropic", "https://api.anthropic.com", "sk-ant-from-stdin"),
        "echo": ("echo", None, None),
    }


@pytest.mark.parametrize("args, message", [
    (["x", "--protocol", "openai"], "needs --base-url"),
    (["x", "--protocol", "openai", "--base-url", "ftp://h/v1"], "must be an http:// or https:// URL"),
    (["x", "--protocol", "openai", "--base-url", "not a url"], "must be an http:// or https:// URL"),
    (["x", "--protocol", "openai", "--base-url", "https://u:p@h/v1"], "must not contain credentials"),
    (["x", "--protocol", "openai", "--base-url", "https://h/v1?x=1"], "must not have a query string"),
    (["x", "--protocol", "grpc"], "Invalid value for '--protocol'"),
    (["x", "--protocol", "echo", "--base-url", "https://h"], "the echo upstream is built in"),
    (["bad name", "--protocol", "echo"], "upstream name must be"),
])
@pytest.mark.one_backend  # input checks no database can change
def test_upstreams_add_refuses_bad_input(app, cli, args, message):
    refused(cli("upstreams", "add", *args), message)
    assert db.session.scalar(select(Upstream)) is None


def test_upstreams_add_refuses_duplicates(app, cli):
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    refused(cli("upstreams", "add", "echo", "--protocol", "echo"), "already exists")


def test_models_set_records_price_history(app, cli):
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    out = ok(cli("models", "set", "claude-x", "--upstream", "echo", "--upstream-model", "claude-x-2026",
                 "--input", "3", "--output", "15", "--cache-read", "0.3", "--cache-write", "3.75",
                 "--max-output-tokens", "32000"))
    assert "new price recorded" in out
    assert "price unchanged" in ok(cli("models", "set", "claude-x", "--upstream", "echo", "--input", "3",
                                       "--output", "15", "--cache-read", "0.3", "--cache-write", "3.75"))
    ok(cli("models", "set", "claude-x", "--upstream", "echo", "--input", "2.5", "--output", "15"))
    model = catalog.find_model("claude-x")
    assert (model.upstream_model, model.max_output_tokens) == ("claude-x-2026", 32000)
    history = [(p.input, p.output, p.cache_read, p.cache_write_5m)
               for p in db.session.scalars(select(ModelPrice).order_by(ModelPrice.id))]
    assert history == [(3_000_000, 15_000_000, 300_000, 3_750_000), (2_500_000, 15_000_000, None, None)]
    current = catalog.current_price(model.id)
    assert (current.input, current.cache_read) == (2_500_000, None)


@pytest.mark.parametrize("args, message", [
    (["m", "--upstream", "nope", "--input", "1", "--output", "1"], "no upstream named 'nope'"),
    (["m", "--upstream", "echo", "--input", "-1", "--output", "1"], "--input must be a non-negative decimal"),
    (["m", "--upstream", "echo", "--input", "1", "--output", "x"], "--output must be a non-negative decimal"),
    (["m", "--upstream", "echo", "--input", "1", "--output", "1", "--cache-read", "0.0000001"],
     "--cache-read has more than 6 decimal places"),
    (["m", "--upstream", "echo", "--input", "1", "--output", "1", "--max-output-tokens", "0"],
     "max output tokens must be positive"),
    (["m", "--upstream", "echo", "--output", "1"], "Missing option '--input'"),
])
@pytest.mark.one_backend  # input checks no database can change
def test_models_set_refuses_bad_input(app, cli, args, message):
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    refused(cli("models", "set", *args), message)
    assert db.session.scalar(select(ModelPrice)) is None


@pytest.mark.books_broken
def test_ledger_verify_clean_and_dirty(app, cli):
    make_user("v@example.com", credit=1_000)
    assert "ledger ok" in ok(cli("ledger", "verify"))
    db.session.execute(db.update(db.metadata.tables["account"]).values(balance=999))
    db.session.commit()
    result = cli("ledger", "verify")
    assert result.exit_code == 1
    assert "balance 999 != sum of entries 1000" in result.output


def test_demo_seed_runs_once(app, cli):
    first = ok(cli("demo", "seed"))
    assert "demo@example.com" in first and "tg_" in first and "open Console (/admin)" in first
    assert ok(cli("demo", "seed")) == first  # the second run reprints, creates nothing
    assert db.session.scalar(select(db.func.count()).select_from(User)) == 2
    demo_user = db.session.scalar(select(User).where(User.email == "demo@example.com"))
    assert demo_user.account.balance == 5_000_000
    assert ledger.verify() == []


def test_real_flask_entry_point(tmp_path):
    """`flask --app wsgi` as operators run it: migrate, create, grant, key, verify, each a process."""
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}", SECRET_KEY="x")
    env.pop("PORTAL_ENV", None)

    def flask(*args):
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    assert flask("db", "upgrade").returncode == 0
    assert flask("users", "create", "ops@example.com", "--verified").returncode == 0
    assert flask("credits", "grant", "ops@example.com", "2.5", "--reason", "test").returncode == 0
    created = flask("keys", "create", "ops@example.com", "--name", "ci")
    assert created.returncode == 0 and created.stdout.strip().splitlines()[-1].startswith("tg_")
    bad = flask("credits", "grant", "ops@example.com", "lots", "--reason", "test")
    assert bad.returncode == 1 and bad.stderr.strip() == "Error: amount must be a non-negative decimal number of USD, got 'lots'"
    verified = flask("ledger", "verify")
    assert verified.returncode == 0 and "ledger ok" in verified.stdout


def test_upstreams_update_and_list_never_show_the_credential(app, cli):
    ok(cli("upstreams", "add", "oai", "--protocol", "openai", "--base-url", "https://a.example/v1",
           "--api-key", "sk-old-secret"))
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    ok(cli("upstreams", "update", "oai", "--api-key", "-", input="sk-new-secret\n"))
    ok(cli("upstreams", "update", "oai", "--base-url", "https://b.example/v1/"))
    listing = ok(cli("upstreams", "list"))
    assert "oai\topenai\thttps://b.example/v1\tcredential set" in listing and "echo\techo\t-" in listing
    assert "sk-" not in listing
    db.session.rollback()
    assert db.session.scalar(select(Upstream.api_key).where(Upstream.name == "oai")) == "sk-new-secret"
    refused(cli("upstreams", "update", "oai"), "nothing to change")
    refused(cli("upstreams", "update", "echo", "--api-key", "x"), "built in")
    refused(cli("upstreams", "update", "nope", "--api-key", "x"), "no upstream named 'nope'")
    refused(cli("upstreams", "update", "oai", "--base-url", "ftp://x"), "must be an http")


def test_models_list_disable_enable(app, cli):
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    ok(cli("models", "set", "m1", "--upstream", "echo", "--input", "3", "--output", "15", "--cache-read", "0.3"))
    listing = ok(cli("models", "list"))
    assert "m1\tenabled\techo/m1\tmax_out=4096\t" in listing
    assert "  per million: input=$3.00 output=$15.00 cache_read=$0.30\n" in listing
    ok(cli("models", "disable", "m1"))
    assert "m1\tdisabled" in ok(cli("models", "list"))
    assert catalog.enabled_models() == []
    ok(cli("models", "enable", "m1"))
    refused(cli("models", "disable", "ghost"), "no model named 'ghost'")


HOSTILE_TEXT = ("Hello\x1b[2J\x1b[31mRED\x1b]0;pwned\x07 \x9b31m over\rwritten \u202eevil\u202c \u2066iso\u2069 "
                "\x01soh \x7fdel \u2028sep\r\nsecond line\nthird")


def test_inbox_escapes_control_characters_in_what_users_wrote(app, cli):
    user = make_user("r@example.com")
    with atomic():
        db.session.add(ContactMessage(email="a@example.com\x1b[8m", subject="Invoice\x1b[1A\r", message=HOSTILE_TEXT,
                                      ip="198.51.100.7"))
        db.session.add(RefundRequest(user_id=user.id, contact_email=user.email, reason=HOSTILE_TEXT,
                                     balance_at_request=1_000_000))
    messages, refunds = ok(cli("inbox", "messages")), ok(cli("inbox", "refunds"))
    for out in (messages, refunds):
        for raw in ("\x1b", "\x9b", "\x07", "\r", "\x01", "\x7f", "\u202e", "\u202c", "\u2066", "\u2069", "\u2028"):
            assert raw not in out, (out, raw)
        assert "Hello\\x1b[2J\\x1b[31mRED\\x1b]0;pwned\\x07 \\x9b31m over\\x0dwritten \\u202eevil\\u202c" in out
        assert "\\u2066iso\\u2069 \\x01soh \\x7fdel \\u2028sep\n  second line\n  third" in out  # lines stay lines
    assert "a@example.com\\x1b[8m (198.51.100.7) — Invoice\\x1b[1A\\x0d\n" in messages
