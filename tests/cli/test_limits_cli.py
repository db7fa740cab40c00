"""flask limits set|show: the operator's rate limits for an account or a key, audited as the CLI."""
from sqlalchemy import select

from portal import apikeys
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, ApiKey, AuditEntry
from tests.cli.helpers import ok, refused
from tests.factories import make_user


def person_with_key():
    user = make_user("ann@example.com")
    with atomic():
        key, _ = apikeys.issue(db.session.merge(user), "laptop")
    return key.hint


def test_set_account_limits_and_audit(cli):
    person_with_key()
    out = ok(cli("limits", "set", "ann@example.com", "--rpm", "120", "--tpm", "50000", "--concurrency", "3",
                 "--reason", "agent loop"))
    assert "requests/min 120, tokens/min 50,000, calls at once 3" in out
    account = db.session.scalar(select(Account))
    assert (account.rpm_limit, account.tpm_limit, account.concurrency_limit) == (120, 50000, 3)
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "limits.set"))
    assert entry.actor.startswith("cli:") and entry.reason == "agent loop" and entry.target_type == "account"
    assert entry.after["rpm_limit"] == 120 and entry.before["rpm_limit"] is None
    # The same again changes nothing and writes no second entry.
    assert "nothing changed" in ok(cli("limits", "set", "ann@example.com", "--rpm", "120"))
    assert len(db.session.scalars(select(AuditEntry).where(AuditEntry.action == "limits.set")).all()) == 1


def test_set_a_key_and_back_to_default(cli):
    hint = person_with_key()
    ok(cli("limits", "set", "ann@example.com", "--key", hint, "--rpm", "0", "--tpm", "100"))
    key = db.session.scalar(select(ApiKey))
    assert (key.rpm_limit, key.tpm_limit, key.concurrency_limit) == (0, 100, None)
    assert "no limit" in ok(cli("limits", "show", "ann@example.com"))
    ok(cli("limits", "set", "ann@example.com", "--key", hint, "--tpm", "default"))
    db.session.rollback()
    assert db.session.scalar(select(ApiKey)).tpm_limit is None


def test_refusals(cli):
    person_with_key()
    refused(cli("limits", "set", "ann@example.com"), "Say which limit to set")
    refused(cli("limits", "set", "ann@example.com", "--rpm", "lots"), "is not a whole number")
    refused(cli("limits", "set", "ann@example.com", "--concurrency", "0"), "calls at once must be a whole number")
    refused(cli("limits", "set", "ann@example.com", "--rpm", "-1"), "at least 0")
    refused(cli("limits", "set", "nobody@example.com", "--rpm", "5"), "nobody@example.com")
    refused(cli("limits", "set", "ann@example.com", "--key", "tg_…ZZZZ", "--rpm", "5"), "no key with the hint")
