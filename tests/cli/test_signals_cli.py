"""`signals list`: the console's Signals page in the terminal."""
from datetime import timedelta

from portal import apikeys, legal, signals
from portal.database import atomic
from portal.extensions import db
from portal.models import LegalKind, Payment, PaymentSource, PaymentStatus, User, utcnow
from tests.cli.helpers import ok
from tests.factories import make_user


def key_used_from(user, *ips):
    with atomic():
        key, _ = apikeys.issue(db.session.get(User, user.id), "ci\x1b[31m")
    for ip in ips:
        with atomic():
            signals.record(key.id, ip, utcnow(), 2)
    return key


def test_nothing_to_review(app, cli):
    assert ok(cli("signals", "list")) == (
        "keys used from many addresses:\n  none\naccounts paying with one card:\n  none\n"
        "accounts signed up from one address:\n  none\naccounts whose keys are used from one address:\n  none\n")


def test_each_kind_of_group_is_listed(app, cli):
    now = utcnow()
    for n, email in enumerate(("card-a@example.com", "card-b@example.com")):
        user = make_user(email)
        with atomic():
            db.session.add(Payment(account_id=user.account.id, source=PaymentSource.STRIPE.value,
                                   status=PaymentStatus.PAID.value, amount=1_000_000, checkout_session_id=f"cs_{n}",
                                   card_fingerprint="fp_cli", paid_at=now))
    with atomic():
        terms = legal.publish(LegalKind.TERMS, "v1", "# Terms", significant=False)
    for email in ("signup-a@example.com", "signup-b@example.com"):
        user = make_user(email)
        with atomic():
            legal.accept(db.session.get(User, user.id), terms, "203.0.113.5")
    key_used_from(make_user("addr-a@example.com"), "192.0.2.10")
    key_used_from(make_user("addr-b@example.com"), "192.0.2.10")
    flagged = key_used_from(make_user("shared@example.com"), "192.0.2.21", "192.0.2.22", "192.0.2.23")

    out = ok(cli("signals", "list"))
    ids = {u.email: u.id for u in db.session.query(User)}
    assert f"  card fp_cli: card-a@example.com (#{ids['card-a@example.com']}, active), card-b@example.com" in out
    assert "  address 203.0.113.5: signup-a@example.com" in out and "signup-b@example.com" in out
    assert "  address 192.0.2.10: addr-a@example.com" in out and "addr-b@example.com (#" in out
    assert f'  {flagged.hint} "ci\\x1b[31m" of shared@example.com' in out and "3 addresses" in out
    assert "\x1b" not in out  # a key name cannot drive the operator's terminal

    db.session.rollback()
    with atomic():
        for user in db.session.query(User).filter(User.email.like("signup-%")):
            user.created_at = now - timedelta(days=45)
    assert "203.0.113.5" not in ok(cli("signals", "list"))
    assert "203.0.113.5" in ok(cli("signals", "list", "--days", "60"))


def test_clear_a_flag_with_a_reason(app, cli):
    from portal.models import ApiKey, AuditEntry
    from tests.cli.helpers import refused
    key = key_used_from(make_user("office@example.com"), "192.0.2.41", "192.0.2.42", "192.0.2.43")
    refused(cli("signals", "clear", key.hint), "Missing option '--reason'")
    refused(cli("signals", "clear", key.hint, "--reason", " "), "Give a reason")
    out = ok(cli("signals", "clear", key.hint, "--reason", "one office"))
    assert f"cleared the sharing flag of {key.hint}" in out and "\x1b" not in out
    db.session.rollback()
    assert db.session.get(ApiKey, key.id).sharing_flagged_at is None
    entry = db.session.query(AuditEntry).filter_by(action="key.sharing_clear").one()
    assert entry.reason == "one office" and entry.actor.startswith("cli:")
    assert "keys used from many addresses:\n  none" in ok(cli("signals", "list"))
    refused(cli("signals", "clear", key.hint, "--reason", "again"), "not flagged")
    # Its addresses of today are forgiven: a fourth one alone does not flag it again.
    with atomic():
        assert signals.record(key.id, "192.0.2.44", utcnow(), 2) is False
