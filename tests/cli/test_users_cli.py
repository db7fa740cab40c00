"""The console's CLI twins: users list|show|suspend|unsuspend|terminate|admin, credits adjust, keys revoke.

Each writes the same audit entry as the console (as `cli:<login>`), and a repeated command that
finds nothing to do exits 0, says so, and writes nothing."""
import pytest
from sqlalchemy import select

from portal import apikeys, ledger, refunds
from portal.database import atomic
from portal.extensions import db
from portal.models import ApiKey, AuditEntry, LedgerEntry, User
from tests.cli.helpers import ok, refused
from tests.factories import make_user
from tests.web.helpers import outbox


def audit_entries(action=None):
    db.session.rollback()
    query = select(AuditEntry).order_by(AuditEntry.id)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(db.session.scalars(query))


def user_of(email) -> User:
    db.session.rollback()
    from portal import users
    return users.find_user(email)


def test_users_list_searches_and_pages(app, cli):
    for i in range(52):
        make_user(f"p{i:02d}@example.com")
    make_user("Zed@Other.org", credit=1_500_000)
    out = ok(cli("users", "list", "--search", "OTHER.ORG"))
    assert "Zed@Other.org" in out and "$1.50" in out and "p01@" not in out
    first = ok(cli("users", "list", "--search", "example.com"))
    assert first.count("@example.com") == 50 and "--page 2" in first
    second = ok(cli("users", "list", "--search", "example.com", "--page", "2"))
    assert second.count("@example.com") == 2 and "--page" not in second
    assert "no users match" in ok(cli("users", "list", "--search", "nobody"))


def test_users_show_lists_keys_consents_and_history(app, cli):
    make_user("s@example.com")
    ok(cli("keys", "create", "s@example.com", "--name", "laptop"))
    ok(cli("users", "suspend", "s@example.com", "--reason", "card testing"))
    out = ok(cli("users", "show", "s@example.com"))
    assert "status:        suspended (card testing)" in out
    assert "key tg_…" in out and "'laptop': live" in out and "no calls in 30 days" in out
    assert "audit:" in out and "user.suspend by cli:" in out and "card testing" in out


def test_suspend_repeated_says_nothing_changed_and_writes_one_entry(app, cli):
    make_user("s@example.com")
    first = ok(cli("users", "suspend", "s@example.com", "--reason", "card testing"))
    assert first.strip() == "suspended s@example.com: card testing"
    again = ok(cli("users", "suspend", "s@example.com", "--reason", "card testing"))
    assert again.strip() == "s@example.com is already suspended; nothing changed"
    [entry] = audit_entries("user.suspend")
    assert entry.actor.startswith("cli:") and entry.actor_id is None and entry.reason == "card testing"
    assert [m["Subject"] for m in outbox(app)] == ["Your account is suspended"]
    refused(cli("users", "suspend", "s@example.com"), "Missing option '--reason'")
    refused(cli("users", "suspend", "s@example.com", "--reason", "  "), "--reason must not be empty")
    ok(cli("users", "unsuspend", "s@example.com"))
    assert "is not suspended; nothing changed" in ok(cli("users", "unsuspend", "s@example.com"))
    assert len(audit_entries("user.unsuspend")) == 1
    assert [m["Subject"] for m in outbox(app)][-1] == "Your account is active again"


def test_terminate_asks_forfeits_and_a_repeat_changes_nothing(app, cli):
    make_user("t@example.com", credit=2_500_000)
    ok(cli("keys", "create", "t@example.com"))
    aborted = cli("users", "terminate", "t@example.com", "--reason", "fraud", input="n\n")
    assert aborted.exit_code != 0 and "forfeited" in aborted.output
    assert user_of("t@example.com").status == "active"
    out = ok(cli("users", "terminate", "t@example.com", "--reason", "fraud", input="y\n"))
    assert "terminated t@example.com: $2.50 forfeited, 1 key revoked" in out
    again = ok(cli("users", "terminate", "t@example.com", "--reason", "fraud", "--yes"))
    assert again.strip().endswith("is already terminated; nothing changed")
    [entry] = audit_entries("user.terminate")
    assert entry.after["forfeited"] == 2_500_000 and "t@example.com" not in str(entry.after)
    db.session.rollback()
    assert db.session.scalar(select(ApiKey.revoked_at)) is not None
    assert ledger.verify() == []
    mails = [m for m in outbox(app) if m["To"] == "t@example.com"]
    assert [m["Subject"] for m in mails] == ["Your account is closed"] and "fraud" in mails[0].get_content()


def test_terminate_refuses_with_an_open_refund_request(app, cli):
    user = make_user("r@example.com", credit=1_000_000)
    with atomic():
        refunds.request(db.session.get(User, user.id), "leaving")
    refused(cli("users", "terminate", "r@example.com", "--reason", "x", "--yes"), "open refund request")
    assert user_of("r@example.com").status == "active" and audit_entries() == []


@pytest.mark.parametrize("amount, balance", [("-0.5", 500_000), ("2", 3_000_000), ("+0.25", 1_250_000)])
def test_credits_adjust_takes_a_negative_amount_as_typed(app, cli, amount, balance):
    make_user("a@example.com", credit=1_000_000)
    ok(cli("credits", "adjust", "a@example.com", amount, "--reason", "correction"))
    assert user_of("a@example.com").account.balance == balance
    entry = db.session.scalar(select(LedgerEntry).order_by(LedgerEntry.id.desc()))
    assert (entry.kind, entry.memo) == ("adjustment", "correction")
    [audited] = audit_entries("balance.adjust")
    assert audited.after["amount"] == balance - 1_000_000


def test_credits_adjust_counts_as_topup_moves_the_expiry(app, cli):
    make_user("a@example.com")
    out = ok(cli("credits", "adjust", "a@example.com", "5", "--reason", "prize", "--counts-as-topup"))
    account = user_of("a@example.com").account
    assert account.credits_expire_at is not None and f"credits expire {account.credits_expire_at:%Y-%m-%d}" in out


@pytest.mark.parametrize("args, message", [
    (["-1.5", "--reason", "x"], "more than the available balance of $1.00"),
    (["-0.5", "--reason", "x", "--counts-as-topup"], "Only a credit can count as a top-up"),
    (["0", "--reason", "x"], "must not be zero"),
    (["-", "--reason", "x"], "is not an amount in USD"),
    (["1", "--reason", " "], "--reason must not be empty"),
])
def test_credits_adjust_refuses_bad_input(app, cli, args, message):
    make_user("a@example.com", credit=1_000_000)
    refused(cli("credits", "adjust", "a@example.com", *args), message)
    assert user_of("a@example.com").account.balance == 1_000_000 and audit_entries() == []


def test_keys_revoke_by_hint_refuses_ambiguity_and_repeats_quietly(app, cli):
    make_user("k@example.com")
    make_user("l@example.com")
    with atomic():
        from portal import users
        first, _ = apikeys.issue(users.find_user("k@example.com"), "one")
        second, _ = apikeys.issue(users.find_user("l@example.com"), "two")
        second.hint = first.hint  # two keys ending in the same four characters
        hint = first.hint
    out = refused(cli("keys", "revoke", hint), "2 keys end in")
    assert "k@example.com" in out and "l@example.com" in out
    ok(cli("keys", "revoke", hint, "--owner", "l@example.com", "--reason", "leaked"))
    db.session.rollback()
    assert db.session.get(ApiKey, second.id).revoked_at is not None
    assert db.session.get(ApiKey, first.id).revoked_at is None
    again = ok(cli("keys", "revoke", hint.replace("…", "..."), "--owner", "l@example.com"))
    assert "already revoked; nothing changed" in again
    assert len(audit_entries("key.revoke")) == 1
    refused(cli("keys", "revoke", "tg_…ZZZZ"), "no key with the hint")
    refused(cli("keys", "revoke", "nonsense!"), "is not a key hint")


def test_users_create_admin_and_admin_on_off(app, cli):
    out = ok(cli("users", "create", "op@example.com", "--password", "long enough pw", "--admin", "--verified"))
    assert "admin" in out and "two-factor" in out
    assert user_of("op@example.com").is_admin
    assert audit_entries("user.create")[0].after == {"email": "op@example.com", "is_admin": True, "is_verified": True}
    assert "already an admin; nothing changed" in ok(cli("users", "admin", "op@example.com", "--on"))
    ok(cli("users", "admin", "op@example.com", "--off", "--reason", "left the team"))
    assert not user_of("op@example.com").is_admin
    make_user("new@example.com")
    assert "two-factor" in ok(cli("users", "admin", "new@example.com", "--on"))
    assert [e.after["is_admin"] for e in audit_entries("user.admin")] == [False, True]
    refused(cli("users", "admin", "new@example.com"), "Say --on to give operator rights, or --off")


def test_credits_grant_is_audited_and_a_repeat_with_its_reference_says_nothing_changed(app, cli):
    make_user("g@example.com")
    assert "granted $1.00 to g@example.com" in ok(cli("credits", "grant", "g@example.com", "1", "--reason", "promo",
                                                       "--reference", "promo-42"))
    again = ok(cli("credits", "grant", "g@example.com", "1", "--reason", "promo", "--reference", "promo-42"))
    assert again.strip() == "already granted with reference promo-42; nothing changed"
    refused(cli("credits", "grant", "g@example.com", "2", "--reason", "promo", "--reference", "promo-42"),
            "already used for another entry")
    [entry] = audit_entries("balance.grant")
    assert (entry.reason, entry.after["amount"], entry.after["reference"]) == ("promo", 1_000_000, "promo-42")
    assert user_of("g@example.com").account.balance == 1_000_000
