"""A person's own data as one JSON document (the privacy policy's right of access).

Profile, API keys (never their secret or its hash), every usage record, the statement's ledger
entries, consents, contact messages, payments and refund requests. Written as a stream of
chunks: usage records and ledger entries are read in batches, so an account with millions of
calls costs no more memory than one with ten. Only rows of the person's own user and account
are read.
"""
import json
from datetime import datetime
from typing import Any, Iterable, Iterator

from sqlalchemy import select

from .extensions import db
from .ledger import stamp
from .models import (ApiKey, CatalogModel, ContactMessage, ContactReply, LedgerEntry, LegalDocument, Payment, RefundRequest,
                     TermsAcceptance, UsageRecord, User, utcnow)

FORMAT_VERSION = 1
BATCH = 1000
# Columns never exported, whichever table grows them: credentials and their hashes.
NEVER = frozenset({"password_hash", "totp_secret", "totp_last_step", "key_hash", "token_hash", "code_hash",
                   "secret", "api_key"})


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return stamp(value)
    return value


def _columns(row, names: Iterable[str]) -> dict:
    return {name: _value(getattr(row, name)) for name in names if name not in NEVER}


def _all_columns(row, skip: Iterable[str] = ()) -> dict:
    """Every column of an ORM row (so a column added later is exported too), minus secrets and `skip`."""
    skipped = NEVER | set(skip)
    return {c.key: _value(getattr(row, c.key)) for c in row.__table__.columns if c.key not in skipped}


PROFILE = ("id", "email", "is_verified", "status", "status_reason", "status_changed_at", "created_at")
ACCOUNT = ("balance", "held", "last_topup_at", "credits_expire_at", "low_balance_threshold", "auto_topup_enabled",
           "auto_topup_card", "auto_topup_threshold", "auto_topup_amount", "auto_topup_monthly_limit")
KEY = ("id", "name", "hint", "created_at", "expires_at", "last_used_at", "last_used_ip", "revoked_at",
       "allowed_models", "ip_allowlist", "spend_cap_total", "spend_cap_monthly", "spent_total", "max_concurrency")
USAGE = ("request_id", "started_at", "route", "streamed", "status", "http_status", "error", "input_tokens",
         "output_tokens", "cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "input_audio_tokens",
         "output_audio_tokens", "reasoning_tokens", "units", "service_tier", "long_context", "cost",
         "usage_estimated", "usage_clamped", "client_ip", "first_byte_ms", "duration_ms")
ENTRY = ("id", "created_at", "kind", "amount", "balance_after", "reference", "memo")


def _array(name: str, items: Iterable[dict], first: bool = False) -> Iterator[str]:
    yield ("" if first else ",") + json.dumps(name) + ":["
    for index, item in enumerate(items):
        yield ("," if index else "") + json.dumps(item, ensure_ascii=False, default=str)
    yield "]"


def _usage(account_id: int) -> Iterator[dict]:
    rows = db.session.execute(
        select(UsageRecord, ApiKey.hint, CatalogModel.public_id)
        .join(ApiKey, ApiKey.id == UsageRecord.api_key_id).join(CatalogModel, CatalogModel.id == UsageRecord.model_id)
        .where(UsageRecord.account_id == account_id)
        .order_by(UsageRecord.id).execution_options(yield_per=BATCH))
    for record, hint, model in rows:
        yield {"model": model, "key": hint, **_columns(record, USAGE)}
        db.session.expunge(record)  # let it go at once, not at the next garbage collection


def _entries(account_id: int) -> Iterator[dict]:
    rows = db.session.execute(
        select(*(getattr(LedgerEntry, name) for name in ENTRY)).where(LedgerEntry.account_id == account_id)
        .order_by(LedgerEntry.id).execution_options(yield_per=BATCH))
    for row in rows:
        yield {name: _value(value) for name, value in zip(ENTRY, row)}


def _message(message: ContactMessage) -> dict:
    """A message with the operator's replies to it: they are part of the person's correspondence
    (who wrote them stays with the operator: only when and what)."""
    replies = db.session.scalars(select(ContactReply).where(ContactReply.message_id == message.id)
                                 .order_by(ContactReply.id))
    return {**_all_columns(message, skip=("user_id", "handled_by")),
            "replies": [_columns(r, ("created_at", "body")) for r in replies]}


def json_chunks(user_id: int) -> Iterator[str]:
    """The person's data as JSON text, a chunk at a time."""
    user = db.session.get(User, user_id)
    account = user.account
    head = {"format": "tollgate-data-export", "version": FORMAT_VERSION, "generated_at": stamp(utcnow())}
    yield json.dumps(head)[:-1] + ","
    profile = {**_columns(user, PROFILE), "two_factor": user.totp_enabled_at is not None,
               "account": _columns(account, ACCOUNT)}
    yield '"profile":' + json.dumps(profile, ensure_ascii=False, default=str)
    keys = db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id))
    yield from _array("api_keys", (_columns(k, KEY) for k in keys))
    consents = db.session.execute(
        select(TermsAcceptance, LegalDocument).join(LegalDocument, LegalDocument.id == TermsAcceptance.document_id)
        .where(TermsAcceptance.user_id == user.id).order_by(TermsAcceptance.id))
    yield from _array("consents", ({"document": d.kind, "version": d.version, "accepted_at": stamp(a.accepted_at),
                                    "ip": a.ip} for a, d in consents))
    messages = db.session.scalars(select(ContactMessage).where(ContactMessage.user_id == user.id)
                                  .order_by(ContactMessage.id))
    yield from _array("contact_messages", (_message(m) for m in messages))
    paid = db.session.scalars(select(Payment).where(Payment.account_id == account.id).order_by(Payment.id))
    yield from _array("payments", (_all_columns(p, skip=("account_id",)) for p in paid))
    refunds = db.session.scalars(select(RefundRequest).where(RefundRequest.user_id == user.id)
                                 .order_by(RefundRequest.id))
    yield from _array("refund_requests", (_all_columns(r, skip=("user_id",)) for r in refunds))
    yield from _array("statement", _entries(account.id))
    yield from _array("usage", _usage(account.id))
    yield "}"
