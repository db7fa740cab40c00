"""Console: terms, privacy and refund policy: versions with who accepted and declined, an editor
with a preview, publishing (with an effective date for significant changes), and advance notice mail."""
import functools

from datetime import datetime, time, timezone

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ... import legal, notices
from ...database import atomic
from ...errors import DomainError
from ...extensions import db
from ...i18n import day, minute
from ...models import LegalKind
from ..htmx import render
from . import actor, bp, confirmed, page_number, paginate, section

INVALID = 422
HEADINGS = {LegalKind.TERMS: _l("Terms of service"), LegalKind.PRIVACY: _l("Privacy policy"),
            LegalKind.REFUND_POLICY: _l("Refund policy")}


def when(moment: datetime) -> str:
    """legal.when in the page's language: the date, and the time only when it is not midnight UTC."""
    moment = moment.astimezone(timezone.utc)
    return day(moment) if moment.time() == time() else _("%(when)s UTC", when=minute(moment))


def _kind(slug: str) -> LegalKind:
    try:
        return LegalKind(slug)
    except ValueError:
        abort(404)


def _document(kind: LegalKind, version: str):
    document = legal.find(kind, version)
    if document is None:
        abort(404)
    return document


def _mail_notices_later(document_id: int) -> None:
    """Mail the advance notice in the background: a big user base must not hold up the request.
    Resumable: "Send the remaining notices" (or `terms notify`) mails whoever a restart left out."""
    notices.later(current_app._get_current_object(), functools.partial(legal.send_notices, document_id))


def _summary(kind: LegalKind) -> dict:
    in_force = legal.current(kind)
    scheduled = legal.upcoming(kind)
    return {"kind": kind, "heading": HEADINGS[kind], "rows": legal.version_rows(kind), "in_force": in_force,
            "scheduled": scheduled, "audience": legal.notice_audience(scheduled[0]) if scheduled else 0}


@bp.get("/legal", endpoint="legal")  # "admin.legal": the nav marks admin.legal_* pages too
def legal_index():
    return render_template("admin/legal/index.html", kinds=[_summary(kind) for kind in LegalKind], when=when)


def _draft_from(form) -> dict:
    return {"version": (form.get("version") or "").strip(), "body": form.get("body") or "",
            "significant": form.get("significant") == "yes", "effective_at": (form.get("effective_at") or "").strip(),
            "reason": (form.get("reason") or "").strip()}


def _editor(kind: LegalKind, draft: dict, errors: dict, preview=None, status: int = 200):
    return render("admin/legal/kind.html", "preview", status=status, summary=_summary(kind), draft=draft,
                  errors=errors, preview=preview, when=when)


@bp.route("/legal/<kind>", methods=["GET", "POST"])
def legal_kind(kind: str):
    kind = _kind(kind)
    if request.method in ("GET", "HEAD"):
        newest = legal.newest(kind)
        draft = {"version": "", "body": newest.body if newest else "", "significant": False, "effective_at": "",
                 "reason": ""}
        return _editor(kind, draft, {})
    draft = _draft_from(request.form)
    if request.form.get("action") != "publish":
        # The preview: the same rendering the public page uses, raw HTML escaped.
        return _editor(kind, draft, {}, preview=legal.render(draft["body"]) if draft["body"].strip() else "")
    errors = {}
    if not confirmed(request.form):
        errors["confirm"] = _("Tick the box to confirm: a published version cannot be changed or withdrawn.")
    if len(draft["reason"]) > 2000:
        errors["reason"] = _("Keep the note under 2,000 characters.")
    if not errors:
        try:
            with atomic():
                document = legal.publish(kind, draft["version"], draft["body"], significant=draft["significant"],
                                         effective_at=legal.parse_effective(draft["effective_at"]), actor=actor(),
                                         reason=draft["reason"] or None)
                document_id, version, notify = document.id, document.version, legal.after_publish(document)
                takes_effect = when(document.takes_effect)
        except DomainError as exc:
            errors[getattr(exc, "field", None) or "body"] = str(exc)
    if errors:
        return _editor(kind, draft, errors, preview=legal.render(draft["body"]) if draft["body"].strip() else "",
                       status=INVALID)
    if notify:
        _mail_notices_later(document_id)
        flash(_("Published version %(version)s: it takes effect on %(when)s. Everyone is being mailed the notice, "
                "and sees a banner until then.", version=version, when=takes_effect))
    elif draft["significant"] and kind is not LegalKind.REFUND_POLICY:
        flash(_("Published version %(version)s, in force now: people are asked to accept it at their next visit.",
                version=version))
    else:
        flash(_("Published version %(version)s, in force now.", version=version))
    return redirect(url_for("admin.legal_kind", kind=kind.value), code=303)


@bp.get("/legal/<kind>/<version>")
def legal_version(kind: str, version: str):
    kind = _kind(kind)
    document = _document(kind, version)
    showing = "declined" if request.args.get("list") == "declined" else "accepted"
    query = legal.declines(document) if showing == "declined" else legal.acceptances(document)
    row = next(r for r in legal.version_rows(kind) if r.document.id == document.id)
    return render_template("admin/legal/version.html", kind=kind, heading=HEADINGS[kind], document=document,
                           row=row, showing=showing, when=when, html=legal.render(document),
                           page=paginate(db.session, query, page_number(request.args.get("page"))),
                           audience=legal.notice_audience(document))


@bp.post("/legal/<kind>/<version>/notify")
def legal_notify(kind: str, version: str):
    kind = _kind(kind)
    document = _document(kind, version)
    if not confirmed(request.form):
        flash(_("Nothing sent: tick the box to confirm."))
        return redirect(url_for("admin.legal_version", kind=kind.value, version=document.version), code=303)
    try:
        with atomic():
            legal.request_notices(document, actor())
            document_id = document.id
    except DomainError as exc:
        flash(_("Nothing sent: %(error)s.", error=str(exc)))
    else:
        _mail_notices_later(document_id)
        flash(_("Sending the notice to everyone who has not had it yet."))
    return redirect(url_for("admin.legal_version", kind=kind.value, version=version), code=303)


section("admin.legal", _l("Legal"))
