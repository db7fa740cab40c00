"""Upstream providers, public models and their price history."""
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import event, select, text, update
from sqlalchemy.orm import Session

from . import audit, dialects, egress, secretbox
from .audit import Actor
from .errors import AlreadyExists, InvalidInput, UnknownModel, UnknownUpstream
from .extensions import db
from .models import CatalogModel, ModelPrice, Protocol, Upstream, utcnow
from .pricing import TOKEN_CLASSES, Price, price_from_spec, price_to_spec, usd_text

# What a model without a configured context window is assumed to take (Claude's and most
# current models'); set `context_window` for larger ones (docs/billing.md, "Holds").
DEFAULT_CONTEXT_WINDOW = 200_000
INPUT_BY_REFERENCE = ("hold", "refuse")
UNPRICED_TIER = ("refuse", "strip")
# What `set_model` can set besides the price; each is kept when not given.
MODEL_SETTINGS = ("context_window", "input_by_reference", "unpriced_tier", "tool_calls_ceiling", "enabled")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/")


# The names clean_name is asked about, for a page in another language (the CLI reads the English).
_NAME_WORDS = {"upstream name": _l("upstream name"), "model id": _l("model id"),
               "upstream model name": _l("upstream model name")}


def clean_name(value: str, what: str, limit: int) -> str:
    value = (value or "").strip()
    if not value or len(value) > limit or not set(value) <= _NAME_CHARS:
        raise InvalidInput(_l("%(what)s must be 1-%(limit)s characters of letters, digits and -_.:/, got %(value)s",
                              what=_NAME_WORDS.get(what, what), limit=limit, value=repr(value)))
    return value


def clean_base_url(url: str) -> str:
    """Validate an upstream base URL: http(s), a host, no credentials, query or fragment."""
    try:
        parts = urlsplit((url or "").strip())
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        raise InvalidInput(f"base URL must be an http:// or https:// URL with a host, got {url!r}",
                           field="base_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"base URL must be an http:// or https:// URL with a host, got {url!r}", field="base_url")
    if parts.username or parts.password:
        raise InvalidInput("base URL must not contain credentials; pass the key with --api-key", field="base_url")
    if parts.query or parts.fragment:
        raise InvalidInput("base URL must not have a query string or fragment", field="base_url")
    return parts.geturl().rstrip("/")


def _dialect(protocol: str, dialect: str) -> str:
    choices = ("echo",) if protocol == Protocol.ECHO.value else dialects.DIALECTS
    if dialect not in choices:
        raise InvalidInput(f"the dialect of an {protocol} upstream must be one of {', '.join(choices)}, "
                           f"got {dialect!r}", field="dialect")
    return dialect


class UpstreamDisabled(UnknownModel):
    """The model's upstream is disabled by the operator: its models are unavailable until enabled again."""


def _checked_url(url: str, allow_private_host: bool) -> str:
    """A clean base URL whose scheme and current addresses the egress rules accept (portal.egress)."""
    url = clean_base_url(url)
    egress.check_base_url(url, production=current_app.config.get("PORTAL_ENV") == "production",
                          allow_private=allow_private_host)
    return url


def _upstream_state(upstream: Upstream) -> dict:
    """What the audit log keeps of an upstream (the credential only as set or not: audit masks api_key)."""
    return {"protocol": upstream.protocol, "base_url": upstream.base_url, "dialect": upstream.dialect,
            "api_key": upstream.api_key, "enabled": upstream.enabled,
            "allow_private_host": upstream.allow_private_host, "chat_only": upstream.chat_only}


def _chat_only(protocol: str, chat_only: Optional[bool]) -> bool:
    if chat_only and protocol != Protocol.OPENAI.value:
        raise InvalidInput("only an openai upstream can be chat-only (the flag says it lacks the Responses API)",
                           field="chat_only")
    return bool(chat_only)


def add_upstream(name: str, protocol: str, base_url: Optional[str] = None,
                 api_key: Optional[str] = None, dialect: Optional[str] = None, *, allow_private_host: bool = False,
                 chat_only: bool = False, actor: Optional[Actor] = None, reason: Optional[str] = None) -> Upstream:
    """Register an upstream provider. OpenAI-style base URLs end in /v1; Anthropic-style are the host root.

    Without a `dialect`, it is guessed from the base URL's host (portal.dialects.guess). The base
    URL must pass the egress rules: a host on a private address needs `allow_private_host`.
    `chat_only`: an OpenAI-compatible upstream without the Responses API (proxy/translate/).
    Audited when an `actor` is given (the console and the CLI always give one).
    """
    name = clean_name(name, "upstream name", 64)
    try:
        proto = Protocol(protocol)
    except ValueError:
        choices = ", ".join(p.value for p in Protocol)
        raise InvalidInput(f"protocol must be one of {choices}, got {protocol!r}", field="protocol") from None
    if proto is Protocol.ECHO:
        if base_url or api_key:
            raise InvalidInput("the echo upstream is built in: it takes no base URL or API key", field="base_url")
        allow_private_host = False
    elif not base_url:
        raise InvalidInput(f"a {proto.value} upstream needs --base-url", field="base_url")
    else:
        base_url = _checked_url(base_url, allow_private_host)
    dialect = _dialect(proto.value, dialect) if dialect is not None else dialects.guess(proto.value, base_url)
    if db.session.scalar(select(Upstream.id).where(Upstream.name == name)) is not None:
        raise AlreadyExists(f"upstream {name!r} already exists")
    upstream = Upstream(name=name, protocol=proto.value, base_url=base_url, api_key=api_key or None,
                        dialect=dialect, enabled=True, allow_private_host=bool(allow_private_host),
                        chat_only=_chat_only(proto.value, chat_only))
    db.session.add(upstream)
    db.session.flush()
    if actor is not None:
        audit.record(actor, "upstream.add", "upstream", upstream.name, reason=reason, after=_upstream_state(upstream))
    changed()
    return upstream


def update_upstream(name: str, base_url: Optional[str] = None, api_key: Optional[str] = None,
                    dialect: Optional[str] = None, *, allow_private_host: Optional[bool] = None,
                    chat_only: Optional[bool] = None, actor: Optional[Actor] = None,
                    reason: Optional[str] = None) -> Upstream:
    """Change an upstream's base URL, credential (e.g. rotating a leaked provider key; '' removes it),
    dialect, whether its host may be private and/or whether it is chat-only. Each None is kept.

    A dialect that was the guess for the old base URL is guessed again for the new one; one the
    operator chose is kept. The base URL (new, or the current one when the private-host allowance is
    taken away) is checked against the egress rules.
    """
    upstream = find_upstream(name)
    if base_url is None and api_key is None and dialect is None and allow_private_host is None and chat_only is None:
        raise InvalidInput("nothing to change: give --base-url, --api-key and/or --dialect "
                           "(or --allow-private-host/--no-allow-private-host, --chat-only/--no-chat-only)")
    echo = upstream.protocol == Protocol.ECHO.value
    if echo and (base_url is not None or api_key is not None or allow_private_host):
        raise InvalidInput("the echo upstream is built in: it has no base URL or API key", field="base_url")
    before = _upstream_state(upstream)
    old_key = upstream.api_key
    allow = upstream.allow_private_host if allow_private_host is None else bool(allow_private_host)
    if dialect is not None:
        upstream.dialect = _dialect(upstream.protocol, dialect)
    if base_url is not None:
        base_url = _checked_url(base_url, allow)
        if dialect is None and upstream.dialect == dialects.guess(upstream.protocol, upstream.base_url):
            upstream.dialect = dialects.guess(upstream.protocol, base_url)
        upstream.base_url = base_url
    elif not echo and allow != upstream.allow_private_host:
        _checked_url(upstream.base_url or "", allow)  # taking the allowance away: the current host must pass
    if not echo:
        upstream.allow_private_host = allow
    if api_key is not None:
        upstream.api_key = api_key or None
    if chat_only is not None:
        upstream.chat_only = _chat_only(upstream.protocol, chat_only)
    after = _upstream_state(upstream)
    credential = None
    if api_key is not None and (api_key or None) != old_key:
        credential = "removed" if not api_key else ("replaced" if old_key else "set")
    if after != before or credential:
        if actor is not None:
            audit.record(actor, "upstream.update", "upstream", upstream.name, reason=reason, before=before,
                         after={**after, **({"credential": credential} if credential else {})})
        changed()
    return upstream


def set_upstream_enabled(name: str, enabled: bool, *, actor: Optional[Actor] = None,
                         reason: Optional[str] = None) -> tuple[Upstream, bool]:
    """Serve an upstream's models or stop (they answer "unavailable"); (upstream, whether anything changed).

    This process's model cache forgets at once when the transaction commits; other processes see
    the change within MODEL_CACHE_SECONDS.
    """
    upstream = find_upstream(name)
    if upstream.enabled == bool(enabled):
        return upstream, False
    upstream.enabled = bool(enabled)
    if actor is not None:
        audit.record(actor, "upstream.enable" if enabled else "upstream.disable", "upstream", upstream.name,
                     reason=reason, before={"enabled": not enabled}, after={"enabled": bool(enabled)})
    changed()
    return upstream, True


def rotate_upstream_keys(*, actor: Optional[Actor] = None) -> tuple[int, list[str]]:
    """Re-encrypt every stored credential under the first UPSTREAM_KEYS_SECRET key (or the key derived from
    SECRET_KEY); (how many were re-encrypted, names of the upstreams whose credential no key opens)."""
    rotated, unreadable = 0, []
    rows = db.session.execute(text("SELECT id, name, api_key FROM upstream WHERE api_key IS NOT NULL ORDER BY name"))
    for row_id, row_name, stored in list(rows):
        try:
            token = (secretbox.rotate(stored) if secretbox.looks_encrypted(stored)
                     else secretbox.encrypt(stored))
        except secretbox.SecretBoxError:
            unreadable.append(row_name)
            continue
        db.session.execute(text("UPDATE upstream SET api_key = :k WHERE id = :id"), {"k": token, "id": row_id})
        rotated += 1
    db.session.expire_all()
    if actor is not None and rotated:
        audit.record(actor, "upstream.rotate_keys", "upstream", "", after={"rotated": rotated,
                                                                           "unreadable": unreadable})
    return rotated, unreadable


def list_upstreams() -> list[Upstream]:
    return list(db.session.scalars(select(Upstream).order_by(Upstream.name)))


def set_enabled(public_id: str, enabled: bool, actor: Optional[Actor] = None,
                reason: Optional[str] = None) -> tuple[CatalogModel, bool]:
    """Serve a model or stop serving it; (model, whether anything changed). Audited when it changes."""
    model = find_model(public_id)
    if model.enabled == enabled:
        return model, False
    model.enabled = enabled
    if actor is not None:
        audit.record(actor, "model.enable" if enabled else "model.disable", "model", model.public_id, reason=reason,
                     before={"enabled": not enabled}, after={"enabled": enabled})
    changed()
    return model, True


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


def current_price(model_id: int, at: Optional[datetime] = None) -> Optional[ModelPrice]:
    """The price in force now (or `at`): the latest row whose effective time has come, never a withdrawn one."""
    return db.session.scalar(
        select(ModelPrice).where(ModelPrice.model_id == model_id, ModelPrice.effective_at <= (at or utcnow()),
                                 ModelPrice.withdrawn_at.is_(None))
        .order_by(ModelPrice.effective_at.desc(), ModelPrice.id.desc()).limit(1)
    )


def upcoming_prices(model_id: int, after: Optional[datetime] = None) -> list[ModelPrice]:
    """Price changes not yet in force (and not withdrawn), soonest first. Of two planned for the same
    moment only the later recorded one will apply (as current_price picks), so only it is listed."""
    rows = db.session.scalars(
        select(ModelPrice).where(ModelPrice.model_id == model_id, ModelPrice.effective_at > (after or utcnow()),
                                 ModelPrice.withdrawn_at.is_(None))
        .order_by(ModelPrice.effective_at, ModelPrice.id)
    )
    return list({row.effective_at: row for row in rows}.values())


def price_history(model_id: int):
    """A query for every price row of a model, upcoming and withdrawn ones too, latest first."""
    return (select(ModelPrice).where(ModelPrice.model_id == model_id)
            .order_by(ModelPrice.effective_at.desc(), ModelPrice.id.desc()))


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


def price_fields(price: Optional[Price]) -> dict[str, str]:
    """A price flattened for the audit log, one entry per rate, named as the CSV price list's
    columns: {"input": "2.5", "fee:web_search": "10", "tier:priority:input": "5", ...}."""
    if price is None:
        return {}
    fields = {name: usd_text(rate) for name, rate in price.base_rates().items() if rate is not None}
    fields.update({f"fee:{unit}": usd_text(rate) for unit, rate in sorted(price.fees.items())})
    if price.long_context_above is not None:
        fields["long_context_above"] = str(price.long_context_above)
        fields.update({f"long_context:{name}": usd_text(rate) for name, rate in price.long_context.items()})
    for tier, rates in sorted(price.service_tiers.items()):
        fields.update({f"tier:{tier}:{name}": usd_text(rate) for name, rate in rates.items()})
    return fields


def _snapshot(model: CatalogModel, price: Optional[Price]) -> dict:
    """A model's settings and a price (flattened, "price " before each rate) for the audit log."""
    return {"upstream": model.upstream.name, "upstream_model": model.upstream_model,
            "max_output_tokens": model.max_output_tokens, **{name: getattr(model, name) for name in MODEL_SETTINGS},
            **{f"price {name}": value for name, value in price_fields(price).items()}}


def check_effective(effective_at: Optional[datetime]) -> Optional[datetime]:
    """A price change's moment: None (now) or an aware moment still to come; InvalidInput otherwise."""
    if effective_at is None:
        return None
    if effective_at.tzinfo is None:
        raise InvalidInput("give the moment a price takes effect with its timezone (UTC)", field="effective_at")
    if effective_at <= utcnow():
        raise InvalidInput(f"{effective_at:%Y-%m-%d %H:%M} UTC has passed: a price change takes effect now or at a "
                           "moment still to come", field="effective_at")
    return effective_at


def _price_at(model_id: int, at: Optional[datetime]) -> Optional[Price]:
    row = current_price(model_id, at)
    return None if row is None else as_price(row)


def _record_price(model: CatalogModel, price: Price, effective_at: Optional[datetime]) -> Optional[ModelPrice]:
    """Add a price row unless the price in force at `effective_at` (None: now) is `price` already."""
    if _price_at(model.id, effective_at) == price:
        return None
    row = price_row(model.id, price)
    if effective_at is not None:
        row.effective_at = effective_at
    db.session.add(row)
    db.session.flush()
    return row


def set_model(public_id: str, upstream_name: str, price: Price, *, upstream_model: Optional[str] = None,
              max_output_tokens: Optional[int] = None, effective_at: Optional[datetime] = None,
              actor: Optional[Actor] = None, reason: Optional[str] = None, **settings) -> tuple[CatalogModel, bool]:
    """Create or update a model; a changed price becomes a new history row. Returns (model, price_changed).

    `price` replaces the price in force at `effective_at` (None: now; otherwise a moment to come,
    see check_effective) whole; the settings change at once. `settings` are any of MODEL_SETTINGS:
    those given are set (a None context_window or tool_calls_ceiling means the default), the others
    kept; a new model starts with the defaults. With an `actor`, a change is audited, before and after.
    """
    public_id = clean_name(public_id, "model id", 128)
    upstream = find_upstream(upstream_name)
    if max_output_tokens is not None and max_output_tokens <= 0:
        raise InvalidInput(f"max output tokens must be positive, got {max_output_tokens}", field="max_output_tokens")
    check_settings(settings)
    effective_at = check_effective(effective_at)
    model = db.session.scalar(select(CatalogModel).where(CatalogModel.public_id == public_id))
    created = model is None
    before = None
    if created:
        model = CatalogModel(public_id=public_id, upstream_model=public_id)
        db.session.add(model)
    else:
        before = _snapshot(model, _price_at(model.id, effective_at))
    old_upstream = None if created else model.upstream
    model.upstream = upstream
    if upstream_model is not None:
        model.upstream_model = clean_name(upstream_model, "upstream model name", 128)
    if max_output_tokens is not None:
        model.max_output_tokens = max_output_tokens
    for name, value in settings.items():
        setattr(model, name, value)
    db.session.flush()
    from .routes import sync_primary  # routes.py builds on this module
    sync_primary(model, old_upstream)
    price_changed = _record_price(model, price, effective_at) is not None
    after = _snapshot(model, price)
    if actor is not None and before != after:
        audit.record(actor, "model.create" if created else "model.price" if price_changed else "model.update",
                     "model", public_id, reason=reason, before=before,
                     after={**after, "effective_at": effective_at or "now"} if price_changed else after)
    changed()
    return model, price_changed


def update_model(public_id: str, *, actor: Optional[Actor], reason: Optional[str] = None,
                 upstream_name: Optional[str] = None, upstream_model: Optional[str] = None,
                 max_output_tokens: Optional[int] = None, **settings) -> tuple[CatalogModel, bool]:
    """Change a model's upstream and settings, keeping its prices; (model, whether anything changed)."""
    model = find_model(public_id)
    row = current_price(model.id)
    if row is None:  # a model whose first price is still to come: its settings are set with that price
        raise InvalidInput(f"the model {public_id!r} has no price in force yet; set its settings with its price")
    before = _snapshot(model, None)
    model, _ = set_model(public_id, upstream_name or model.upstream.name, as_price(row), upstream_model=upstream_model,
                         max_output_tokens=max_output_tokens, **settings)
    after = _snapshot(model, None)
    if before == after:
        return model, False
    if actor is not None:
        audit.record(actor, "model.update", "model", model.public_id, reason=reason, before=before, after=after)
    return model, True


def change_price(public_id: str, price: Price, *, effective_at: Optional[datetime] = None,
                 actor: Optional[Actor], reason: Optional[str] = None) -> tuple[ModelPrice, bool]:
    """Record a new price for a model from `effective_at` (None: now); (row, whether it is new).

    Nothing is recorded when the price in force at that moment is the same already.
    """
    model = find_model(public_id)
    effective_at = check_effective(effective_at)
    before = _price_at(model.id, effective_at)
    row = _record_price(model, price, effective_at)
    if row is None:
        return current_price(model.id, effective_at), False
    if actor is not None:
        audit.record(actor, "model.price", "model", model.public_id, reason=reason,
                     before={f"price {k}": v for k, v in price_fields(before).items()},
                     after={**{f"price {k}": v for k, v in price_fields(price).items()},
                            "effective_at": effective_at or "now", "price_id": row.id})
    changed()
    return row, True


def withdraw_price(public_id: str, price_id: int, *, actor: Optional[Actor], reason: Optional[str] = None) -> ModelPrice:
    """Withdraw a price change that has not taken effect yet. Its row stays, marked withdrawn, and
    the audit log says who withdrew it and why; one already in force cannot be (set a new price)."""
    model = find_model(public_id)
    now = utcnow()
    # One conditional update: a change whose moment comes while we look is not withdrawn.
    done = db.session.execute(
        update(ModelPrice).where(ModelPrice.id == price_id, ModelPrice.model_id == model.id,
                                 ModelPrice.effective_at > now, ModelPrice.withdrawn_at.is_(None))
        .values(withdrawn_at=now).execution_options(synchronize_session=False)
    ).rowcount
    row = db.session.get(ModelPrice, price_id)
    if row is not None:
        db.session.refresh(row)
    if not done:
        if row is None or row.model_id != model.id:
            raise InvalidInput(f"the model {public_id!r} has no price change {price_id}", field="price_id")
        if row.withdrawn_at is not None:
            raise InvalidInput(f"the price change {price_id} of {public_id} was withdrawn already "
                               f"({row.withdrawn_at:%Y-%m-%d %H:%M} UTC)", field="price_id")
        raise InvalidInput(f"the price change {price_id} of {public_id} took effect on "
                           f"{row.effective_at:%Y-%m-%d %H:%M} UTC; record a new price instead", field="price_id")
    if actor is not None:
        audit.record(actor, "model.price_withdraw", "model", model.public_id, reason=reason,
                     before={"price_id": row.id, "effective_at": row.effective_at,
                             **{f"price {k}": v for k, v in price_fields(as_price(row)).items()}},
                     after={"price_id": row.id, "withdrawn_at": row.withdrawn_at})
    changed()
    return row


def cost_price_of(model: CatalogModel) -> Optional[Price]:
    """The model's cost price (what the operator pays upstream), or None."""
    return None if model.cost_price is None else price_from_spec(model.cost_price, "cost price")


def set_cost_price(public_id: str, price: Optional[Price], *, actor: Optional[Actor],
                   reason: Optional[str] = None) -> tuple[CatalogModel, bool]:
    """Set (or, with None, clear) what the operator pays upstream for a model; it applies to calls
    that start from now on. (model, whether it changed)."""
    model = find_model(public_id)
    before = cost_price_of(model)
    if before == price:
        return model, False
    model.cost_price = None if price is None else price_to_spec(price)
    if actor is not None:
        audit.record(actor, "model.cost_price", "model", model.public_id, reason=reason,
                     before={f"cost {k}": v for k, v in price_fields(before).items()},
                     after={f"cost {k}": v for k, v in price_fields(price).items()})
    changed()
    return model, True


def differences(old: Optional[Price], new: Price) -> list[tuple[str, Optional[int], Optional[int]]]:
    """What a price change changes, for people: (what, old rate, new rate) in micro-dollars per
    million tokens ("fee ..." per thousand units), for every rate that differs. A class only
    when one of the prices sets it (one left unset follows its fallback, which is listed), compared
    at the rate that would apply."""
    changes = []
    old_rates = old.per_class() if old is not None else {}
    new_rates = new.per_class()
    for name in TOKEN_CLASSES:
        if getattr(new, name) is None and (old is None or getattr(old, name) is None):
            continue
        if old_rates.get(name) != new_rates[name]:
            changes.append((name.replace("_", " "), old_rates.get(name), new_rates[name]))
    old_fees = old.fees if old is not None else {}
    for unit in sorted(set(old_fees) | set(new.fees)):
        if old_fees.get(unit) != new.fees.get(unit):
            changes.append((f"fee {unit.replace('_', ' ')}", old_fees.get(unit), new.fees.get(unit)))
    for label, old_set, new_set in (
            ("long context", old.long_context if old else {}, new.long_context),
            *((f"{tier} tier", (old.service_tiers if old else {}).get(tier, {}), new.service_tiers.get(tier, {}))
              for tier in sorted(set(old.service_tiers if old else {}) | set(new.service_tiers)))):
        for name in TOKEN_CLASSES:
            if old_set.get(name) != new_set.get(name):
                changes.append((f"{label} {name.replace('_', ' ')}", old_set.get(name), new_set.get(name)))
    return changes


# -- telling this process's caches that the catalog changed ----------------------------------------

_WATCH_CALLBACKS: list = []  # weakref.WeakMethod of each callback
_CHANGED = "tollgate.catalog_changed"


def on_change(callback: Callable[[], None]) -> None:
    """Call `callback` (a bound method; held weakly) after each commit that changed a model or price."""
    _WATCH_CALLBACKS.append(weakref.WeakMethod(callback))


def changed() -> None:
    """Mark the session's transaction as changing the catalog: the callbacks run once it commits."""
    db.session.info[_CHANGED] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session) -> None:
    if session.info.pop(_CHANGED, False):
        for ref in list(_WATCH_CALLBACKS):
            callback = ref()
            if callback is not None:
                callback()
            elif ref in _WATCH_CALLBACKS:  # its cache is gone (an app that was closed)
                try:
                    _WATCH_CALLBACKS.remove(ref)
                except ValueError:  # another thread removed it first
                    pass


@event.listens_for(Session, "after_rollback")
def _after_rollback(session) -> None:
    session.info.pop(_CHANGED, None)  # its changes never happened


@dataclass(frozen=True)
class UpstreamInfo:
    id: int
    name: str
    protocol: str
    base_url: Optional[str]
    api_key: Optional[str] = field(repr=False)  # never in logs or tracebacks
    dialect: str = "generic-openai"
    allow_private_host: bool = False  # portal.egress: may its host resolve to a private address
    chat_only: bool = False  # an openai upstream without the Responses API (by its flag or its dialect)


def _info(up: Upstream) -> UpstreamInfo:
    return UpstreamInfo(up.id, up.name, up.protocol, up.base_url, up.api_key, up.dialect, up.allow_private_host,
                        up.protocol == Protocol.OPENAI.value and (bool(up.chat_only) or up.dialect in dialects.CHAT_ONLY))


def upstream_info(upstream_id: int) -> Optional[UpstreamInfo]:
    """The upstream as the database has it now (a rotated credential, after a 401), or None."""
    up = db.session.get(Upstream, upstream_id, populate_existing=True)
    return None if up is None else _info(up)


@dataclass(frozen=True)
class ServingRoute:
    """One upstream that may serve a model (portal/routes.py): its model name there, priority, weight."""

    upstream: UpstreamInfo
    upstream_model: str
    priority: int = 1
    weight: int = 1


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
    # When the next price change takes effect (None: none planned): a cache must not serve this past it.
    price_until: Optional[datetime] = None
    cost_price: Optional[Price] = None    # what the operator pays upstream (None: not known)
    context_window: int = DEFAULT_CONTEXT_WINDOW
    input_by_reference: str = "hold"     # or "refuse"
    unpriced_tier: str = "refuse"        # or "strip"
    tool_calls_ceiling: Optional[int] = None  # None: the TOOL_CALLS_CEILING setting
    # Every route whose upstream is enabled, best priority first; `upstream` and `upstream_model`
    # above are the first's (proxy/routing.py picks among them per call).
    routes: tuple[ServingRoute, ...] = ()


def serving_model(public_id: str) -> ServingModel:
    """The enabled model `public_id` with its upstream and current price, or UnknownModel."""
    model = db.session.scalar(select(CatalogModel).where(CatalogModel.public_id == public_id, CatalogModel.enabled.is_(True)))
    if model is None:
        raise UnknownModel(_l("The model '%(model)s' does not exist or is not available; GET /v1/models lists "
                              "the models you can use.", model=public_id))
    now = utcnow()
    price = current_price(model.id, now)
    if price is None:
        raise UnknownModel(_l("The model '%(model)s' has no price yet and cannot be used.", model=public_id))
    until = db.session.scalar(select(ModelPrice.effective_at).where(
        ModelPrice.model_id == model.id, ModelPrice.effective_at > now, ModelPrice.withdrawn_at.is_(None))
        .order_by(ModelPrice.effective_at).limit(1))
    from .routes import routes_of  # routes.py builds on this module

    served = tuple(ServingRoute(_info(r.upstream), r.upstream_model, r.priority, r.weight)
                   for r in routes_of(model) if r.upstream.enabled)
    if not served:
        raise UpstreamDisabled(_l("The model '%(model)s' is unavailable for now: the operator has paused its "
                                  "provider. Try again later, or use another model (GET /v1/models lists them).",
                                  model=public_id))
    return ServingModel(
        id=model.id, public_id=model.public_id, upstream_model=served[0].upstream_model,
        max_output_tokens=model.max_output_tokens, routes=served, upstream=served[0].upstream,
        price_id=price.id, price=as_price(price), price_since=price.effective_at, price_until=until,
        cost_price=cost_price_of(model),
        context_window=model.context_window or DEFAULT_CONTEXT_WINDOW, input_by_reference=model.input_by_reference,
        unpriced_tier=model.unpriced_tier, tool_calls_ceiling=model.tool_calls_ceiling,
    )


def enabled_models() -> list[CatalogModel]:
    return list(db.session.scalars(select(CatalogModel).where(CatalogModel.enabled.is_(True)).order_by(CatalogModel.public_id)))
