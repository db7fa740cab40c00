"""Price files: the catalog's models and prices as JSON (import and export) or CSV (import).

A file is checked whole before anything changes, then applied in the caller's one transaction:
all of it or none of it. Errors name the model and the field, and say what to write instead.
The shape is docs/billing.md's "Price files"; prices are decimal strings of USD, never floats.
The `models set` options are read here too (`price_from_options`), so the CLI stays a wrapper.

A JSON model may carry `routes`: the upstreams that may serve it (portal/routes.py), each with
its upstream model name, priority and weight; export writes them, import makes the model's
routes exactly those (its own upstream's route is kept when the list leaves it out). A model
without `routes` keeps its routes, so files from before routes import as they did. CSV price
lists carry no routes (one row a model has no room for a list); importing one keeps them.
"""
import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Collection, Mapping, Optional, Sequence

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from . import catalog, routes
from .audit import Actor
from .errors import InvalidAmount, InvalidInput
from .extensions import db
from .models import CatalogModel
from .money import parse_usd
from .pricing import (BASE_TIERS, CLASS_ALIASES, NAME_PATTERN, PRICE_FIELDS, TOKEN_CLASSES, Price, price_from_spec,
                      price_to_spec, usd_text)

MODEL_FIELDS = ("upstream_model", "max_output_tokens", *catalog.MODEL_SETTINGS)
FIELDS = ("id", "upstream", *MODEL_FIELDS, *sorted(PRICE_FIELDS), "cost_price", "routes")
ROUTE_FIELDS = ("upstream", "upstream_model", "priority", "weight")
_WHOLE_FIELDS = ("max_output_tokens", "context_window", "tool_calls_ceiling")
_MAX_ERRORS = 20


@dataclass(frozen=True)
class Entry:
    """One model of a price file, checked for shape; `apply` checks it against the catalog."""

    where: str     # for messages: "models[2] (claude-sonnet)", "line 4 (claude-sonnet)"
    id: str
    upstream: str
    price: Price
    fields: dict   # the MODEL_FIELDS the file gives; the others are kept
    # The cost price the file gives (None: clear it), or KEEP when the file says nothing of it.
    cost: object = "keep"
    # The model's routes as the file gives them (None: kept as they are).
    routes: Optional[tuple["Route", ...]] = None


@dataclass(frozen=True)
class Route:
    """One entry of a model's `routes`; None for a field the file leaves out (kept, or the default)."""

    upstream: str
    upstream_model: Optional[str]
    priority: int
    weight: int


KEEP = "keep"  # Entry.cost when the file leaves the cost price as it is


def _refuse(errors: list[str], what: str) -> InvalidInput:
    shown = errors[:_MAX_ERRORS]
    more = f"\n  ... and {len(errors) - _MAX_ERRORS} more" if len(errors) > _MAX_ERRORS else ""
    return InvalidInput(f"{what} has {len(errors)} error{'s' if len(errors) > 1 else ''}; nothing was changed:\n  "
                        + "\n  ".join(shown) + more)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entry(where: str, spec, upstreams: Collection[str]) -> Entry:
    if not isinstance(spec, dict):
        raise InvalidInput(f"{where} must be an object with id, upstream and usd_per_million")
    if isinstance(spec.get("id"), str):
        where = f"{where} ({spec['id']})"
    unknown = [name for name in spec if name not in FIELDS]
    if unknown:
        raise InvalidInput(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    for name, example in (("id", "claude-sonnet"), ("upstream", "anthropic")):
        if not isinstance(spec.get(name), str):
            raise InvalidInput(f"{where}.{name} is required: a name such as \"{example}\"")
    fields = {name: spec[name] for name in MODEL_FIELDS if name in spec}
    try:
        model_id = catalog.clean_name(spec["id"], "a model id", 128)
        _check_fields(fields)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}.{exc.field or 'id'}: {exc}") from None
    try:
        price = price_from_spec({name: spec[name] for name in PRICE_FIELDS if name in spec}, where)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    cost = KEEP
    if spec.get("cost_price", KEEP) is None:
        cost = None
    elif "cost_price" in spec:
        cost_spec = spec["cost_price"]
        if not isinstance(cost_spec, dict) or set(cost_spec) - PRICE_FIELDS:
            raise InvalidInput(f"{where}.cost_price must be null or an object with {', '.join(sorted(PRICE_FIELDS))} "
                               "(what you pay upstream, in the same shape as the price)")
        try:
            cost = price_from_spec(cost_spec, f"{where}.cost_price")
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
    if spec["upstream"] not in upstreams:
        raise InvalidInput(f"{where}.upstream: no upstream named {spec['upstream']!r}; add it first "
                           f"(flask --app wsgi upstreams add {spec['upstream']} --protocol ... --base-url ...)")
    found = None if "routes" not in spec else _routes(where, spec, model_id, upstreams)
    return Entry(where, model_id, spec["upstream"], price, fields, cost, found)


class _ClassWord:
    """A token class in a sentence: "cache read" in English, its label in another language."""

    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        from .i18n import language
        from .usage import CLASS_LABELS
        if language() == "en" or self.name not in CLASS_LABELS:
            return self.name.replace("_", " ")
        return str(CLASS_LABELS[self.name])


def _add_first(name: str) -> str:
    return f"add it first (flask --app wsgi upstreams add {name} --protocol ... --base-url ...)"


def _routes(where: str, spec: dict, model_id: str, upstreams: Collection[str]) -> tuple[Route, ...]:
    """The model's `routes`, each checked: a known upstream (of any protocol but echo: proxy/translate/), listed once,
    priority and weight in range (`upstreams` maps each name to its protocol)."""
    listed = spec["routes"]
    if not isinstance(listed, list):
        raise InvalidInput(f"{where}.routes must be a list of objects with upstream, upstream_model, priority "
                           "and weight")
    protocol = upstreams.get(spec["upstream"]) if isinstance(upstreams, Mapping) else None
    found: list[Route] = []
    for i, route in enumerate(listed):
        at = f"{where}.routes[{i}]"
        if not isinstance(route, dict) or not isinstance(route.get("upstream"), str):
            raise InvalidInput(f"{at} must be an object with upstream (a name such as \"openrouter\"), and "
                               "optionally upstream_model, priority and weight")
        unknown = [name for name in route if name not in ROUTE_FIELDS]
        if unknown:
            raise InvalidInput(f"{at}: unknown field {unknown[0]!r} (fields: {', '.join(ROUTE_FIELDS)})")
        name = route["upstream"]
        if name not in upstreams:
            raise InvalidInput(f"{at}.upstream: no upstream named {name!r}; {_add_first(name)}")
        theirs = upstreams.get(name) if isinstance(upstreams, Mapping) else None
        if protocol is not None and theirs != protocol and "echo" in (theirs, protocol):
            raise InvalidInput(f"{at}.upstream: {name!r} speaks {theirs}, but {model_id!r} is served by "
                               f"{spec['upstream']!r} ({protocol}); the built-in echo upstream shares no model's "
                               "routes")
        if any(r.upstream == name for r in found):
            raise InvalidInput(f"{at}.upstream: {name!r} is listed twice; keep one")
        upstream_model = route.get("upstream_model")
        if upstream_model is not None:
            if not isinstance(upstream_model, str):
                raise InvalidInput(f"{at}.upstream_model must be the model's name at {name!r}, a string; "
                                   f"got {upstream_model!r}")
            upstream_model = catalog.clean_name(upstream_model, f"{at}.upstream_model", 128)
            own = spec.get("upstream_model")
            if name == spec["upstream"] and own is not None and own != upstream_model:
                raise InvalidInput(f"{at}.upstream_model: {upstream_model!r} differs from the model's upstream_model "
                                   f"{own!r} (the route to its own upstream {name!r}); give one name")
        numbers = {}
        for field_name, low, high in (("priority", 0, routes.MAX_PRIORITY), ("weight", 1, routes.MAX_WEIGHT)):
            value = route.get(field_name, 1)
            if not _whole(value) or not low <= value <= high:
                raise InvalidInput(f"{at}.{field_name} must be a whole number from {low} to {high}, got {value!r}")
            numbers[field_name] = value
        found.append(Route(name, upstream_model, **numbers))
    return tuple(found)


def _check_fields(fields: dict) -> None:
    """InvalidInput with `field` for a model field of the wrong type or out of range."""
    if "upstream_model" in fields:
        value = fields["upstream_model"]
        if not isinstance(value, str):
            raise InvalidInput(f"must be the model's name at the upstream, a string; got {value!r}",
                               field="upstream_model")
        try:
            catalog.clean_name(value, "an upstream model name", 128)
        except InvalidInput as exc:
            raise InvalidInput(str(exc), field="upstream_model") from None
    for name in _WHOLE_FIELDS:
        if name in fields and fields[name] is not None and not _whole(fields[name]):
            raise InvalidInput(f"must be a whole number, got {fields[name]!r}", field=name)
    if "max_output_tokens" in fields and not (_whole(fields["max_output_tokens"]) and fields["max_output_tokens"] > 0):
        raise InvalidInput(f"must be a positive whole number, got {fields['max_output_tokens']!r}",
                           field="max_output_tokens")
    catalog.check_settings({name: fields[name] for name in catalog.MODEL_SETTINGS if name in fields})


class _Entries:
    """Entries in file order and every error found, each model checked on its own."""

    def __init__(self, upstreams: Collection[str], what: str):
        self.upstreams, self.what = upstreams, what
        self.entries: list[Entry] = []
        self.errors: list[str] = []
        self.seen: dict[str, str] = {}

    def add(self, where: str, spec) -> None:
        try:
            entry = _entry(where, spec, self.upstreams)
        except InvalidInput as exc:
            self.errors.append(str(exc))
            return
        if entry.id in self.seen:
            self.errors.append(f"{entry.where}.id: the model is listed twice (also {self.seen[entry.id]}); keep one")
        self.seen.setdefault(entry.id, entry.where)
        self.entries.append(entry)

    def result(self) -> list[Entry]:
        if self.errors:
            raise _refuse(self.errors, self.what)
        return self.entries


def _unique_keys(pairs):
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise InvalidInput(f"the key {key!r} appears twice in one object; keep one")
    return dict(pairs)


def parse_json(text: str, upstreams: Collection[str], what: str = "the price file") -> list[Entry]:
    """The entries of a JSON price file ({"models": [{...}, ...]}) whose upstreams are among `upstreams`."""
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(document, dict) or list(document) != ["models"] or not isinstance(document["models"], list):
        raise InvalidInput(f'{what} must be a JSON object {{"models": [...]}} with one object per model')
    found = _Entries(upstreams, what)
    for i, spec in enumerate(document["models"]):
        found.add(f"models[{i}]", spec)
    return found.result()


# -- CSV: one model a row, the JSON fields spread over columns ------------------------------------

def _column(name: str) -> Optional[tuple]:
    """What a CSV column holds: ("field", name), ("class", class), ("fee", unit), ("long_context_above",),
    ("long_context", class) or ("tier", tier, class); None for a name that is none of these."""
    kind, _, rest = name.partition(":")
    if kind == "cost" and rest:  # the cost price: cost:input, cost:fee:web_search, cost:tier:priority:output, ...
        inner = _column(rest)
        return ("cost", inner) if inner is not None and inner[0] not in ("field", "cost") else None
    if not rest:
        if name in ("id", "upstream", *MODEL_FIELDS):
            return ("field", name)
        name = CLASS_ALIASES.get(name, name)
        if name in TOKEN_CLASSES:
            return ("class", name)
        return ("long_context_above",) if name == "long_context_above" else None
    if kind == "fee" and NAME_PATTERN.fullmatch(rest):
        return ("fee", rest)
    rest = CLASS_ALIASES.get(rest, rest)
    if kind == "long_context" and rest in TOKEN_CLASSES:
        return ("long_context", rest)
    tier, _, cls = rest.partition(":")
    cls = CLASS_ALIASES.get(cls, cls)
    if kind == "tier" and NAME_PATTERN.fullmatch(tier) and tier not in BASE_TIERS and cls in TOKEN_CLASSES:
        return ("tier", tier, cls)
    return None


CSV_COLUMNS = ("id, upstream, upstream_model, max_output_tokens, " + ", ".join(catalog.MODEL_SETTINGS)
               + "; a token class (" + ", ".join(TOKEN_CLASSES) + "); fee:UNIT; long_context_above; "
               "long_context:CLASS; tier:NAME:CLASS; and cost: before any price column for the cost price")


def _cell(column: tuple, header: str, cell: str, where: str):
    """The cell's value as the JSON file would hold it; InvalidInput naming the column."""
    if column[0] == "cost":
        return _cell(column[1], header, cell, where)
    if column == ("long_context_above",) or column[0] == "field" and column[1] in _WHOLE_FIELDS:
        if not cell.isdigit():
            raise InvalidInput(f"{where}: column {header} must be a whole number of tokens, got {cell!r}")
        return int(cell)
    if column == ("field", "enabled"):
        if cell.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise InvalidInput(f"{where}: column enabled must be true or false, got {cell!r}")
        return cell.lower() in ("true", "yes", "1")
    if column[0] != "field":
        try:
            parse_usd(cell, what=f"{where}: column {header}")
        except InvalidAmount as exc:
            raise InvalidInput(str(exc)) from None
    return cell


def _row_spec(columns: list, header: list[str], row: list[str], where: str) -> dict:
    spec: dict = {}
    for column, name, cell in zip(columns, header, row):
        cell = cell.strip()
        if not cell:  # unset: an unpriced class, or a model setting kept as it is
            continue
        value = _cell(column, name, cell, where)
        if column[0] == "cost":
            _put(spec.setdefault("cost_price", {}), column[1], value)
        else:
            _put(spec, column, value)
    for where_, prices in (("", spec), ("cost:", spec.get("cost_price"))):
        if prices is None:
            continue
        for cls in ("input", "output"):
            if cls not in prices.get("usd_per_million", {}):
                what = "the cost price needs input and output too" if where_ else \
                    "every model needs input and output prices"
                raise InvalidInput(f"{where}: column {where_}{cls} is empty; {what}")
        if "long_context" in prices and "above_input_tokens" not in prices["long_context"]:
            raise InvalidInput(f"{where}: {where_}long_context:CLASS prices need {where_}long_context_above (the "
                               "input tokens above which they apply)")
    return spec


def _put(spec: dict, column: tuple, value) -> None:
    """Put one cell's value where the JSON file has it."""
    kind = column[0]
    if kind == "field":
        spec[column[1]] = value
    elif kind == "class":
        spec.setdefault("usd_per_million", {})[column[1]] = value
    elif kind == "fee":
        spec.setdefault("usd_per_thousand", {})[column[1]] = value
    elif kind == "long_context_above":
        spec.setdefault("long_context", {})["above_input_tokens"] = value
    elif kind == "long_context":
        spec.setdefault("long_context", {}).setdefault("usd_per_million", {})[column[1]] = value
    else:
        spec.setdefault("service_tiers", {}).setdefault(column[1], {"usd_per_million": {}})[
            "usd_per_million"][column[2]] = value


def parse_csv(text: str, upstreams: Collection[str], what: str = "the price list") -> list[Entry]:
    """The entries of a CSV price list: a header naming the columns (CSV_COLUMNS), one model a row.
    USD per million tokens for token classes, per thousand units for fees; an empty cell is unset."""
    reader = csv.reader(io.StringIO(text))
    header = [name.strip() for name in next(reader, [])]
    columns = [_column(name) for name in header]
    errors = [f"header: unknown column {name!r} (columns: {CSV_COLUMNS})"
              for name, column in zip(header, columns) if column is None]
    errors += [f"header: column {name!r} appears twice; keep one" for i, name in enumerate(header) if name in header[:i]]
    errors += [f"header: column {name!r} is required" for name in ("id", "upstream", "input", "output")
               if name not in header]
    if errors:
        raise _refuse(errors, what)
    found = _Entries(upstreams, what)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        model_id = dict(zip(header, row)).get("id", "").strip()
        where = f"line {reader.line_num}" + (f" ({model_id})" if model_id else "")
        if len(row) > len(header):
            found.errors.append(f"{where}: {len(row)} cells but the header names {len(header)} columns")
            continue
        try:
            spec = _row_spec(columns, header, row, where)
        except InvalidInput as exc:
            found.errors.append(str(exc))
            continue
        found.add(f"line {reader.line_num}", spec)
    return found.result()


# -- importing -----------------------------------------------------------------------------------

def _state(model: Optional[CatalogModel]) -> Optional[tuple]:
    if model is None:
        return None
    return (model.upstream_id, model.upstream_model, model.max_output_tokens,
            *(getattr(model, name) for name in catalog.MODEL_SETTINGS))


def import_text(text: str, kind: str, what: str = "the price file", *, effective_at: Optional[datetime] = None,
                actor: Optional[Actor] = None, reason: Optional[str] = None) -> list[tuple[str, str]]:
    """Check a whole price file (`kind` "json" or "csv"), then create or update every model of it
    inside the caller's one transaction; InvalidInput listing every error changes nothing.

    The prices take effect at `effective_at` (None: now; settings change at once). With an
    `actor`, each model changed is audited with its prices before and after.
    Returns (model id, outcome) per model: "created", "new price", "updated" (settings changed,
    the price did not) or "unchanged".
    """
    catalog.check_effective(effective_at)
    upstreams = {upstream.name: upstream.protocol for upstream in catalog.list_upstreams()}
    entries = parse_json(text, upstreams, what) if kind == "json" else parse_csv(text, upstreams, what)
    outcomes = []
    for entry in entries:
        before = _state(db.session.scalar(select(CatalogModel).where(CatalogModel.public_id == entry.id)))
        model, changed = catalog.set_model(entry.id, entry.upstream, entry.price, effective_at=effective_at,
                                           actor=actor, reason=reason or f"imported from {what}", **entry.fields)
        cost_changed = entry.cost != KEEP and catalog.set_cost_price(
            entry.id, entry.cost, actor=actor, reason=reason or f"imported from {what}")[1]
        routes_changed = entry.routes is not None and _set_routes(
            model, entry.routes, actor=actor, reason=reason or f"imported from {what}")
        outcome = ("created" if before is None else "new price" if changed
                   else "updated" if _state(model) != before or cost_changed or routes_changed else "unchanged")
        outcomes.append((model.public_id, outcome))
    return outcomes


def _set_routes(model: CatalogModel, wanted: Sequence[Route], *, actor: Optional[Actor],
                reason: str) -> bool:
    """Make the model's routes those of the file (each change audited, as `models route` does);
    whether any changed. Its own upstream's route stays, with the file's numbers if it lists it."""
    public_id, own = model.public_id, model.upstream.name
    names = {route.upstream for route in wanted}
    current = {row.upstream.name for row in routes.routes_of(model)}
    changed = False
    for name in sorted(current - names - {own}):
        routes.remove_route(public_id, name, actor=actor, reason=reason)
        changed = True
    for route in wanted:
        if route.upstream in current or route.upstream == own:
            changed |= routes.update_route(public_id, route.upstream, upstream_model=route.upstream_model,
                                           priority=route.priority, weight=route.weight,
                                           actor=actor, reason=reason)[1]
        else:
            routes.add_route(public_id, route.upstream, upstream_model=route.upstream_model, priority=route.priority,
                             weight=route.weight, actor=actor, reason=reason)
            changed = True
    return changed


def import_file(path: Path, **options) -> list[tuple[str, str]]:
    """import_text of a .json price file or a .csv price list (`options` as import_text takes them)."""
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("json", "csv"):
        raise InvalidInput(f"{path.name}: a price file is a .json file or a .csv price list")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not a column name
    except UnicodeDecodeError:
        raise InvalidInput(f"{path.name} is not UTF-8 text; save it as UTF-8") from None
    return import_text(text, kind, path.name, **options)


# -- exporting -----------------------------------------------------------------------------------

def export() -> dict:
    """Every priced model in the JSON file's shape: importing it back changes nothing."""
    models = []
    for model in catalog.all_models():
        row = catalog.current_price(model.id)
        if row is None:  # a file's model needs a price; the CLI never makes one without
            continue
        models.append({"id": model.public_id, "upstream": model.upstream.name, "upstream_model": model.upstream_model,
                       "max_output_tokens": model.max_output_tokens, **price_to_spec(catalog.as_price(row)),
                       **{name: getattr(model, name) for name in catalog.MODEL_SETTINGS}})
        cost = catalog.cost_price_of(model)
        if cost is not None:  # left out when there is none, so importing the file back keeps it so
            models[-1]["cost_price"] = price_to_spec(cost)
        served = _exported_routes(model)
        if served is not None:
            models[-1]["routes"] = served
    return {"models": models}


def _exported_routes(model: CatalogModel) -> Optional[list[dict]]:
    """The model's routes for the file, its own upstream's included (for its priority and weight),
    by priority then name; None when it has only its own at the defaults (nothing to restore)."""
    rows = routes.routes_of(model)
    if len(rows) == 1 and (rows[0].priority, rows[0].weight) == (1, 1):
        return None
    return [{"upstream": row.upstream.name, "upstream_model": row.upstream_model, "priority": row.priority,
             "weight": row.weight} for row in sorted(rows, key=lambda row: (row.priority, row.upstream.name))]


def has_routes(exported: dict) -> bool:
    """Whether an export names routes, which a CSV price list cannot hold."""
    return any("routes" in spec for spec in exported["models"])


def export_json() -> str:
    return json.dumps(export(), indent=2) + "\n"


def export_csv() -> str:
    """The export as a CSV price list: the columns any model needs, one model a row; importing it
    back changes nothing (an empty cell is an unset class or a setting kept as it is). Routes are
    left out (`has_routes` says whether there were any): only the JSON file carries them."""
    models = export()["models"]
    rows, price_columns = [], {}
    for spec in models:
        row = {"id": spec["id"], "upstream": spec["upstream"], "upstream_model": spec["upstream_model"],
               "max_output_tokens": str(spec["max_output_tokens"])}
        for name in catalog.MODEL_SETTINGS:
            value = spec[name]
            row[name] = "" if value is None else ("true" if value else "false") if isinstance(value, bool) else str(value)
        priced = catalog.price_fields(price_from_spec(spec, spec["id"]))
        if "cost_price" in spec:
            priced.update({f"cost:{name}": value for name, value in
                           catalog.price_fields(price_from_spec(spec["cost_price"], spec["id"])).items()})
        for column in priced:
            price_columns.setdefault(column, None)
        row.update(priced)
        rows.append(row)
    classes = [name for name in TOKEN_CLASSES if name in price_columns]
    for name in ("input", "output"):
        if name not in classes:
            classes.insert(0 if name == "input" else 1, name)
    rest = sorted(column for column in price_columns if column not in TOKEN_CLASSES and not column.startswith("cost:"))
    cost_classes = [f"cost:{name}" for name in TOKEN_CLASSES if f"cost:{name}" in price_columns]
    cost_rest = sorted(column for column in price_columns if column.startswith("cost:") and column not in cost_classes)
    header = ["id", "upstream", "upstream_model", "max_output_tokens", *classes, *rest, *catalog.MODEL_SETTINGS,
              *cost_classes, *cost_rest]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(column, "") for column in header])
    return out.getvalue()


# -- the console's price form ---------------------------------------------------------------------

EXTRA_FIELDS = ("usd_per_thousand", "long_context", "service_tiers")


def extras_text(price: Optional[Price]) -> str:
    """The rarer parts of a price (fees, long context, tiers) as the form's JSON text; "" when none."""
    if price is None:
        return ""
    spec = {name: value for name, value in price_to_spec(price).items() if name in EXTRA_FIELDS}
    return json.dumps(spec, indent=1) if spec else ""


def class_texts(price: Optional[Price]) -> dict[str, str]:
    """The form's class fields for `price`: USD per million as typed, "" for an unset class."""
    rates = price.base_rates() if price is not None else {}
    return {name: "" if rates.get(name) is None else usd_text(rates[name]) for name in TOKEN_CLASSES}


def price_from_form(values: Mapping[str, str], prefix: str = "") -> tuple[Optional[Price], dict[str, str]]:
    """The price a console form describes, or the errors per field (`prefix` + class name, or
    `prefix` + "extras"). Classes are USD per million as typed ("2.50"); a blank class is unset
    (docs/billing.md says what it costs then); the extras are JSON in the price file's syntax."""
    errors: dict[str, str] = {}
    rates: dict[str, str] = {}
    for name in TOKEN_CLASSES:
        text = (values.get(prefix + name) or "").strip()
        if not text:
            if name in ("input", "output"):
                errors[prefix + name] = str(_l("Give the input price, in USD per million tokens (such as 2.50).")
                                            if name == "input" else
                                            _l("Give the output price, in USD per million tokens (such as 2.50)."))
            continue
        try:
            parse_usd(text, what=name.replace("_", " "))
        except InvalidAmount as exc:
            words = dict(what=_ClassWord(name), value=repr(text))
            errors[prefix + name] = str(
                _l("%(what)s has more than 6 decimal places: %(value)s; write USD per million tokens as a decimal "
                   "such as 2.50.", **words) if exc.too_precise else
                _l("%(what)s must be a non-negative decimal number of USD, got %(value)s; write USD per million "
                   "tokens as a decimal such as 2.50.", **words))
            continue
        rates[name] = text
    spec: dict = {}
    extras = (values.get(prefix + "extras") or "").strip()
    if extras:
        try:
            spec = json.loads(extras, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            errors[prefix + "extras"] = f"This is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        except InvalidInput as exc:
            errors[prefix + "extras"] = str(exc)
        else:
            if not isinstance(spec, dict) or set(spec) - set(EXTRA_FIELDS):
                errors[prefix + "extras"] = ("Write an object with any of " + ", ".join(EXTRA_FIELDS)
                                             + ', such as {"usd_per_thousand": {"web_search": "10"}}.')
                spec = {}
    if errors:
        return None, errors
    try:
        return price_from_spec({**spec, "usd_per_million": rates}), {}
    except ValueError as exc:
        return None, {prefix + "extras": str(exc)}


# -- the `models set` options --------------------------------------------------------------------

def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _usd(text: str, what: str) -> int:
    try:
        return parse_usd(text, what=what)
    except InvalidAmount as exc:
        raise InvalidInput(f"{exc}; write USD as a decimal such as 2.50") from None


def _class(text: str, what: str) -> str:
    name = text.strip().replace("-", "_")
    if name not in TOKEN_CLASSES:
        raise InvalidInput(f"{what}: {text!r} is not a token class (classes: {', '.join(TOKEN_CLASSES)})")
    return name


def _pairs(values: Sequence[str], option: str, form: str, example: str) -> list[tuple[str, str]]:
    """NAME=USD values, each name once."""
    pairs, seen = [], set()
    for value in values:
        name, sep, usd = value.partition("=")
        if not sep or not name.strip() or not usd.strip():
            raise InvalidInput(f"{option} takes {form}=USD, such as {option} {example}; got {value!r}")
        if name.strip() in seen:
            raise InvalidInput(f"{option} {name.strip()} is given twice; give each once")
        seen.add(name.strip())
        pairs.append((name.strip(), usd.strip()))
    return pairs


def price_from_options(classes: dict[str, Optional[str]], *, fees: Sequence[str] = (),
                       long_context_above: Optional[int] = None, long_context: Sequence[str] = (),
                       tiers: Sequence[str] = ()) -> Price:
    """The price `models set` describes. `classes` maps token classes (and `cache_write`, the
    5-minute write's old name) to USD per million as typed; `fees` are UNIT=USD per thousand units,
    `long_context` CLASS=USD, `tiers` NAME:CLASS=USD. Errors name the option and say what to type."""
    classes = dict(classes)
    if classes.get("cache_write") is not None and classes.get("cache_write_5m") is not None:
        raise InvalidInput("--cache-write is --cache-write-5m's old name; give one of them")
    alias = classes.pop("cache_write", None)
    if alias is not None:
        classes["cache_write_5m"] = alias
    rates = {name: _usd(value, _option(name)) for name, value in classes.items() if value is not None}
    fee_rates = {}
    for unit, usd in _pairs(fees, "--fee", "UNIT", "web_search=10"):
        if not NAME_PATTERN.fullmatch(unit):
            raise InvalidInput(f"--fee {unit}: a unit is lower-case letters, digits and _, such as web_search")
        fee_rates[unit] = _usd(usd, f"--fee {unit}")
    long_rates = {_class(name, "--long-context"): _usd(usd, f"--long-context {name}")
                  for name, usd in _pairs(long_context, "--long-context", "CLASS", "input=6")}
    if long_rates and long_context_above is None:
        raise InvalidInput("--long-context needs --long-context-above N: the input tokens above which "
                           "those prices apply, such as --long-context-above 200000")
    tier_rates: dict[str, dict[str, int]] = {}
    for key, usd in _pairs(tiers, "--tier", "NAME:CLASS", "priority:input=2.50"):
        tier, sep, name = key.partition(":")
        if not sep:
            raise InvalidInput(f"--tier takes NAME:CLASS=USD, such as --tier priority:input=2.50; got {key}={usd}")
        if not NAME_PATTERN.fullmatch(tier) or tier in BASE_TIERS:
            raise InvalidInput(f"--tier {tier}: not a tier that needs its own prices (name it as the provider "
                               f"does, such as priority or flex; {', '.join(sorted(BASE_TIERS))} are the base prices)")
        tier_rates.setdefault(tier, {})[_class(name, f"--tier {tier}")] = _usd(usd, f"--tier {key}")
    try:
        return Price(**rates, fees=fee_rates, long_context_above=long_context_above, long_context=long_rates,
                     service_tiers=tier_rates)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
