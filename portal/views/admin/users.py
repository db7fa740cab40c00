"""Console: users. Search by email; a person's page (money, keys, calls, consents, payments,
history); and the operator's actions on them, each a POST with a reason that calls one function
of moderation.py (the CLI's twins call the same ones)."""
from typing import Callable

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ... import apilimits, moderation, refunds
from ...database import atomic
from ...errors import DomainError, InvalidInput
from ..statement import describe as describe_row
from ...extensions import db
from ...i18n import number
from ...models import ApiKey, User
from . import actor, bp, confirmed, page_number, paginate, reason_from, section

INVALID = 422


@bp.get("/users")
def users():
    search = (request.args.get("q") or "").strip()[:254]
    page = paginate(db.session, moderation.search(search), page_number(request.args.get("page")))
    return render_template("admin/users/index.html", page=page, q=search)


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _said(message) -> str:
    """An outcome's message as a sentence, in the page's language (it may be a lazy string)."""
    text = str(message)
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "。")) else ".")


def _page(user: User, status: int = 200, *, error: str = "", failed: str = ""):
    return render_template("admin/users/show.html", p=moderation.profile(user), error=error, failed=failed,
                           describe=describe_row, refund_reason=refunds.reason_words), status


@bp.get("/users/<int:user_id>")
def users_show(user_id: int):
    return _page(_user(user_id))


def _act(user_id: int, name: str, action: Callable[[User], moderation.Outcome], *, confirm: bool = False):
    """Run one action for the user's page: redirect with a flash when done, the page with the error (422) when not."""
    user = _user(user_id)
    try:
        if confirm and not confirmed(request.form):
            raise InvalidInput(_("Tick the box to confirm: this cannot be undone from here."), field="confirm")
        with atomic():
            outcome = action(db.session.get(User, user_id))
    except DomainError as exc:
        db.session.rollback()
        return _page(db.session.get(User, user.id), INVALID, error=str(exc), failed=name)
    moderation.send(outcome)
    flash(_said(outcome.message))
    return redirect(url_for("admin.users_show", user_id=user_id), 303)


def _reason_or_page(user_id: int, name: str):
    try:
        return reason_from(request.form), None
    except InvalidInput as exc:
        return None, _page(_user(user_id), INVALID, error=str(exc), failed=name)


def _with_reason(user_id: int, name: str, action: Callable[[User, str], moderation.Outcome], *,
                 confirm: bool = False):
    """An action that needs a reason: the page with the error (422) without one, else `_act`."""
    reason, refused = _reason_or_page(user_id, name)
    if refused:
        return refused
    return _act(user_id, name, lambda u: action(u, reason), confirm=confirm)


@bp.post("/users/<int:user_id>/suspend")
def users_suspend(user_id: int):
    return _with_reason(user_id, "suspend", lambda u, reason: moderation.suspend(actor(), u, reason), confirm=True)


@bp.post("/users/<int:user_id>/unsuspend")
def users_unsuspend(user_id: int):
    return _with_reason(user_id, "unsuspend", lambda u, reason: moderation.unsuspend(actor(), u, reason))


@bp.post("/users/<int:user_id>/terminate")
def users_terminate(user_id: int):
    return _with_reason(user_id, "terminate", lambda u, reason: moderation.terminate(actor(), u, reason),
                        confirm=True)


@bp.post("/users/<int:user_id>/adjust")
def users_adjust(user_id: int):
    reason, refused = _reason_or_page(user_id, "adjust")
    if refused:
        return refused
    try:
        amount = moderation.parse_signed_usd(request.form.get("amount", ""))
    except InvalidInput as exc:
        return _page(_user(user_id), INVALID, error=str(exc), failed="adjust")
    topup = request.form.get("counts_as_topup") == "yes"
    return _act(user_id, "adjust",
                lambda u: moderation.adjust_balance(actor(), u, amount, reason, counts_as_topup=topup),
                confirm=amount < 0)


@bp.post("/users/<int:user_id>/refund")
def users_refund(user_id: int):
    """Open a refund request on the person's behalf, then show it in the queue to decide."""
    reason, refused = _reason_or_page(user_id, "refund")
    if refused:
        return refused
    try:
        with atomic():
            outcome, request_id = moderation.open_refund(actor(), db.session.get(User, user_id), reason)
    except DomainError as exc:
        db.session.rollback()
        return _page(_user(user_id), INVALID, error=str(exc), failed="refund")
    flash(_said(outcome.message))
    return redirect(url_for("admin.refunds_show", request_id=request_id), 303)


@bp.post("/users/<int:user_id>/resend-verification")
def users_resend_verification(user_id: int):
    return _with_reason(user_id, "resend", lambda u, reason: moderation.resend_verification(actor(), u, reason))


@bp.post("/users/<int:user_id>/keys/<int:key_id>/revoke")
def users_revoke_key(user_id: int, key_id: int):
    key = db.session.get(ApiKey, key_id)
    if key is None or key.user_id != user_id:
        abort(404)
    return _with_reason(user_id, f"revoke-{key_id}",
                        lambda u, reason: moderation.revoke_key(actor(), db.session.get(ApiKey, key_id), reason),
                        confirm=True)


def _limit_value(raw: str):
    """A limit typed in the console: empty keeps it, "default" resets it, else a whole number."""
    raw = (raw or "").strip().lower().replace(",", "")
    if not raw:
        return apilimits.KEEP
    if raw == "default":
        return None
    # ASCII digits, and few: str.isdigit() takes "²" (int() refuses it) and int() refuses 4,300+ digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 15):
        raise InvalidInput(_("%(value)s is not a whole number: type a number up to %(max)s, 0 for no limit, "
                             "or 'default'", value=repr(raw[:40]), max=number(apilimits.MAX_PER_MINUTE)))
    return int(raw)


@bp.post("/users/<int:user_id>/limits")
def users_limits(user_id: int):
    """The operator's rate limits for the person's account or one of their keys (apilimits.set_overrides)."""
    target = request.form.get("target", "account")

    def action(user: User, reason: str):
        values = {name: _limit_value(request.form.get(name, "")) for name in ("rpm", "tpm", "concurrency")}
        key = None
        if target != "account":
            # A key id the database can hold (a huge number would fail the query, not the form).
            key = (db.session.get(ApiKey, int(target)) if target.isascii() and target.isdigit() and len(target) <= 18
                   else None)
            if key is None or key.user_id != user.id:
                raise InvalidInput(_("Choose the account or one of this person's keys."))
        return apilimits.set_overrides(actor(), user, key, reason=reason, **values)
    return _with_reason(user_id, "limits", action)


section("admin.users", _l("Users"))
