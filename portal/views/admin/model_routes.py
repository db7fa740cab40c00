"""Console: a model's routes, the upstreams that may serve it (portal/routes.py): add one, change
its priority, weight or model name there, remove it. Each action needs a reason and is audited,
like `flask models route ...`; the model's page lists them with this process's circuit states.
"""
from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _

from ... import routes
from ...database import atomic
from ...errors import DomainError, InvalidInput
from ...extensions import db
from ...models import Upstream
from . import actor, bp, confirmed, reason_from
from .models import _model, _show


def _upstream_name(upstream_id: int) -> str:
    upstream = db.session.get(Upstream, upstream_id)
    if upstream is None:
        abort(404)
    return upstream.name


def _back(model_id: int):
    return redirect(url_for("admin.models_show", model_id=model_id, _anchor="routes"))


def _refused(model_id: int, exc: DomainError, form_name: str):
    db.session.rollback()
    return _show(_model(model_id), 422, values={"routes": request.form},
                 form_errors={form_name: {getattr(exc, "field", None) or "upstream": str(exc)}})


@bp.post("/models/<int:model_id>/routes")
def model_routes_add(model_id: int):
    model = _model(model_id)
    form = request.form
    try:
        reason = reason_from(form)
        with atomic():
            route = routes.add_route(model.public_id, form.get("upstream") or "",
                                     upstream_model=(form.get("upstream_model") or "").strip() or None,
                                     priority=(form.get("priority") or "1").strip(),
                                     weight=(form.get("weight") or "1").strip(), actor=actor(), reason=reason)
            name = route.upstream.name
    except DomainError as exc:
        return _refused(model_id, exc, "route_add")
    flash(_("%(upstream)s may now serve %(model)s.", upstream=name, model=model.public_id))
    return _back(model_id)


@bp.post("/models/<int:model_id>/routes/<int:upstream_id>")
def model_routes_update(model_id: int, upstream_id: int):
    model = _model(model_id)
    form = request.form
    name = _upstream_name(upstream_id)
    try:
        reason = reason_from(form)
        with atomic():
            _route, changed = routes.update_route(model.public_id, name,
                                             upstream_model=(form.get("upstream_model") or "").strip() or None,
                                             priority=(form.get("priority") or "").strip() or None,
                                             weight=(form.get("weight") or "").strip() or None,
                                             actor=actor(), reason=reason)
    except DomainError as exc:
        return _refused(model_id, exc, f"route_{upstream_id}")
    flash(_("Route via %(upstream)s saved.", upstream=name) if changed else _("Nothing changed."))
    return _back(model_id)


@bp.post("/models/<int:model_id>/routes/<int:upstream_id>/remove")
def model_routes_remove(model_id: int, upstream_id: int):
    model = _model(model_id)
    name = _upstream_name(upstream_id)
    try:
        reason = reason_from(request.form)
        if not confirmed(request.form):
            raise InvalidInput(_("Tick the box to confirm."), field="confirm")
        with atomic():
            routes.remove_route(model.public_id, name, actor=actor(), reason=reason)
    except DomainError as exc:
        return _refused(model_id, exc, f"route_{upstream_id}")
    flash(_("%(upstream)s no longer serves %(model)s.", upstream=name, model=model.public_id))
    return _back(model_id)
