"""Console: the audit log, newest first, filtered by action, actor or target."""
from flask import render_template, request
from flask_babel import lazy_gettext as _l

from ... import audit
from ...extensions import db
from . import bp, page_number, paginate, section


@bp.get("/audit")
def audit_log():
    filters = {name: (request.args.get(name) or "").strip()[:128]
               for name in ("action", "actor", "target_type", "target_id")}
    page = paginate(db.session, audit.search(**filters), page_number(request.args.get("page")))
    return render_template("admin/audit.html", page=page, filters=filters, changes=audit.changes)


section("admin.audit_log", _l("Audit log"))
