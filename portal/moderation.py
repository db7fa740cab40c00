"""The operator's actions on people and keys: suspend, reinstate, terminate, adjust a balance,
resend verification, revoke a key, grant or take away admin rights; and what the console shows
of a person.

Each action takes the `Actor` (an admin in the console, or `Actor.cli()`) and writes one audit
entry in the caller's transaction, so the console and the CLI share every rule. An action that
finds nothing to do (suspending a suspended person) changes nothing, writes no entry, and says
so in its `Outcome`. Mail is composed here, while the address is still known (terminating
anonymises it), and sent by `send` once the caller's transaction has committed.
"""
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Optional

from flask import render_template
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_ngettext
from sqlalchemy import func, select

from . import apikeys, audit, email_links, ledger, links, logins, mail, payments, refunds, usage, users
from .audit import Actor
from .errors import InsufficientFunds, InvalidInput, NotFound, UnknownUser
from .extensions import db
from .models import (Account, ApiKey, AuditEntry, ContactMessage, EntryKind, Hold, HoldStatus, LedgerEntry,
                     LegalDocument, Payment, RefundRequest, RefundStatus, TermsAcceptance, TokenPurpose, UsageRecord,
                     User, UserStatus, utcnow)
from .money import format_usd, parse_usd
from .statement import rows as statement_rows

ADDRESS_WINDOW = timedelta(days=30)  # client addresses per key: from calls this recent
_SIGNED_USD = re.compile(r"^\s*(?P<sign>[+-]?)\s*(?P<rest>.*)$", re.S)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: Any  # a lazy_gettext string: written when sent, in the recipient's language
    template: str
    context: dict = field(default_factory=dict)
    locale: Optional[str] = None  # the recipient's choice; None: English (the operator's language decides nothing)


@dataclass(frozen=True)
class Outcome:
    """What an action did: `changed` False when there was nothing to do (and no audit entry)."""

    changed: bool
    message: str
    mail: Optional[Mail] = None


def send(outcome: Outcome) -> None:
    """Deliver the outcome's mail, if any: call it after the action's transaction committed."""
    if outcome.mail is not None:
        context = dict(outcome.mail.context, contact=links.public_url("pages.contact"),
                       login=links.public_url("auth.login"))
        with mail.localized(outcome.mail.locale or "en"):
            mail.send(outcome.mail.to, str(outcome.mail.subject), render_template(outcome.mail.template, **context))


def _state(user: User) -> dict[str, Any]:
    return {"status": user.status, "status_reason": user.status_reason}


def _not_yourself(actor: Actor, user: User, what: str) -> None:
    if actor.user_id is not None and actor.user_id == user.id:
        raise InvalidInput(_l("You cannot suspend your own account from the console.") if what == "suspend" else
                           _l("You cannot terminate your own account from the console.") if what == "terminate" else
                           f"You cannot {what} your own account from the console.")


_reason = audit.require_reason


# -- finding people and keys --------------------------------------------------------------------

def _email_digest(email: str) -> str:
    return hashlib.sha256(users.normalize_email(email).encode()).hexdigest()


def find_person(email: str) -> User:
    """The user with this address, or the account an operator terminated under it.

    Terminating frees the address (the account's own is anonymised), so a repeated `users
    terminate EMAIL` finds the account through its audit entry, which keeps only a digest of the
    address, and can answer that nothing changed.
    """
    try:
        return users.find_user(email)
    except UnknownUser:
        digest = _email_digest(email)
        entries = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "user.terminate")
                                     .order_by(AuditEntry.id.desc()))
        for entry in entries:
            if (entry.after or {}).get("email_sha256") == digest:
                user = db.session.get(User, int(entry.target_id))
                if user is not None and user.status == UserStatus.TERMINATED.value:
                    return user
        raise


def search(text: str = ""):
    """Users and their accounts whose address contains `text` (any case), newest first: a query to paginate."""
    query = select(User, Account).join(Account, Account.user_id == User.id).order_by(User.id.desc())
    text = (text or "").strip()
    if text:
        query = query.where(func.lower(User.email).contains(text.lower(), autoescape=True))
    return query


def _hint_suffix(text: str) -> str:
    """The distinctive end of a key hint as typed: "tg_…AbC1", "tg_...AbC1" or "AbC1"."""
    text = (text or "").strip()
    for prefix in (apikeys.PREFIX + "…", apikeys.PREFIX + "...", "…", "..."):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def find_key(hint: str, owner: Optional[User] = None) -> ApiKey:
    """The one key with this hint (of `owner`, when given); InvalidInput naming the candidates when several match."""
    suffix = _hint_suffix(hint)
    if not re.fullmatch(r"[A-Za-z0-9]{4}", suffix):
        raise InvalidInput(f"{hint!r} is not a key hint: give it as shown in lists, e.g. tg_…AbC1", field="hint")
    query = select(ApiKey).where(ApiKey.hint == f"{apikeys.PREFIX}…{suffix}").order_by(ApiKey.id)
    if owner is not None:
        query = query.where(ApiKey.user_id == owner.id)
    keys = list(db.session.scalars(query))
    if not keys:
        raise NotFound(f"no key with the hint {apikeys.PREFIX}…{suffix}"
                       + (f" belongs to {owner.email}" if owner is not None else ""))
    if len(keys) > 1:
        listed = "; ".join(f"#{k.id} {k.hint} {k.name!r} of {k.user.email}"
                           f"{' (revoked)' if k.revoked_at else ''}" for k in keys)
        raise InvalidInput(f"{len(keys)} keys end in {suffix}: {listed}. Name the owner to choose one.", field="hint")
    return keys[0]


# -- actions ------------------------------------------------------------------------------------

def create_user(actor: Actor, email: str, password: Optional[str] = None, *, admin: bool = False,
                verified: bool = False) -> Outcome:
    """Create a user (an admin, when asked) with an empty credit account."""
    user = users.create_user(email, password, admin=admin, verified=verified)
    db.session.flush()
    audit.record(actor, "user.create", "user", user.id,
                 after={"email": user.email, "is_admin": admin, "is_verified": verified})
    note = ""
    if admin:
        note = (" (admin: the console at /admin opens once they turn on two-factor authentication on their "
                "account page)")
    return Outcome(True, f"created {user.email}{note}{' (verified)' if verified else ''}")


def set_admin(actor: Actor, user: User, on: bool, reason: Optional[str] = None) -> Outcome:
    """Give or take away operator rights (the console also needs the person's two-factor on)."""
    if user.status == UserStatus.TERMINATED.value and on:
        raise InvalidInput(f"{user.email} is terminated; it cannot be made an admin")
    if not on:
        _not_yourself(actor, user, "take admin rights from")
    if user.is_admin == on:
        return Outcome(False, f"{user.email} is already {'an admin' if on else 'not an admin'}; nothing changed")
    before = {"is_admin": user.is_admin}
    user.is_admin = on
    audit.record(actor, "user.admin", "user", user.id, reason=reason, before=before, after={"is_admin": on})
    if on:
        two_factor = ("" if user.totp_enabled_at else
                      "; the console opens once they turn on two-factor authentication on their account page")
        return Outcome(True, f"{user.email} is an admin now{two_factor}")
    return Outcome(True, f"{user.email} is no longer an admin")


def suspend(actor: Actor, user: User, reason: str) -> Outcome:
    """Suspend: keys refused at once, sessions ended, the person mailed the reason; they keep read-only access."""
    reason = _reason(reason)
    _not_yourself(actor, user, "suspend")
    if user.status == UserStatus.SUSPENDED.value:
        return Outcome(False, _l("%(email)s is already suspended; nothing changed", email=user.email))
    before = _state(user)
    users.suspend(user, reason)  # raises for a terminated account
    audit.record(actor, "user.suspend", "user", user.id, reason=reason, before=before, after=_state(user))
    return Outcome(True, _l("suspended %(email)s: %(reason)s", email=user.email, reason=reason),
                   Mail(user.email, _l("Your account is suspended"), "mail/account_suspended.txt", {"reason": reason},
                        user.locale))


def unsuspend(actor: Actor, user: User, reason: Optional[str] = None) -> Outcome:
    """Lift a suspension; the person is mailed. Their keys work again (revoked ones stay revoked)."""
    reason = (reason or "").strip()[:2000] or None
    if user.status == UserStatus.ACTIVE.value:
        return Outcome(False, _l("%(email)s is not suspended; nothing changed", email=user.email))
    if user.status == UserStatus.TERMINATED.value:
        raise InvalidInput(_l("%(email)s is terminated; a terminated account cannot be reinstated", email=user.email))
    before = _state(user)
    users.unsuspend(user)
    audit.record(actor, "user.unsuspend", "user", user.id, reason=reason, before=before, after=_state(user))
    return Outcome(True, _l("reactivated %(email)s", email=user.email),
                   Mail(user.email, _l("Your account is active again"), "mail/account_reinstated.txt", {"reason": reason},
                        user.locale))


def _locked_account(user: User) -> Account:
    """The account row, locked until commit on Postgres (SQLite's writer lock already serialises)."""
    return db.session.scalar(select(Account).where(Account.id == user.account.id).with_for_update()
                             .execution_options(populate_existing=True))


def terminate(actor: Actor, user: User, reason: str) -> Outcome:
    """End an account for good, "without refund": the balance is forfeited by a ledger entry, keys
    revoked, sessions ended, the address freed (as closing does); the books stay.

    Refused while a call is in flight (its hold may still settle) and while a refund request is
    open (decide it first: approving pays out, rejecting keeps the balance to forfeit).
    """
    reason = _reason(reason)
    _not_yourself(actor, user, "terminate")
    if user.status == UserStatus.TERMINATED.value:
        return Outcome(False, _l("%(email)s is already terminated; nothing changed", email=user.email))
    account = _locked_account(user)
    open_hold = db.session.scalar(select(Hold.id).where(Hold.account_id == account.id,
                                                        Hold.status == HoldStatus.OPEN.value).limit(1))
    if account.held or open_hold is not None:
        raise InvalidInput(_l("%(email)s has a call in progress (%(held)s held). Suspend the account so no new call "
                              "starts, wait for it to finish, then terminate.", email=user.email,
                              held=format_usd(account.held)))
    refund = db.session.scalar(select(RefundRequest).where(RefundRequest.user_id == user.id,
                                                           RefundRequest.status == RefundStatus.REQUESTED.value))
    if refund is not None:
        raise InvalidInput(_l("%(email)s has an open refund request (#%(id)s). Approve or reject it first, then "
                              "terminate.", email=user.email, id=refund.id))
    address, before = user.email, {**_state(user), "balance": account.balance}
    forfeited = 0
    if account.balance > 0:
        forfeited = account.balance
        ledger.debit(account.id, forfeited, EntryKind.ADJUSTMENT,
                     memo="balance forfeited: account terminated by the operator (without refund, as the terms allow)")
    keys = apikeys.revoke_all(user)
    logins.end_all(user)
    users.terminate(user, reason)
    db.session.refresh(account)
    audit.record(actor, "user.terminate", "user", user.id, reason=reason, before=before,
                 after={**_state(user), "balance": account.balance, "forfeited": forfeited, "keys_revoked": keys,
                        "email_sha256": _email_digest(address)})
    return Outcome(True, lazy_ngettext("terminated %(email)s: %(forfeited)s forfeited, %(num)d key revoked",
                                       "terminated %(email)s: %(forfeited)s forfeited, %(num)d keys revoked", keys,
                                       email=address, forfeited=format_usd(forfeited)),
                   Mail(address, _l("Your account is closed"), "mail/account_terminated.txt",
                        {"reason": reason, "forfeited": forfeited}, user.locale))


def parse_signed_usd(text: str) -> int:
    """A signed USD amount as an operator types it ("-0.5", "+2", "2") in micro-dollars; never zero."""
    match = _SIGNED_USD.match(str(text or ""))
    sign, rest = match["sign"], match["rest"]
    if rest.strip().startswith(("-", "+")):
        raise InvalidInput(_l("%(text)s is not an amount: give one sign at most, e.g. -0.5 or 2", text=repr(text)),
                           field="amount")
    try:
        amount = parse_usd(rest, what="the amount")
    except InvalidInput:
        raise InvalidInput(_l("%(text)s is not an amount in USD: type it like 2, 0.50 or -0.5",
                              text=repr(str(text).strip())), field="amount") from None
    if amount == 0:
        raise InvalidInput(_l("The amount must not be zero."), field="amount")
    return -amount if sign == "-" else amount


def adjust_balance(actor: Actor, user: User, amount: int, reason: str, *, counts_as_topup: bool = False) -> Outcome:
    """Credit (positive `amount`) or debit (negative) a balance by an adjustment entry.

    A credit that counts as a top-up moves the expiry as a paid top-up does (it still is not
    money paid in). A debit takes only from the available balance.
    """
    reason = _reason(reason)
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise InvalidInput("The amount must be a non-zero whole number of micro-USD.", field="amount")
    if user.status == UserStatus.TERMINATED.value:
        raise InvalidInput(_l("%(email)s is terminated; its balance cannot change", email=user.email))
    if amount < 0 and counts_as_topup:
        raise InvalidInput(_l("Only a credit can count as a top-up."), field="counts_as_topup")
    account = user.account
    before = {"balance": account.balance, "credits_expire_at": account.credits_expire_at}
    if amount > 0:
        entry = ledger.credit(account.id, amount, EntryKind.ADJUSTMENT, memo=reason,
                              topup_at=utcnow() if counts_as_topup else None)
    else:
        try:
            entry = ledger.debit(account.id, -amount, EntryKind.ADJUSTMENT, memo=reason)
        except InsufficientFunds as exc:
            available = exc.available if exc.available is not None else 0
            raise InvalidInput(_l("A debit of %(debit)s is more than the available balance of %(available)s (balance "
                                  "%(balance)s, %(held)s held by calls in progress). Debit at most %(most)s.",
                                  debit=format_usd(-amount), available=format_usd(available),
                                  balance=format_usd(account.balance), held=format_usd(account.held),
                                  most=format_usd(max(available, 0))), field="amount") from None
    db.session.refresh(account)
    audit.record(actor, "balance.adjust", "user", user.id, reason=reason, before=before,
                 after={"balance": account.balance, "credits_expire_at": account.credits_expire_at,
                        "amount": amount, "counts_as_topup": counts_as_topup, "ledger_entry": entry.id})
    expiry = (_l("; credits expire %(day)s", day=f"{account.credits_expire_at:%Y-%m-%d}")
              if counts_as_topup and account.credits_expire_at else "")
    words = dict(amount=format_usd(abs(amount)), email=user.email, balance=format_usd(entry.balance_after),
                 expiry=expiry)
    return Outcome(True, _l("credited %(amount)s to %(email)s; balance %(balance)s%(expiry)s", **words) if amount > 0
                   else _l("debited %(amount)s from %(email)s; balance %(balance)s%(expiry)s", **words))


def grant(actor: Actor, user: User, amount: int, reason: str, *, reference: Optional[str] = None,
          counts_as_topup: bool = False) -> Outcome:
    """Grant credit (a gift, not money paid in); with `reference`, granting again credits nothing more."""
    reason = _reason(reason)
    if user.status == UserStatus.TERMINATED.value:
        raise InvalidInput(f"{user.email} is terminated; its balance cannot change")
    if reference and db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.reference == reference)) is not None:
        # ledger.credit checks the entry matches (same account, kind and amount) or raises ReferenceConflict.
        ledger.credit(user.account.id, amount, EntryKind.GRANT, memo=reason, reference=reference)
        return Outcome(False, f"already granted with reference {reference}; nothing changed")
    account = user.account
    before = {"balance": account.balance, "credits_expire_at": account.credits_expire_at}
    entry = ledger.credit(account.id, amount, EntryKind.GRANT, memo=reason, reference=reference,
                          topup_at=utcnow() if counts_as_topup else None)
    db.session.refresh(account)
    audit.record(actor, "balance.grant", "user", user.id, reason=reason, before=before,
                 after={"balance": account.balance, "credits_expire_at": account.credits_expire_at, "amount": amount,
                        "counts_as_topup": counts_as_topup, "reference": reference, "ledger_entry": entry.id})
    expires_at = account.credits_expire_at
    return Outcome(True, f"granted {format_usd(amount)} to {user.email}; balance {format_usd(entry.balance_after)}"
                         f"{f'; credits expire {expires_at:%Y-%m-%d %H:%M} UTC' if expires_at else ''}")


def open_refund(actor: Actor, user: User, reason: str) -> tuple[Outcome, int]:
    """Open a refund request for the person (they asked by mail, say): the same request the
    portal files, decided in the refund queue, which shows what approval pays back against which
    payments. Returns the outcome and the request's id; an open request is reused."""
    reason = _reason(reason)
    if user.status == UserStatus.TERMINATED.value:
        raise InvalidInput(_l("%(email)s is terminated: its balance was forfeited and nothing is refundable",
                              email=user.email))
    existing = refunds.open_request(user)
    if existing is not None:
        return Outcome(False, _l("%(email)s already has an open refund request (#%(id)s); nothing changed",
                                 email=user.email, id=existing.id)), existing.id
    refundable = refunds.refundable(user.account)
    if refundable.amount <= 0:
        raise InvalidInput(_l("Nothing of %(email)s's balance is refundable: only unused paid top-ups are (the "
                              "credits have expired).", email=user.email) if refundable.expired else
                           _l("Nothing of %(email)s's balance is refundable: only unused paid top-ups are (none are "
                              "left unused).", email=user.email))
    request = refunds.request(user, f"{refunds.OPENED_BY_OPERATOR}{reason}")
    db.session.flush()
    audit.record(actor, "refund.open", "user", user.id, reason=reason,
                 after={"refund_request": request.id, "refundable": refundable.amount})
    return Outcome(True, _l("opened refund request #%(id)s for %(email)s: %(amount)s refundable now; approve or "
                            "reject it in the refund queue", id=request.id, email=user.email,
                            amount=format_usd(refundable.amount))), request.id


def resend_verification(actor: Actor, user: User, reason: Optional[str] = None) -> Outcome:
    """Mail a fresh verification link to a person who has not confirmed their address."""
    if user.status == UserStatus.TERMINATED.value:
        raise InvalidInput(_l("%(email)s is terminated", email=user.email))
    if user.is_verified:
        return Outcome(False, _l("%(email)s is already verified; nothing sent", email=user.email))
    token = email_links.issue(user, TokenPurpose.VERIFY)
    audit.record(actor, "user.resend_verification", "user", user.id, reason=reason)
    return Outcome(True, _l("sent a new verification link to %(email)s", email=user.email),
                   Mail(user.email, _l("Confirm your email address"), "mail/verify.txt",
                        {"link": links.public_url("auth.verify", token=token)}, user.locale))


def revoke_key(actor: Actor, key: ApiKey, reason: Optional[str] = None) -> Outcome:
    """Revoke any key: the proxy refuses it from the next call."""
    owner = key.user.email
    if key.revoked_at is not None:
        return Outcome(False, _l("key %(hint)s (%(name)s) of %(owner)s is already revoked; nothing changed",
                                 hint=key.hint, name=repr(key.name), owner=owner))
    apikeys.revoke(key)
    audit.record(actor, "key.revoke", "api_key", key.id, reason=reason, before={"revoked_at": None},
                 after={"revoked_at": key.revoked_at, "hint": key.hint, "user_id": key.user_id})
    return Outcome(True, _l("revoked key %(hint)s (%(name)s) of %(owner)s", hint=key.hint, name=repr(key.name),
                            owner=owner))


# -- what the console shows of a person ----------------------------------------------------------

@dataclass(frozen=True)
class KeyRow:
    key: ApiKey
    addresses: list[tuple[str, int, datetime]]  # (client address, calls, last seen), last ADDRESS_WINDOW


@dataclass(frozen=True)
class Profile:
    user: User
    account: Account
    overview: payments.Overview  # paid in the past 12 months, open refund, disputes, flagged events
    statement: list  # recent statement rows, newest first
    keys: list[KeyRow]
    calls: list  # (UsageRecord, key name, hint, model public id), newest first
    consents: list[tuple[TermsAcceptance, LegalDocument]]
    payments: list[Payment]
    refunds: list[RefundRequest]
    messages: list[ContactMessage]
    history: list[AuditEntry]


def _recent_statement(account_id: int, entries: int = 300, shown: int = 20) -> list:
    newest = list(db.session.execute(
        select(LedgerEntry.id, LedgerEntry.created_at, LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.balance_after,
               LedgerEntry.reference, LedgerEntry.memo)
        .where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id.desc()).limit(entries)))
    return list(reversed(list(statement_rows(reversed(newest)))))[:shown]


def _key_addresses(account_id: int, now: datetime) -> dict[int, list]:
    found: dict[int, list] = {}
    rows = db.session.execute(
        select(UsageRecord.api_key_id, UsageRecord.client_ip, func.count(), func.max(UsageRecord.started_at))
        .where(UsageRecord.account_id == account_id, UsageRecord.started_at >= now - ADDRESS_WINDOW,
               UsageRecord.client_ip.is_not(None))
        .group_by(UsageRecord.api_key_id, UsageRecord.client_ip)
        .order_by(func.max(UsageRecord.started_at).desc()).limit(1000))
    for key_id, ip, calls, last in rows:
        found.setdefault(key_id, []).append((ip, calls, last))
    return found


def profile(user: User, now: Optional[datetime] = None) -> Profile:
    """Everything the console's page of a person shows, read in one go (bounded: recent rows only)."""
    now = now or utcnow()
    account = user.account
    addresses = _key_addresses(account.id, now)
    keys = [KeyRow(key, addresses.get(key.id, [])) for key in
            db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id.desc()).limit(200))]
    consents = list(db.session.execute(
        select(TermsAcceptance, LegalDocument).join(LegalDocument, LegalDocument.id == TermsAcceptance.document_id)
        .where(TermsAcceptance.user_id == user.id).order_by(TermsAcceptance.accepted_at.desc()).limit(50)))
    return Profile(
        user=user, account=account, overview=payments.overview(user, now),
        statement=_recent_statement(account.id), keys=keys, calls=usage.recent(account.id, 20),
        consents=[tuple(row) for row in consents],
        payments=list(db.session.scalars(select(Payment).where(Payment.account_id == account.id)
                                         .order_by(Payment.id.desc()).limit(50))),
        refunds=list(db.session.scalars(select(RefundRequest).where(RefundRequest.user_id == user.id)
                                        .order_by(RefundRequest.id.desc()).limit(20))),
        messages=list(db.session.scalars(select(ContactMessage).where(ContactMessage.user_id == user.id)
                                         .order_by(ContactMessage.id.desc()).limit(20))),
        history=audit.for_target("user", user.id),
    )

