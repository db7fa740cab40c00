"""The public status page: each public model's availability and latency, maintenance, incidents.

No login: people check it when the API misbehaves, and monitoring tools read /status.json.
"""
import logging

from flask import Blueprint, Flask, abort, g, jsonify, render_template, send_file
from sqlalchemy.exc import SQLAlchemyError

from .. import maintenance, routes, sitesettings, status

log = logging.getLogger(__name__)

bp = Blueprint("status", __name__)


@bp.get("/status")
def index():
    return render_template("status/index.html", figures=status.figures(), incidents=status.public_incidents(),
                           render=status.render, degraded=routes.degraded_models())


@bp.get("/status.json")
def as_json():
    figures = status.figures()
    state = maintenance.current()
    degraded = routes.degraded_models()  # this process's circuit breakers (proxy/breaker.py)
    return jsonify(
        computed_at=figures.computed_at.isoformat(),
        maintenance=None if state is None else {**state.as_dict(), "retry_after_seconds": state.retry_after()},
        models=[{"id": m.public_id, "last_hour": m.hour.as_json(), "last_day": m.day.as_json(),
                 "degraded": m.public_id in degraded} for m in figures.models],
        incidents=[{"id": i.id, "title": i.title, "started_at": i.started_at.isoformat(),
                    "resolved_at": i.resolved_at.isoformat() if i.resolved_at else None,
                    "ongoing": i.resolved_at is None} for i in status.public_incidents()],
    )


def _site_context() -> dict:
    # Once per request: a page renders several templates, and all of them should agree.
    if "_tollgate_site" not in g:
        try:
            g._tollgate_site = {"brand": sitesettings.branding(), "maintenance": maintenance.current()}
        except SQLAlchemyError as exc:
            # The database is unreachable: pages (error pages above all) still render, with the
            # configuration's branding and no banner. An outage is one line per page, not a traceback.
            from ..database import unavailable
            log.warning("site settings unreadable; using the configuration's branding", exc_info=not unavailable(exc))
            g._tollgate_site = {"brand": sitesettings.branding({}), "maintenance": None}
    return g._tollgate_site


def logo(name: str):
    """The uploaded logo (sitesettings.save_logo); named by its content, so cached for long."""
    path = sitesettings.logo_path(name)
    if path is None:
        abort(404)
    response = send_file(path, mimetype=sitesettings.LOGO_MIMETYPES[path.suffix[1:]], max_age=365 * 24 * 3600)
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response


def init_app(app: Flask) -> None:
    """The branding and maintenance notice in every template, and the logo's address."""
    app.context_processor(_site_context)
    # On the app, not the blueprint: the logo shows on every page, the consent page included,
    # which lets through only requests outside any blueprint (auth.require_consent).
    app.add_url_rule("/brand/<name>", endpoint="site_logo", view_func=logo)
