"""Console: maintenance mode, branding and the status page's incidents."""
from datetime import datetime, timezone
from typing import Optional

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ... import maintenance, sitesettings, status
from ...database import atomic
from ...errors import InvalidInput
from ...extensions import db
from ...models import Incident
from . import actor, bp, confirmed, page_number, paginate, reason_from, section


def _moment(raw: Optional[str], field: str) -> Optional[datetime]:
    """A time from a form: ISO 8601, or a browser's date-time field (no zone: read as UTC)."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise InvalidInput(_("Give the time as 2027-01-31 18:00 (UTC)."), field=field) from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _index(errors: Optional[dict] = None, form: Optional[dict] = None, status_code: int = 200):
    return render_template("admin/site/index.html", state=maintenance.announced(), now=maintenance.utcnow(),
                           branding=sitesettings.branding(), fields=sitesettings.BRANDING_FIELDS,
                           brand_labels=_brand_labels(),
                           saved=sitesettings.stored(), errors=errors or {}, form=form or {},
                           max_logo_kb=sitesettings.LOGO_MAX_BYTES // 1024,
                           default_retry_minutes=maintenance.DEFAULT_RETRY_SECONDS // 60), status_code


def _brand_labels() -> dict:
    """The branding fields' labels in the page's language (sitesettings keeps the English)."""
    return {"site_name": _("Site name"), "contact_email": _("Contact address"),
            "operator_name": _("Operator's legal name"), "operator_address": _("Operator's postal address")}


def _refused(exc: InvalidInput):
    return _index({exc.field or "form": str(exc)}, request.form.to_dict(), 422)


@bp.get("/site")
def site():
    return _index()


@bp.post("/site/maintenance")
def site_maintenance_on():
    try:
        if not confirmed(request.form):
            raise InvalidInput(_("Tick the box to confirm: every API call will be refused."), field="confirm")
        reason = reason_from(request.form)
        until = _moment(request.form.get("until"), "until")
        with atomic():
            changed = maintenance.turn_on(actor(), message=request.form.get("message"), until=until, reason=reason)
    except InvalidInput as exc:
        return _refused(exc)
    flash(_("Maintenance is on: API calls are refused with 503, and the portal shows the banner.") if changed
          else _("Maintenance was already on with this message and end time; nothing changed."))
    return redirect(url_for("admin.site"))


@bp.post("/site/maintenance/off")
def site_maintenance_off():
    try:
        reason = reason_from(request.form)
        with atomic():
            changed = maintenance.turn_off(actor(), reason=reason)
    except InvalidInput as exc:
        return _refused(exc)
    flash(_("Maintenance is off: the API answers calls again.") if changed
          else _("Maintenance was already off; nothing changed."))
    return redirect(url_for("admin.site"))


@bp.post("/site/branding")
def site_branding():
    # Only the fields sent: a field left out keeps its value, an emptied one goes back to the configuration's.
    values = {key: request.form[key] for key, *_rest in sitesettings.BRANDING_FIELDS if key in request.form}
    try:
        with atomic():
            changed = sitesettings.save_branding(actor(), values, reason=request.form.get("reason") or None)
    except InvalidInput as exc:
        return _refused(exc)
    flash(_("Branding saved.") if changed else _("The branding already said that; nothing changed."))
    return redirect(url_for("admin.site"))


@bp.post("/site/logo")
def site_logo():
    upload = request.files.get("logo")
    data = upload.read(sitesettings.LOGO_MAX_BYTES + 1) if upload else b""
    try:
        with atomic():
            sitesettings.save_logo(actor(), data, reason=request.form.get("reason") or None)
    except InvalidInput as exc:
        return _refused(exc)
    flash(_("Logo saved; it shows in the header of every page."))
    return redirect(url_for("admin.site"))


@bp.post("/site/logo/remove")
def site_logo_remove():
    try:
        reason = reason_from(request.form)
        with atomic():
            changed = sitesettings.remove_logo(actor(), reason=reason)
    except InvalidInput as exc:
        return _refused(exc)
    flash(_("Logo removed; the header shows the site name.") if changed else _("There was no logo; nothing changed."))
    return redirect(url_for("admin.site"))


# -- incidents -------------------------------------------------------------------------------


def _incidents(errors: Optional[dict] = None, form: Optional[dict] = None, status_code: int = 200):
    page = paginate(db.session, status.all_incidents(), page_number(request.args.get("page")))
    return render_template("admin/site/incidents.html", page=page, errors=errors or {}, form=form or {}), status_code


@bp.get("/site/incidents")
def site_incidents():
    return _incidents()


@bp.post("/site/incidents")
def site_incident_add():
    try:
        with atomic():
            incident = status.add(actor(), request.form.get("title", ""), request.form.get("body", ""),
                                  started_at=_moment(request.form.get("started_at"), "started_at"))
    except InvalidInput as exc:
        return _incidents({exc.field or "form": str(exc)}, request.form.to_dict(), 422)
    flash(_("Incident %(id)s is on the status page, as ongoing.", id=incident.id))
    return redirect(url_for("admin.site_incidents"))


def _edit_page(incident, errors: Optional[dict] = None, form: Optional[dict] = None, status_code: int = 200):
    return render_template("admin/site/incident.html", incident=incident, errors=errors or {}, form=form or {},
                           html=status.render(incident)), status_code


@bp.get("/site/incidents/<int:incident_id>")
def site_incident(incident_id: int):
    return _edit_page(_found(incident_id))


def _found(incident_id: int) -> Incident:
    incident = db.session.get(Incident, incident_id)
    if incident is None:
        abort(404)
    return incident


@bp.post("/site/incidents/<int:incident_id>")
def site_incident_edit(incident_id: int):
    incident = _found(incident_id)
    started = request.form.get("started_at")
    if started == incident.started_at.strftime("%Y-%m-%dT%H:%M"):
        started = None  # the form shows minutes: an untouched start keeps its seconds
    try:
        with atomic():
            changed = status.edit(actor(), incident_id, request.form.get("title", ""), request.form.get("body", ""),
                                  started_at=_moment(started, "started_at"),
                                  reason=request.form.get("reason") or None)
    except InvalidInput as exc:
        db.session.rollback()
        return _edit_page(_found(incident_id), {exc.field or "form": str(exc)}, request.form.to_dict(), 422)
    flash(_("Incident %(id)s updated.", id=incident.id) if changed else _("The incident already said that; nothing changed."))
    return redirect(url_for("admin.site_incident", incident_id=incident_id))


@bp.post("/site/incidents/<int:incident_id>/resolve")
def site_incident_resolve(incident_id: int):
    _found(incident_id)
    try:
        with atomic():
            changed = status.resolve(actor(), incident_id, at=_moment(request.form.get("resolved_at"), "resolved_at"),
                                     reason=request.form.get("reason") or None)
    except InvalidInput as exc:
        db.session.rollback()
        return _edit_page(_found(incident_id), {exc.field or "form": str(exc)}, request.form.to_dict(), 422)
    flash(_("Incident %(id)s is resolved.", id=incident_id) if changed else _("The incident was already resolved; nothing changed."))
    return redirect(url_for("admin.site_incident", incident_id=incident_id))


section("admin.site", _l("Site & status"))
