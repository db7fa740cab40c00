"""Refund requests: a person asks for their unused balance back; the operator pays or refuses.

Life of a request: requested -> paid | refused (the operator's) | cancelled (the user accepted the
terms after declining them). Only "requested" is open, and an account has at most one open
request (a partial unique index), so asking twice finds the first request.
"""
from typing import Optional

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import RefundRequest, RefundStatus, User, utcnow


def open_request(user: User) -> Optional[RefundRequest]:
    return db.session.scalar(select(RefundRequest).where(RefundRequest.user_id == user.id,
                                                         RefundRequest.status == RefundStatus.REQUESTED.value))


def latest(user: User) -> Optional[RefundRequest]:
    """The user's most recent request, whatever its status (shown on their account page)."""
    return db.session.scalar(select(RefundRequest).where(RefundRequest.user_id == user.id)
                             .order_by(RefundRequest.id.desc()).limit(1))


def request(user: User, reason: str) -> RefundRequest:
    """File a request for the user's unused balance, or return the one already open."""
    earlier = open_request(user)
    if earlier is not None:
        return earlier
    refund = RefundRequest(user_id=user.id, contact_email=user.email, reason=(reason or "").strip()[:2000],
                           balance_at_request=user.account.balance, status=RefundStatus.REQUESTED.value,
                           created_at=utcnow())
    try:
        with db.session.begin_nested():
            db.session.add(refund)
    except IntegrityError:  # a parallel request of the same account was first
        return open_request(user)
    return refund


def cancel_open(user: User) -> Optional[RefundRequest]:
    """Cancel the user's open request, if any (they accepted the terms after all); return it."""
    refund = open_request(user)
    if refund is not None:
        refund.status, refund.resolved_at = RefundStatus.CANCELLED.value, utcnow()
        db.session.flush()
    return refund
