"""Upstream providers, public models and their price history."""
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional
from urllib.parse import urlsplit

from sqlalchemy import select

from .errors import AlreadyExists, InvalidInput, UnknownModel, UnknownUpstream
from .extensions import db
from .models import CatalogModel, ModelPrice, Protocol, Upstream, utcnow
from .pricing import Price

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/")


def _name(value: str, what: str, limit: int) -> str:
    value = (value or "").strip()
    if not value or len(value) > limit or not set(value) <= _NAME_CHARS:
        raise InvalidInput(f"{what} must be 1-{limit} characters of letters, digits and -_.:/, got {value!r}")
    return value


def clean_base_url(url: str) -> str:
    """Validate an upstream base URL: http(s), a host, no credentials, query or fragment."""
    parts = urlsplit((url or "").strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"base URL must be an http:// or https:// URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise InvalidInput("base URL must not contain credentials; pass the key with --api-key")
    if parts.query or parts.fragment:
        raise InvalidInput("base URL must not have a query string or fragment")
    return parts.geturl().rstrip("/")


def add_upstream(name: str, protocol: str, base_url: Optional[str] = None,
                 api_key: Optional[str] = None) -> Upstream:
    """Register an upstream provider. OpenAI-style base URLs end in /v1; Anthropic-style are the host root."""
    name = _name(name, "upstream name", 64)
    try:
        proto = Protocol(protocol)
    except ValueError:
        choices = ", ".join(p.value for p in Protocol)
        raise InvalidInput(f"protocol must be one of {choices}, got {protocol!r}") from None
    if proto is Protocol.ECHO:
        if base_url or api_key:
            raise InvalidInput("the echo upstream is built in: it takes no base URL or API key")
    elif not base_url:
        raise InvalidInput(f"a {proto.value} upstream needs --base-url")
    else:
        base_url = clean_base_url(base_url)
    if db.session.scalar(select(Upstream.id).where(Upstream.name == name)) is not None:
        raise AlreadyExists(f"upstream {name!r} already exists")
    upstream = Upstream(name=name, protocol=proto.value, base_url=base_url, api_key=api_key or None)
    db.session.add(upstream)
    db.session.flush()
    return upstream


def update_upstream(name: str, base_url: Optional[str] = None, api_key: Optional[str] = None) -> Upstream:
    """Change an upstream's base URL and/or credential (e.g. rotating a leaked provider key)."""
    upstream = find_upstream(name)
    if upstream.protocol == Protocol.ECHO.value:
        raise InvalidInput("the echo upstream is built in: it has no base URL or API key")
    if base_url is None and api_key is None:
        raise InvalidInput("nothing to change: give --base-url and/or --api-key")
    if base_url is not None:
        upstream.base_url = clean_base_url(base_url)
    if api_key is not None:
        upstream.api_key = api_key or None
    return upstream


def list_upstreams() -> list[Upstream]:
    return list(db.session.scalars(select(Upstream).order_by(Upstream.name)))


def set_enabled(public_id: str, enabled: bool) -> CatalogModel:
    model = find_model(public_id)
    model.enabled = enabled
    return model


def all_models() -> list[CatalogModel]:
    return list(db.session.scalars(select(CatalogModel).order_by(CatalogModel.public_id)))


def find_upstream(name: str) -> Upstream:
    upstream = db.session.scalar(select(Upstream).where(Upstream.name == name))
    if upstream is None:
        raise UnknownUpstream(f"no upstream named {name!r}")
    return upstream


def find_model(public_id: str) -> CatalogModel:
    model = db.session.scalar(select(CatalogModel).where(CatalogModel.public_id == public_id))
    if model is None:
        raise UnknownModel(f"no model named {public_id!r}")
    return model


def current_price(model_id: int) -> Optional[ModelPrice]:
    """The price in force now: the latest row whose effective time has come."""
    return db.session.scalar(
        select(ModelPrice).where(ModelPrice.model_id == model_id, ModelPrice.effective_at <= utcnow())
        .order_by(ModelPrice.effective_at.desc(), ModelPrice.id.desc()).limit(1)
    )


def as_price(row: ModelPrice) -> Price:
    return Price(input=row.input, output=row.output, cache_read=row.cache_read, cache_write=row.cache_write)


def set_model(public_id: str, upstream_name: str, price: Price, *, upstream_model: Optional[str] = None,
              max_output_tokens: Optional[int] = None) -> tuple[CatalogModel, bool]:
    """Create or update a model; a changed price becomes a new history row. Returns (model, price_changed)."""
    public_id = _name(public_id, "model id", 128)
    upstream = find_upstream(upstream_name)
    if max_output_tokens is not None and max_output_tokens <= 0:
        raise InvalidInput(f"max output tokens must be positive, got {max_output_tokens}")
    model = db.session.scalar(select(CatalogModel).where(CatalogModel.public_id == public_id))
    if model is None:
        model = CatalogModel(public_id=public_id, upstream_model=public_id)
        db.session.add(model)
    model.upstream = upstream
    if upstream_model is not None:
        model.upstream_model = _name(upstream_model, "upstream model name", 128)
    if max_output_tokens is not None:
        model.max_output_tokens = max_output_tokens
    db.session.flush()
    current = current_price(model.id)
    changed = current is None or as_price(current) != price
    if changed:
        db.session.add(ModelPrice(model_id=model.id, input=price.input, output=price.output,
                                  cache_read=price.cache_read, cache_write=price.cache_write))
        db.session.flush()
    return model, changed


@dataclass(frozen=True)
class UpstreamInfo:
    id: int
    name: str
    protocol: str
    base_url: Optional[str]
    api_key: Optional[str] = field(repr=False)  # never in logs or tracebacks


@dataclass(frozen=True)
class ServingModel:
    """A model as the proxy needs it: where to send it and what it costs now."""

    id: int
    public_id: str
    upstream_model: str
    max_output_tokens: int
    upstream: UpstreamInfo
    price_id: int
    price: Price
    price_since: datetime


def serving_model(public_id: str) -> ServingModel:
    """The enabled model `public_id` with its upstream and current price, or UnknownModel."""
    model = db.session.scalar(select(CatalogModel).where(CatalogModel.public_id == public_id, CatalogModel.enabled.is_(True)))
    if model is None:
        raise UnknownModel(f"The model '{public_id}' does not exist or is not available; "
                           "GET /v1/models lists the models you can use.")
    price = current_price(model.id)
    if price is None:
        raise UnknownModel(f"The model '{public_id}' has no price yet and cannot be used.")
    up = model.upstream
    return ServingModel(
        id=model.id, public_id=model.public_id, upstream_model=model.upstream_model,
        max_output_tokens=model.max_output_tokens,
        upstream=UpstreamInfo(up.id, up.name, up.protocol, up.base_url, up.api_key),
        price_id=price.id, price=as_price(price), price_since=price.effective_at,
    )


def enabled_models() -> list[CatalogModel]:
    return list(db.session.scalars(select(CatalogModel).where(CatalogModel.enabled.is_(True)).order_by(CatalogModel.public_id)))
