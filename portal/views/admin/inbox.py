"""Console: the inbox: refund requests, contact messages and abuse reports, announcements.

Each action calls the same domain function as its CLI twin (refunds.approve/reject, inbox.reply,
inbox.set_handled, announcements.create), which writes the audit entry.
"""
from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import case, select

from ... import announcements, inbox, refunds
from ...database import atomic
from ...errors import DomainError, InvalidInput, NotFound
from ...extensions import db
from ...i18n import usd
from ...models import Account, ContactCategory, RefundRequest, RefundStatus, User
from . import actor, bp, confirmed, page_number, paginate, reason_from, section


def _categories() -> dict:
    """What a message is about, in the page's language (inbox.CATEGORIES keeps the English for mail)."""
    words = {ContactCategory.QUESTION.value: _("A question"), ContactCategory.BILLING.value: _("Billing"),
             ContactCategory.ABUSE.value: _("Report abuse")}
    return {value: words.get(value, label) for value, label in inbox.CATEGORIES.items()}


def _audiences() -> dict:
    """Who an announcement goes to, in the page's language."""
    words = {"all": _("All users"), "active": _("Active users (last %(days)s days)", days=announcements.ACTIVE_DAYS)}
    return {value: words.get(value, label) for value, label in announcements.AUDIENCES.items()}


# --- refund requests --------------------------------------------------------------------------------

def _refund_queue(show: str):
    is_open = RefundRequest.status == RefundStatus.REQUESTED.value
    query = select(RefundRequest, User, Account).join(User, User.id == RefundRequest.user_id) \
        .join(Account, Account.user_id == RefundRequest.user_id)
    if show == "open":
        query = query.where(is_open)
    # Open requests first, oldest first (they wait longest); then the decided ones, newest first.
    return query.order_by(case((is_open, 0), else_=1), case((is_open, RefundRequest.id), else_=-RefundRequest.id))


@bp.get("/refunds", endpoint="refunds")
def refunds_queue():
    show = "all" if request.args.get("show") == "all" else "open"
    page = paginate(db.session, _refund_queue(show), page_number(request.args.get("page")), per_page=20)
    rows = [(refund, user, account, refunds.refundable(account) if refund.status == RefundStatus.REQUESTED.value
             else None) for refund, user, account in page.items]
    return render_template("admin/inbox/refunds.html", page=page, rows=rows, show=show)


@bp.get("/refunds/<int:request_id>", endpoint="refunds_show")
def refund_request(request_id):
    refund = db.session.get(RefundRequest, request_id)
    if refund is None:
        return render_template("admin/inbox/missing.html", what=_("refund request %(id)s", id=request_id)), 404
    user = db.session.get(User, refund.user_id)
    is_open = refund.status == RefundStatus.REQUESTED.value
    return render_template("admin/inbox/refund.html", refund=refund, user=user, account=user.account,
                           plan=refunds.preview(request_id) if is_open else None, is_open=is_open,
                           payouts=refunds.payouts(request_id) if refund.amount_refunded else [],
                           refund_reason=refunds.reason_words)


@bp.post("/refunds/<int:request_id>/approve", endpoint="refunds_approve")
def refund_approve(request_id):
    if not confirmed(request.form):
        flash(_("Tick the box to confirm: a refund cannot be undone."))
        return redirect(url_for("admin.refunds_show", request_id=request_id))
    try:
        result = refunds.approve(request_id, actor=actor())
    except DomainError as exc:
        flash(_("Nothing was done: %(error)s.", error=str(exc)))
        return redirect(url_for("admin.refunds_show", request_id=request_id))
    refund = result.request
    if not result.done:
        flash(_("Refund request %(id)s is still open: %(why)s", id=request_id, why=result.stopped))
    elif refund.amount_refunded == 0:
        flash(_("Refund request %(id)s is closed with %(zero)s refunded (%(why)s); %(email)s was told why by mail.",
                id=request_id, zero=usd(0), why=refund.decision_reason, email=refund.contact_email))
    else:
        by_hand = sum(p.amount for p in refunds.payouts(request_id) if p.by_hand)
        if by_hand:
            message = _("Refund request %(id)s is paid: %(amount)s in all, of which %(by_hand)s is yours to pay back "
                        "by hand. %(email)s was mailed.", id=request_id, amount=usd(refund.amount_refunded),
                        by_hand=usd(by_hand), email=refund.contact_email)
        else:
            message = _("Refund request %(id)s is paid: %(amount)s in all. %(email)s was mailed.", id=request_id,
                        amount=usd(refund.amount_refunded), email=refund.contact_email)
        if result.closed_account:
            message += " " + _("The account is closed, as the person asked.")
        flash(message)
    return redirect(url_for("admin.refunds_show", request_id=request_id))


@bp.post("/refunds/<int:request_id>/reject", endpoint="refunds_reject")
def refund_reject(request_id):
    try:
        refund = refunds.reject(request_id, reason_from(request.form), actor=actor())
    except DomainError as exc:
        flash(_("Nothing was done: %(error)s", error=str(exc)))
        return redirect(url_for("admin.refunds_show", request_id=request_id))
    flash(_("Refund request %(id)s is refused; %(email)s was mailed the reason.", id=request_id,
            email=refund.contact_email))
    return redirect(url_for("admin.refunds_show", request_id=request_id))


# --- contact messages and abuse reports ---------------------------------------------------------------

@bp.get("/inbox", endpoint="inbox")
def inbox_queue():
    category = request.args.get("category", "")
    category = category if category in inbox.CATEGORIES else ""
    state = request.args.get("state", "all")
    state = state if state in inbox.STATES else "all"
    page = paginate(db.session, inbox.queue(category=category, state=state), page_number(request.args.get("page")))
    return render_template("admin/inbox/messages.html", page=page, category=category, state=state,
                           categories=_categories(), operator_email=current_app.config.get("OPERATOR_EMAIL"))


def _message_page(message_id: int, status: int = 200, reply_error: str = "", reply_body: str = ""):
    message = db.session.get(inbox.ContactMessage, message_id)
    if message is None:
        return render_template("admin/inbox/missing.html", what=_("contact message %(id)s", id=message_id)), 404
    owners = inbox.reported_owners(message) if message.category == ContactCategory.ABUSE.value else []
    return render_template("admin/inbox/message.html", message=message, replies=inbox.replies(message_id),
                           owners=owners, label=_categories().get(message.category, message.category),
                           reply_error=reply_error, reply_body=reply_body), status


@bp.get("/inbox/<int:message_id>")
def inbox_message(message_id):
    return _message_page(message_id)


@bp.post("/inbox/<int:message_id>/handled")
def inbox_handled(message_id):
    handled = request.form.get("handled") != "no"
    try:
        with atomic():
            changed = inbox.set_handled(message_id, handled, actor())
    except NotFound:
        return render_template("admin/inbox/missing.html", what=_("contact message %(id)s", id=message_id)), 404
    if not changed:
        flash(_("Message %(id)s was already handled: nothing changed.", id=message_id) if handled
              else _("Message %(id)s was already open: nothing changed.", id=message_id))
    else:
        flash(_("Message %(id)s is handled.", id=message_id) if handled
              else _("Message %(id)s is open again.", id=message_id))
    return redirect(url_for("admin.inbox_message", message_id=message_id))


@bp.post("/inbox/<int:message_id>/reply")
def inbox_reply(message_id):
    body = request.form.get("body", "")
    try:
        row = inbox.reply(message_id, body, actor(), handled=request.form.get("handled") == "yes")
    except NotFound:
        return render_template("admin/inbox/missing.html", what=_("contact message %(id)s", id=message_id)), 404
    except InvalidInput as exc:
        return _message_page(message_id, 422, reply_error=str(exc), reply_body=body)
    message = db.session.get(inbox.ContactMessage, row.message_id)
    flash(_("Your reply was mailed to %(email)s.", email=message.email))
    return redirect(url_for("admin.inbox_message", message_id=message_id))


# --- announcements ----------------------------------------------------------------------------------

def _announcements_page(status: int = 200, *, form=None, errors=None, preview=False):
    page = paginate(db.session, announcements.listing(), page_number(request.args.get("page")), per_page=20)
    return render_template("admin/inbox/announcements.html", page=page, progress=announcements.progress,
                           counts={a: announcements.count(a) for a in announcements.AUDIENCES},
                           audiences=_audiences(), form=form or {"audience": "active"},
                           errors=errors or {}, preview=preview, active_days=announcements.ACTIVE_DAYS,
                           per_minute=current_app.config["ANNOUNCE_PER_MINUTE"]), status


@bp.get("/announcements", endpoint="announcements")
def announcements_page():
    return _announcements_page()


@bp.post("/announcements/send", endpoint="announcements_send")
def announcement_send():
    form = {name: request.form.get(name, "") for name in ("subject", "body", "audience")}
    if request.form.get("action") == "preview":
        return _announcements_page(form=form, preview=True)
    if not confirmed(request.form):
        return _announcements_page(422, form=form, preview=True,
                                   errors={"confirm": _("Tick the box to confirm: a sent announcement cannot be recalled.")})
    try:
        with atomic():
            row = announcements.create(form["subject"], form["body"], form["audience"], actor())
    except InvalidInput as exc:
        return _announcements_page(422, form=form, errors={exc.field or "body": str(exc)})
    announcements.wake()
    flash(_("Announcement %(id)s is on its way to %(count)s people, %(per_minute)s a minute at most.", id=row.id,
            count=row.recipients, per_minute=current_app.config["ANNOUNCE_PER_MINUTE"]))
    return redirect(url_for("admin.announcements"))


section("admin.refunds", _l("Refunds"))
section("admin.inbox", _l("Inbox"))
section("admin.announcements", _l("Announcements"))
