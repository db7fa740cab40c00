"""A public model's routes: the upstreams that may serve it, each with its model name, priority and weight.

The model's own upstream (CatalogModel.upstream_id and upstream_model, what `catalog.set_model`
sets) is always one of its routes, its "primary"; others are added here. The proxy tries the
lowest priority number first, by weight among equals, and fails over to the next (proxy/routing.py).
Routes may speak different wire protocols (OpenAI's and Anthropic's): the proxy translates each call
to the protocol of the upstream it tries (proxy/translate/). The model's price is the same whichever serves.
"""
from typing import Optional

from flask import current_app
from sqlalchemy import select

from . import audit, catalog
from .audit import Actor
from .errors import AlreadyExists, InvalidInput
from .extensions import db
from .models import CatalogModel, ModelRoute, Protocol, Upstream

MAX_PRIORITY = 1000
MAX_WEIGHT = 1000


def _rows(model_id: int) -> list[ModelRoute]:
    return list(db.session.scalars(select(ModelRoute).where(ModelRoute.model_id == model_id)
                                   .order_by(ModelRoute.priority, ModelRoute.id)))


def routes_of(model: CatalogModel) -> list[ModelRoute]:
    """The model's routes, best priority first (a model saved before routes existed: its one upstream)."""
    rows = _rows(model.id)
    if rows:
        return rows
    return [ModelRoute(model_id=model.id, upstream_id=model.upstream_id, upstream=model.upstream,
                       upstream_model=model.upstream_model, priority=1, weight=1)]


def sync_primary(model: CatalogModel, old_upstream: Optional[Upstream]) -> None:
    """Keep the route of the model's own upstream in step with it (catalog.set_model calls this):
    a changed upstream takes over the old one's route (its priority and weight)."""
    rows = _rows(model.id)
    mine = {row.upstream_id: row for row in rows}
    primary = mine.get(model.upstream_id)
    old = mine.get(old_upstream.id) if old_upstream is not None and old_upstream.id != model.upstream_id else None
    if old is not None:
        if primary is None:
            old.upstream_id, primary = model.upstream_id, old
        else:
            db.session.delete(old)
    if primary is None:
        primary = ModelRoute(model_id=model.id, upstream_id=model.upstream_id, upstream_model=model.upstream_model,
                             priority=min((row.priority for row in rows), default=1), weight=1)
        db.session.add(primary)
    primary.upstream_model = model.upstream_model
    db.session.flush()


def _number(value, what: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a whole number from {low} to {high}, got {value!r}", field=what) from None
    if not low <= number <= high:
        raise InvalidInput(f"{what} must be from {low} to {high}, got {number}", field=what)
    return number


def _state(route: ModelRoute) -> dict:
    return {"upstream": route.upstream.name, "upstream_model": route.upstream_model,
            "priority": route.priority, "weight": route.weight}


def _route(model: CatalogModel, upstream_name: str) -> ModelRoute:
    upstream = catalog.find_upstream(upstream_name)
    route = db.session.scalar(select(ModelRoute).where(ModelRoute.model_id == model.id,
                                                       ModelRoute.upstream_id == upstream.id))
    if route is None:
        raise InvalidInput(f"the model {model.public_id!r} has no route to the upstream {upstream_name!r}",
                           field="upstream")
    return route


def add_route(public_id: str, upstream_name: str, *, upstream_model: Optional[str] = None, priority=1, weight=1,
              actor: Optional[Actor] = None, reason: Optional[str] = None) -> ModelRoute:
    """Let another upstream serve the model (its model name there defaults to the public id)."""
    model = catalog.find_model(public_id)
    upstream = catalog.find_upstream(upstream_name)
    priority = _number(priority, "priority", 0, MAX_PRIORITY)
    weight = _number(weight, "weight", 1, MAX_WEIGHT)
    name = catalog.clean_name(upstream_model or model.public_id, "upstream model name", 128)
    if Protocol.ECHO.value in (upstream.protocol, model.upstream.protocol) and upstream.protocol != model.upstream.protocol:
        raise InvalidInput(f"the built-in echo upstream answers for no real model, and no real upstream for "
                           f"{public_id!r}: the model and {upstream.name!r} cannot share routes", field="upstream")
    if not _rows(model.id):
        sync_primary(model, None)  # a model from before routes: its own upstream becomes a row first
    if any(row.upstream_id == upstream.id for row in _rows(model.id)):
        raise AlreadyExists(f"the model {public_id!r} has a route to {upstream.name!r} already; change it instead")
    route = ModelRoute(model_id=model.id, upstream_id=upstream.id, upstream=upstream, upstream_model=name,
                       priority=priority, weight=weight)
    db.session.add(route)
    db.session.flush()
    if actor is not None:
        audit.record(actor, "model.route_add", "model", public_id, reason=reason, after=_state(route))
    catalog.changed()
    return route


def update_route(public_id: str, upstream_name: str, *, upstream_model: Optional[str] = None, priority=None,
                 weight=None, actor: Optional[Actor] = None, reason: Optional[str] = None) -> tuple[ModelRoute, bool]:
    """Change a route's model name, priority and/or weight (each None is kept); (route, whether it changed)."""
    model = catalog.find_model(public_id)
    if not _rows(model.id):
        sync_primary(model, None)
    route = _route(model, upstream_name)
    before = _state(route)
    if priority is not None:
        route.priority = _number(priority, "priority", 0, MAX_PRIORITY)
    if weight is not None:
        route.weight = _number(weight, "weight", 1, MAX_WEIGHT)
    if upstream_model is not None:
        route.upstream_model = catalog.clean_name(upstream_model, "upstream model name", 128)
        if route.upstream_id == model.upstream_id:
            model.upstream_model = route.upstream_model
    db.session.flush()
    after = _state(route)
    if before == after:
        return route, False
    if actor is not None:
        audit.record(actor, "model.route_update", "model", public_id, reason=reason, before=before, after=after)
    catalog.changed()
    return route, True


def remove_route(public_id: str, upstream_name: str, *, actor: Optional[Actor] = None,
                 reason: Optional[str] = None) -> None:
    """Stop an upstream serving the model. Its last route cannot go; when the model's own upstream's
    goes, the best remaining route's upstream becomes the model's own."""
    model = catalog.find_model(public_id)
    route = _route(model, upstream_name)
    rest = [row for row in _rows(model.id) if row.id != route.id]
    if not rest:
        raise InvalidInput(f"{upstream_name!r} is the only upstream of {public_id!r}: add another route first, "
                           "or disable the model", field="upstream")
    before = _state(route)
    if route.upstream_id == model.upstream_id:
        model.upstream_id, model.upstream_model = rest[0].upstream_id, rest[0].upstream_model
        db.session.expire(model, ["upstream"])
    db.session.delete(route)
    db.session.flush()
    if actor is not None:
        audit.record(actor, "model.route_remove", "model", public_id, reason=reason, before=before)
    catalog.changed()


def circuit_states() -> dict[str, str]:
    """Each upstream's circuit breaker state in this process (proxy/breaker.py), by upstream name;
    an upstream not listed is closed. Per process: another serving process may see it otherwise."""
    gateway = current_app.extensions.get("tollgate.gateway")
    return {} if gateway is None else gateway.breakers.states()


def degraded_models() -> set[str]:
    """Public ids of the models one of whose upstreams this process's circuit breaker keeps (or
    just let out of) its circuit open: /status says "degraded", naming no upstream."""
    tripped = [name for name, state in circuit_states().items() if state != "closed"]
    if not tripped:
        return set()
    by_route = select(CatalogModel.public_id).join(ModelRoute, ModelRoute.model_id == CatalogModel.id).join(
        Upstream, Upstream.id == ModelRoute.upstream_id).where(Upstream.name.in_(tripped))
    by_own = select(CatalogModel.public_id).join(Upstream, Upstream.id == CatalogModel.upstream_id).where(
        Upstream.name.in_(tripped))
    return set(db.session.scalars(by_route)) | set(db.session.scalars(by_own))
