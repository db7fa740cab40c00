"""Views: turn the HTTP request into a CallRequest, run it, turn the Reply into a response."""
from functools import partial

from flask import Response, current_app, jsonify, request
from sqlalchemy import select

from portal import catalog, model_catalog, usage
from portal.extensions import db
from portal.models import Account, utcnow
from portal.pricing import price_to_spec

from . import bp
from .admission import authenticate
from .errors import ApiError, _
from .pipeline import CallRequest, Reply
from .protocols import ROUTES, error_shape
from .upstreams.http import FORWARDED_HEADERS


def _api_key() -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _call(route: str) -> Response:
    req = CallRequest(
        route=route, body=request.get_data(cache=False), api_key=_api_key(), client_ip=request.remote_addr,
        headers={name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers},
        query=request.query_string.decode("latin-1") or None, shape=error_shape(request.path),
        client_disconnected=request.environ.get("waitress.client_disconnected"),
    )
    reply: Reply = current_app.extensions["tollgate.gateway"].handle(req)
    response = Response(reply.body, status=reply.status, content_type=reply.content_type,
                        direct_passthrough=reply.streamed)
    if reply.request_id:
        response.headers["X-Request-Id"] = reply.request_id
    if reply.charge is not None:
        response.headers["X-Charge-Micro-USD"] = str(reply.charge)
    if reply.headers:
        response.headers.update(reply.headers)
    if reply.streamed:
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"  # nginx: relay events as they come
    return response


# Our path under /v1 is the upstream's path, so one table serves both.
for _route in ROUTES.values():
    bp.add_url_rule(_route.path, endpoint=_route.name, view_func=partial(_call, _route.name), methods=["POST"])


def _pricing(model) -> dict | None:
    """The model's current prices in the price file's shape (decimal strings of USD), with the changes
    still to come under "upcoming" (each with its "effective_at"); None if unpriced."""
    row = catalog.current_price(model.id)
    if row is None:
        return None
    price = catalog.as_price(row)
    # Also the way OpenRouter lists them (USD per token, beside ours per million), so tools that read
    # OpenRouter's model list read this one.
    pricing = {**model_catalog.openrouter_pricing(price), **price_to_spec(price)}
    upcoming = [{"effective_at": planned.effective_at.isoformat().replace("+00:00", "Z"),
                 **price_to_spec(catalog.as_price(planned))} for planned in catalog.upcoming_prices(model.id)]
    if upcoming:
        pricing["upcoming"] = upcoming
    return pricing


@bp.get("/models")
def models():
    caller = authenticate(_api_key(), request.remote_addr)
    # A disabled upstream's models are left out while it is disabled (their calls answer 503).
    rows = [m for m in catalog.enabled_models() if caller.may_use(m.public_id) and m.upstream.enabled]

    def described(m) -> dict:
        # The limits under OpenRouter's names too.
        window = m.context_window or catalog.DEFAULT_CONTEXT_WINDOW
        return {"pricing": _pricing(m), "context_length": window,
                "top_provider": {"context_length": window, "max_completion_tokens": m.max_output_tokens}}

    if "anthropic-version" in request.headers:
        data = [{"type": "model", "id": m.public_id, "display_name": m.public_id,
                 "created_at": m.created_at.isoformat().replace("+00:00", "Z"), **described(m)} for m in rows]
        return jsonify(data=data, has_more=False, first_id=data[0]["id"] if data else None,
                       last_id=data[-1]["id"] if data else None)
    return jsonify(object="list", data=[{"id": m.public_id, "object": "model",
                                         "created": int(m.created_at.timestamp()), "owned_by": "tollgate",
                                         **described(m)} for m in rows])


@bp.get("/generations/<request_id>")
def generation(request_id: str):
    """A call's receipt as JSON, for the caller's own account only (docs/billing.md, "Receipts")."""
    caller = authenticate(_api_key(), request.remote_addr)
    found = usage.receipt(caller.account_id, request_id)
    if found is None:  # another account's call looks exactly like one that does not exist
        raise ApiError(404, _("No call %(id)s on this account. Use the X-Request-Id header of a response to a key "
                              "of this account; the portal's Usage page lists every call.", id=repr(request_id[:64])),
                       code="generation_not_found")
    return jsonify(usage.as_json(found))


@bp.get("/balance")
def balance():
    caller = authenticate(_api_key(), request.remote_addr)
    account = db.session.scalar(select(Account).where(Account.id == caller.account_id))
    expires_at, last_topup_at = account.credits_expire_at, account.last_topup_at
    return jsonify(balance_micro_usd=account.balance, held_micro_usd=account.held,
                   available_micro_usd=account.balance - account.held, currency="USD",
                   credits_expire_at=expires_at.isoformat() if expires_at else None,
                   # True from the date on, whether or not the expiry job has run yet (calls are refused).
                   credits_expired=expires_at is not None and expires_at <= utcnow(),
                   last_topup_at=last_topup_at.isoformat() if last_topup_at else None)
