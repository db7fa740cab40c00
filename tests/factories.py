"""Small helpers that make users, credit and models through the domain modules."""
from datetime import datetime, timedelta

from sqlalchemy import func, select

from portal import catalog, ledger, users
from portal.database import atomic
from portal.errors import UnknownUpstream
from portal.extensions import db
from portal.models import EntryKind, ModelPrice
from portal.pricing import Price

PASSWORD = "correct horse battery"


def make_user(email="person@example.com", *, password=PASSWORD, verified=True, admin=False, credit=0):
    with atomic():
        user = users.create_user(email, password, verified=verified, admin=admin)
        if credit:
            ledger.credit(user.account.id, credit, EntryKind.GRANT, memo="test credit")
    return user


def make_model(public_id="echo-1", price=Price(input=2_000_000, output=8_000_000), upstream="echo"):
    with atomic():
        try:
            catalog.find_upstream(upstream)
        except UnknownUpstream:
            catalog.add_upstream(upstream, "echo")
        model, _ = catalog.set_model(public_id, upstream, price)
    return model


def stored_price(public_id: str) -> Price:
    """The model's current price as the database has it (a fresh read)."""
    db.session.rollback()
    return catalog.as_price(catalog.current_price(catalog.find_model(public_id).id))


def price_rows() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(ModelPrice))


def open_checkout(user, cents=2_000, *, record=True) -> str:
    """A Checkout Session made through the app's Stripe gateway and, as topups.start_checkout does, its pending Payment."""
    import uuid

    from portal import stripe_gateway
    from portal.extensions import db
    from portal.models import Payment, PaymentSource, PaymentStatus

    checkout = stripe_gateway.gateway().create_checkout(
        account_id=user.account.id, user_id=user.id, email=user.email, amount_cents=cents, methods=("card",),
        success_url="http://localhost/billing/?session={CHECKOUT_SESSION_ID}", cancel_url="http://localhost/billing/",
        description="Tollgate credit", idempotency_key=uuid.uuid4().hex)
    if record:
        with atomic():
            db.session.add(Payment(account_id=user.account.id, source=PaymentSource.STRIPE.value,
                                   status=PaymentStatus.PENDING.value, amount=stripe_gateway.micro(cents),
                                   checkout_session_id=checkout.id))
    return checkout.id


ADMIN_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # a fixed secret: tests compute its codes


def make_admin(email="admin@example.com", *, two_factor=True, **kwargs):
    """An admin (verified), with two-factor on unless `two_factor=False`: the console needs it."""
    from portal.models import User, utcnow

    user = make_user(email, admin=True, **kwargs)
    if two_factor:
        with atomic():
            row = db.session.get(User, user.id)
            row.totp_secret, row.totp_enabled_at = ADMIN_TOTP_SECRET, utcnow()
    return user


def totp_code(user_id: int) -> str:
    """A second-factor code the server will take once: the current TOTP step's code when it is still
    unused, the next step's when not; else (two logins within one step) a fresh recovery code.

    Never the previous step's: a test that crosses a 30-second boundary between making the code and
    sending it would find that step gone from the server's window.
    """
    import secrets

    import pyotp

    from portal import twofactor
    from portal.models import RecoveryCode, User, utcnow

    db.session.rollback()
    user = db.session.get(User, user_id)
    totp = pyotp.TOTP(user.totp_secret)
    now = totp.timecode(utcnow())
    step = now if user.totp_last_step is None else max(now, user.totp_last_step + 1)
    if step <= now + 1:
        return totp.generate_otp(step)
    code = secrets.token_hex(6)
    with atomic():
        db.session.add(RecoveryCode(user_id=user_id, code_hash=twofactor._code_hash(code)))
    return code


def earlier_today(now: datetime, minutes: int) -> datetime:
    """`minutes` before `now`, but never before the start of now's UTC day: something done "a few
    minutes ago" that a test then reads among today's figures would be yesterday's at 00:02."""
    return max(now.replace(hour=0, minute=0, second=0, microsecond=0), now - timedelta(minutes=minutes))
