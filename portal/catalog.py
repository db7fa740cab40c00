"""Upstream providers, public models and their price history."""
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional
from urllib.parse import urlsplit

from sqlalchemy import select

from . import dialects
from .errors import AlreadyExists, InvalidInput, UnknownModel, UnknownUpstream
from .extensions import db
from .models import CatalogModel, ModelPrice, Protocol, Upstream, utcnow
from .pricing import Price

# What a model without a configured context window is assumed to take (Claude's and most
# current models'); set `context_window` for larger ones (docs/billing.md, "Holds").
DEFAULT_CONTEXT_WINDOW = 200_000
INPUT_BY_REFERENCE = ("hold", "refuse")
UNPRICED_TIER = ("refuse", "strip")
# What `set_model` can set besides the price; each is kept when not given.
MODEL_SETTINGS = ("context_window", "input_by_reference", "unpriced_tier", "tool_calls_ceiling", "enabled")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/")


def clean_name(value: str, what: str, limit: int) -> str:
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


def _dialect(protocol: str, dialect: str) -> str:
    choices = ("echo",) if protocol == Protocol.ECHO.value else dialects.DIALECTS
    if dialect not in choices:
        raise InvalidInput(f"the dialect of an {protocol} upstream must be one of {', '.join(choices)}, "
                           f"got {dialect!r}", field="dialect")
    return dialect


def add_upstream(name: str, protocol: str, base_url: Optional[str] = None,
                 api_key: Optional[str] = None, dialect: Optional[str] = None) -> Upstream:
    """Register an upstream provider. OpenAI-style base URLs end in /v1; Anthropic-style are the host root.

    Without a `dialect`, it is guessed from the base URL's host (portal.dialects.guess).
    """
    name = clean_name(name, "upstream name", 64)
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
    dialect = _dialect(proto.value, dialect) if dialect is not None else dialects.guess(proto.value, base_url)
    if db.session.scalar(select(Upstream.id).where(Upstream.name == name)) is not None:
        raise AlreadyExists(f"upstream {name!r} already exists")
    upstream = Upstream(name=name, protocol=proto.value, base_url=base_url, api_key=api_key or None,
                        dialect=dialect)
    db.session.add(upstream)
    db.session.flush()
    return upstream


def update_upstream(name: str, base_url: Optional[str] = None, api_key: Optional[str] = None,
                    dialect: Optional[str] = None) -> Upstream:
    """Change an upstream's base URL, credential (e.g. rotating a leaked provider key) and/or dialect.

    A dialect that was the guess for the old base URL is guessed again for the new one; one the
    operator chose is kept.
    """
    upstream = find_upstream(name)
    if base_url is None and api_key is None and dialect is None:
        raise InvalidInput("nothing to change: give --base-url, --api-key and/or --dialect")
    if upstream.protocol == Protocol.ECHO.value and (base_url is not None or api_key is not None):
        raise InvalidInput("the echo upstream is built in: it has no base URL or API key")
    if dialect is not None:
        upstream.dialect = _dialect(upstream.protocol, dialect)
    if base_url is not None:
        base_url = clean_base_url(base_url)
        if dialect is None and upstream.dialect == dialects.guess(upstream.protocol, upstream.base_url):
            upstream.dialect = dialects.guess(upstream.protocol, base_url)
        upstream.base_url = base_url
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
    return Price(input=row.input, output=row.output, cache_read=row.cache_read, cache_write_5m=row.cache_write_5m,
                 cache_write_1h=row.cache_write_1h, input_audio=row.input_audio, output_audio=row.output_audio,
                 reasoning=row.reasoning, fees=row.fees or {}, long_context_above=row.long_context_above,
                 long_context=row.long_context or {}, service_tiers=row.service_tiers or {})


def price_row(model_id: int, price: Price) -> ModelPrice:
    """A new price-history row holding `price`."""
    return ModelPrice(model_id=model_id, **price.base_rates(), fees=dict(price.fees) or None,
                      long_context_above=price.long_context_above, long_context=dict(price.long_context) or None,
                      service_tiers={t: dict(r) for t, r in price.service_tiers.items()} or None)


def check_settings(settings: dict) -> None:
    """InvalidInput (with `field`) for a model setting out of range; see MODEL_SETTINGS."""
    unknown = sorted(set(settings) - set(MODEL_SETTINGS))
    if unknown:
        raise TypeError(f"unknown model settings: {', '.join(unknown)}")
    for name, value in settings.items():
        whole = isinstance(value, int) and not isinstance(value, bool)
        if name == "context_window" and value is not None and not (whole and value > 0):
            raise InvalidInput(f"the context window must be a positive whole number of tokens, got {value!r}",
                               field=name)
        if name == "tool_calls_ceiling" and value is not None and not (whole and value >= 0):
            raise InvalidInput(f"the tool calls ceiling must be a whole number, 0 or more, got {value!r}", field=name)
        if name == "input_by_reference" and value not in INPUT_BY_REFERENCE:
            raise InvalidInput(f"input by reference must be {' or '.join(INPUT_BY_REFERENCE)}, got {value!r}",
                               field=name)
        if name == "unpriced_tier" and value not in UNPRICED_TIER:
            raise InvalidInput(f"an unpriced tier must be {' or '.join(UNPRICED_TIER)}, got {value!r}", field=name)
        if name == "enabled" and not isinstance(value, bool):
            raise InvalidInput(f"enabled must be true or false, got {value!r}", field=name)


def set_model(public_id: str, upstream_name: str, price: Price, *, upstream_model: Optional[str] = None,
              max_output_tokens: Optional[int] = None, **settings) -> tuple[CatalogModel, bool]:
    """Create or update a model; a changed price becomes a new history row. Returns (model, price_changed).

    `price` replaces the current price whole. `settings` are any of MODEL_SETTINGS: those given are
    set (a None context_window or tool_calls_ceiling means the default), the others kept; a new
    model starts with the defaults.
    """
    public_id = clean_name(public_id, "model id", 128)
    upstream = find_upstream(upstream_name)
    if max_output_tokens is not None and max_output_tokens <= 0:
        raise InvalidInput(f"max output tokens must be positive, got {max_output_tokens}", field="max_output_tokens")
    check_settings(settings)
    model = db.session.scalar(select(CatalogModel).where(CatalogModel.public_id == public_id))
    if model is None:
        model = CatalogModel(public_id=public_id, upstream_model=public_id)
        db.session.add(model)
    model.upstream = upstream
    if upstream_model is not None:
        model.upstream_model = clean_name(upstream_model, "upstream model name", 128)
    if max_output_tokens is not None:
        model.max_output_tokens = max_output_tokens
    for name, value in settings.items():
        setattr(model, name, value)
    db.session.flush()
    current = current_price(model.id)
    changed = current is None or as_price(current) != price
    if changed:
        db.session.add(price_row(model.id, price))
        db.session.flush()
    return model, changed


@dataclass(frozen=True)
class UpstreamInfo:
    id: int
    name: str
    protocol: str
    base_url: Optional[str]
    api_key: Optional[str] = field(repr=False)  # never in logs or tracebacks
    dialect: str = "generic-openai"


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
    context_window: int = DEFAULT_CONTEXT_WINDOW
    input_by_reference: str = "hold"     # or "refuse"
    unpriced_tier: str = "refuse"        # or "strip"
    tool_calls_ceiling: Optional[int] = None  # None: the TOOL_CALLS_CEILING setting


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
        upstream=UpstreamInfo(up.id, up.name, up.protocol, up.base_url, up.api_key, up.dialect),
        price_id=price.id, price=as_price(price), price_since=price.effective_at,
        context_window=model.context_window or DEFAULT_CONTEXT_WINDOW, input_by_reference=model.input_by_reference,
        unpriced_tier=model.unpriced_tier, tool_calls_ceiling=model.tool_calls_ceiling,
    )


def enabled_models() -> list[CatalogModel]:
    return list(db.session.scalars(select(CatalogModel).where(CatalogModel.enabled.is_(True)).order_by(CatalogModel.public_id)))
