"""Public models and their prices: models set|list|prices|cancel-change|cost|enable|disable|import|export|flagged."""
from datetime import timedelta
from pathlib import Path

import click

from .. import catalog, pricefile, routes
from .. import usage as usage_records
from ..audit import Actor
from ..extensions import db
from ..models import utcnow
from ..money import format_usd
from ..pricing import Price
from . import Moment, _day, domain_command, models_cli, shown

_EFFECTIVE = dict(type=Moment(), metavar="ISO8601",
                  help="When the price takes effect, a moment to come with its timezone, such as "
                       "2026-12-01T00:00:00Z (default: now). Settings change at once.")
_REASON = dict(help="Why, for the audit log.")


def _rates_text(rates: dict, scale: str = "") -> str:
    return " ".join(f"{name}={format_usd(value)}{scale}" for name, value in rates.items())


def _price_lines(price: Price) -> list[str]:
    """Every price the operator set, USD per million tokens (fees: per thousand units), and what
    the classes left unset cost instead."""
    base = price.base_rates()
    lines = ["per million: " + _rates_text({n: v for n, v in base.items() if v is not None})]
    unset: dict[str, list] = {}
    for name, value in base.items():
        if value is None:
            how = {"reasoning": "as output"}.get(name, "as input" if name.startswith("cache_") else
                                                 "unpriced (charged the highest input-side price)")
            unset.setdefault(how, []).append(name)
    if unset:
        lines.append("unset: " + "; ".join(f"{' '.join(names)} {how}" for how, names in unset.items()))
    if price.fees:
        lines.append("per thousand: " + _rates_text(dict(sorted(price.fees.items()))))
    if price.long_context_above is not None:
        lines.append(f"above {price.long_context_above:,} input tokens: " + _rates_text(price.long_context))
    for tier, rates in sorted(price.service_tiers.items()):
        lines.append(f"tier {tier}: " + _rates_text(rates))
    return lines


@domain_command(models_cli, "flagged")
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True, help="How far back to look.")
def models_flagged(days):
    """Calls charged with a class, fee or tier you have not priced, or read with a meter's note."""
    found = usage_records.flagged(utcnow() - timedelta(days=days))
    if not found:
        click.echo(f"no flagged calls in the past {days} days")
    for f in found:
        click.echo(f"{f.model_id}\t{f.calls} call{'s' if f.calls != 1 else ''}\tlast {f.last:%Y-%m-%d %H:%M} UTC"
                   f"\t{f.flag}")


@domain_command(models_cli, "list")
def models_list():
    """List models with their upstream, settings and every price (USD per million tokens, per thousand units)."""
    for m in catalog.all_models():
        row = catalog.current_price(m.id)
        context = f"{m.context_window:,}" if m.context_window else f"{catalog.DEFAULT_CONTEXT_WINDOW:,} (default)"
        ceiling = "default" if m.tool_calls_ceiling is None else m.tool_calls_ceiling
        click.echo(f"{m.public_id}\t{'enabled' if m.enabled else 'disabled'}\t{m.upstream.name}/{m.upstream_model}"
                   f"\tmax_out={m.max_output_tokens}\tcontext_window={context}\tinput_by_reference={m.input_by_reference}"
                   f"\tunpriced_tier={m.unpriced_tier}\ttool_calls_ceiling={ceiling}")
        for line in ["no price"] if row is None else _price_lines(catalog.as_price(row)):
            click.echo(f"  {line}")
        for planned in catalog.upcoming_prices(m.id):
            click.echo(f"  from {_day(planned.effective_at)} (price {planned.id}): "
                       + "; ".join(_price_lines(catalog.as_price(planned))))
        cost = catalog.cost_price_of(m)
        if cost is not None:
            click.echo("  cost " + "; ".join(_price_lines(cost)))


@domain_command(models_cli, "disable")
@click.argument("model")
@click.option("--reason", **_REASON)
def models_disable(model, reason):
    """Stop serving a model (calls get 404; its history stays)."""
    row, changed = catalog.set_enabled(model, False, Actor.cli(), reason)
    click.echo(f"disabled {row.public_id}" if changed else f"{row.public_id} was disabled already; nothing changed")


@domain_command(models_cli, "enable")
@click.argument("model")
@click.option("--reason", **_REASON)
def models_enable(model, reason):
    """Serve a disabled model again."""
    row, changed = catalog.set_enabled(model, True, Actor.cli(), reason)
    click.echo(f"enabled {row.public_id}" if changed else f"{row.public_id} was enabled already; nothing changed")


@domain_command(models_cli, "prices")
@click.argument("model")
def models_prices(model):
    """A model's price history, latest first: upcoming changes, the price in force, earlier ones,
    and withdrawn changes (with the id `cancel-change` takes)."""
    row = catalog.find_model(model)
    current = catalog.current_price(row.id)
    now = utcnow()
    for price in db.session.scalars(catalog.price_history(row.id)):
        state = ("withdrawn " + _day(price.withdrawn_at) if price.withdrawn_at is not None
                 else "upcoming" if price.effective_at > now
                 else "in force" if current is not None and price.id == current.id else "earlier")
        click.echo(f"{price.id}\tfrom {_day(price.effective_at)}\t{state}")
        for line in _price_lines(catalog.as_price(price)):
            click.echo(f"  {line}")
    cost = catalog.cost_price_of(row)
    if cost is not None:
        click.echo("cost price (what you pay upstream)")
        for line in _price_lines(cost):
            click.echo(f"  {line}")


@domain_command(models_cli, "cancel-change")
@click.argument("model")
@click.argument("price_id", type=int, required=False)
@click.option("--reason", required=True, **_REASON)
def models_cancel_change(model, price_id, reason):
    """Withdraw a price change that has not taken effect yet (PRICE_ID from `models prices`; needed
    only when several are planned). The row stays in the history, marked withdrawn, and is audited."""
    row = catalog.find_model(model)
    if price_id is None:
        planned = catalog.upcoming_prices(row.id)
        if not planned:
            raise click.ClickException(f"{shown(model)} has no price change planned; nothing changed")
        if len(planned) > 1:
            raise click.ClickException(f"{shown(model)} has {len(planned)} price changes planned (ids "
                                       f"{', '.join(str(p.id) for p in planned)}); name the one to withdraw")
        price_id = planned[0].id
    withdrawn = catalog.withdraw_price(model, price_id, actor=Actor.cli(), reason=reason)
    click.echo(f"withdrew the price change {withdrawn.id} of {row.public_id} (it was to take effect "
               f"{_day(withdrawn.effective_at)})")


_CLASS_OPTIONS = ("cache_read", "cache_write", "cache_write_5m", "cache_write_1h", "input_audio", "output_audio",
                  "reasoning")


@domain_command(models_cli, "set")
@click.argument("model")
@click.option("--upstream", "upstream_name", required=True, help="Name of a configured upstream.")
@click.option("--upstream-model", help="The model name the upstream knows (default: MODEL).")
@click.option("--input", "input_price", metavar="USD", required=True, help="USD per million input tokens.")
@click.option("--output", "output_price", metavar="USD", required=True, help="USD per million output tokens.")
@click.option("--cache-read", metavar="USD", help="USD per million cache-read tokens (default: the input price).")
@click.option("--cache-write", metavar="USD", help="The same as --cache-write-5m (its old name).")
@click.option("--cache-write-5m", metavar="USD", help="USD per million 5-minute cache-write tokens (default: the input price).")
@click.option("--cache-write-1h", metavar="USD", help="USD per million 1-hour cache-write tokens (default: the input price).")
@click.option("--input-audio", metavar="USD", help="USD per million audio input tokens (default: the highest input-side price, flagged).")
@click.option("--output-audio", metavar="USD", help="USD per million audio output tokens (default: the highest input-side price, flagged).")
@click.option("--reasoning", metavar="USD", help="USD per million reasoning tokens (default: the output price).")
@click.option("--fee", "fees", multiple=True, metavar="UNIT=USD",
              help="USD per thousand units of a fee, such as web_search=10; repeat for each.")
@click.option("--long-context-above", type=click.IntRange(min=1), metavar="N",
              help="Input tokens above which the --long-context prices apply to the whole call.")
@click.option("--long-context", multiple=True, metavar="CLASS=USD",
              help="A long-context price, USD per million, such as input=6; repeat for each class.")
@click.option("--tier", "tiers", multiple=True, metavar="NAME:CLASS=USD",
              help="A service tier's price, USD per million, such as priority:input=2.50; repeat.")
@click.option("--max-output-tokens", type=int, metavar="N", help="Cap and default for a call's output tokens.")
@click.option("--context-window", type=click.IntRange(min=1), metavar="N", help="Input tokens the model takes in all.")
@click.option("--input-by-reference", type=click.Choice(catalog.INPUT_BY_REFERENCE),
              help="Hold requests whose input is not in the body at the context window, or refuse them.")
@click.option("--unpriced-tier", type=click.Choice(catalog.UNPRICED_TIER),
              help="Refuse a requested service tier without prices, or strip it from the request.")
@click.option("--tool-calls-ceiling", type=click.IntRange(min=0), metavar="N",
              help="Server tool uses held for when a request sets no limit (default: TOOL_CALLS_CEILING).")
@click.option("--effective", "effective_at", **_EFFECTIVE)
@click.option("--reason", **_REASON)
def models_set(model, upstream_name, upstream_model, input_price, output_price, fees, long_context_above,
               long_context, tiers, max_output_tokens, effective_at, reason, **options):
    """Create or update a model. The price given replaces the one in force whole (a change is a new
    price row, effective now or at --effective); settings not given are kept."""
    price = pricefile.price_from_options(
        {"input": input_price, "output": output_price, **{name: options.pop(name) for name in _CLASS_OPTIONS}},
        fees=fees, long_context_above=long_context_above, long_context=long_context, tiers=tiers)
    row, changed = catalog.set_model(model, upstream_name, price, upstream_model=upstream_model,
                                     max_output_tokens=max_output_tokens, effective_at=effective_at,
                                     actor=Actor.cli(), reason=reason,
                                     **{name: value for name, value in options.items() if value is not None})
    when = f", effective {_day(effective_at)}" if effective_at is not None else ""
    click.echo(f"model {row.public_id} -> {row.upstream.name}/{row.upstream_model}; "
               f"{'new price recorded' + when if changed else 'price unchanged'}")


@domain_command(models_cli, "cost")
@click.argument("model")
@click.option("--input", "input_price", metavar="USD", help="USD per million input tokens you pay upstream.")
@click.option("--output", "output_price", metavar="USD", help="USD per million output tokens you pay upstream.")
@click.option("--cache-read", metavar="USD", help="USD per million cache-read tokens (default: the input price).")
@click.option("--cache-write-5m", metavar="USD", help="USD per million 5-minute cache writes (default: input).")
@click.option("--cache-write-1h", metavar="USD", help="USD per million 1-hour cache writes (default: input).")
@click.option("--input-audio", metavar="USD", help="USD per million audio input tokens.")
@click.option("--output-audio", metavar="USD", help="USD per million audio output tokens.")
@click.option("--reasoning", metavar="USD", help="USD per million reasoning tokens (default: the output price).")
@click.option("--fee", "fees", multiple=True, metavar="UNIT=USD", help="USD per thousand units of a fee; repeat.")
@click.option("--long-context-above", type=click.IntRange(min=1), metavar="N",
              help="Input tokens above which the --long-context prices apply.")
@click.option("--long-context", multiple=True, metavar="CLASS=USD", help="A long-context price; repeat.")
@click.option("--tier", "tiers", multiple=True, metavar="NAME:CLASS=USD", help="A service tier's price; repeat.")
@click.option("--clear", is_flag=True, help="Forget the cost price.")
@click.option("--reason", **_REASON)
def models_cost(model, input_price, output_price, fees, long_context_above, long_context, tiers, clear, reason,
                **classes):
    """Set what you pay upstream for MODEL (optional; same classes as `set`). Each call from now on
    records its upstream cost, which the margin dashboard reads."""
    if clear:
        price = None
    elif input_price is None or output_price is None:
        raise click.ClickException("give --input and --output (USD per million tokens), or --clear")
    else:
        price = pricefile.price_from_options({"input": input_price, "output": output_price, **classes}, fees=fees,
                                             long_context_above=long_context_above, long_context=long_context,
                                             tiers=tiers)
    row, changed = catalog.set_cost_price(model, price, actor=Actor.cli(), reason=reason)
    if not changed:
        click.echo(f"the cost price of {row.public_id} is that already; nothing changed")
    else:
        click.echo(f"cost price of {row.public_id} {'cleared' if price is None else 'recorded'}")


@domain_command(models_cli, "import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--effective", "effective_at", **_EFFECTIVE)
@click.option("--reason", **_REASON)
def models_import(file, effective_at, reason):
    """Create or update models from a price file (.json, or a .csv price list); all of it or nothing."""
    for public_id, outcome in pricefile.import_file(file, effective_at=effective_at, actor=Actor.cli(),
                                                    reason=reason):
        click.echo(f"{public_id}\t{outcome}")


@models_cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
def models_export(file):
    """Write every model and its current price as a JSON price file (to FILE, or standard output); a FILE
    ending in .csv gets a CSV price list."""
    text = pricefile.export_csv() if file is not None and file.suffix.lower() == ".csv" else pricefile.export_json()
    if file is not None and file.suffix.lower() == ".csv" and pricefile.has_routes(pricefile.export()):
        click.echo("note: a CSV price list has no routes; export to a .json file to keep them", err=True)
    if file is None:
        click.echo(text, nl=False)
    else:
        file.write_text(text, encoding="utf-8")
        click.echo(f"wrote {file}", err=True)


@models_cli.group("route")
def models_route():
    """A model's upstreams: the lowest priority first, by weight among equals, the next on failure."""


def _other_api(model, upstream) -> str:
    """The API an upstream speaks when it is not the model's own upstream's (calls through it are translated:
    proxy/translate/), else ""."""
    return "" if upstream.protocol == model.upstream.protocol else upstream.protocol


@domain_command(models_route, "list")
@click.argument("model")
def models_route_list(model):
    """The upstreams that may serve MODEL, in the order they are tried."""
    found = catalog.find_model(model)
    for route in routes.routes_of(found):
        own = " (the model's own upstream)" if route.upstream_id == found.upstream_id else ""
        other = _other_api(found, route.upstream)
        translated = f" [speaks {other}: calls are translated]" if other else ""
        state = "" if route.upstream.enabled else " [upstream disabled]"
        click.echo(f"{route.upstream.name}\t{route.upstream_model}\tpriority {route.priority}\tweight {route.weight}"
                   f"{own}{translated}{state}")


@domain_command(models_route, "add")
@click.argument("model")
@click.argument("upstream")
@click.option("--upstream-model", help="The model name this upstream knows (default: MODEL).")
@click.option("--priority", type=click.IntRange(0, 1000), default=1, show_default=True,
              help="Lower is tried first; a higher one is a fallback.")
@click.option("--weight", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Share of calls among routes of the same priority.")
@click.option("--reason", **_REASON)
def models_route_add(model, upstream, upstream_model, priority, weight, reason):
    """Let UPSTREAM serve MODEL too, at the same price (an upstream of the other API too: calls are translated)."""
    route = routes.add_route(model, upstream, upstream_model=upstream_model, priority=priority, weight=weight,
                             actor=Actor.cli(), reason=reason)
    other = _other_api(catalog.find_model(model), route.upstream)
    translated = f"; {upstream} speaks {other}: calls through it are translated" if other else ""
    click.echo(f"{model} may now be served by {upstream} as {route.upstream_model} (priority {route.priority}, "
               f"weight {route.weight}){translated}; running servers see it within MODEL_CACHE_SECONDS")


@domain_command(models_route, "set")
@click.argument("model")
@click.argument("upstream")
@click.option("--upstream-model", help="The model name this upstream knows.")
@click.option("--priority", type=click.IntRange(0, 1000), help="Lower is tried first.")
@click.option("--weight", type=click.IntRange(1, 1000), help="Share of calls among routes of the same priority.")
@click.option("--reason", **_REASON)
def models_route_set(model, upstream, upstream_model, priority, weight, reason):
    """Change a route's model name, priority or weight."""
    route, changed = routes.update_route(model, upstream, upstream_model=upstream_model, priority=priority,
                                         weight=weight, actor=Actor.cli(), reason=reason)
    click.echo(f"{model} via {upstream}: {route.upstream_model}, priority {route.priority}, weight {route.weight}"
               + ("" if changed else " (nothing changed)"))


@domain_command(models_route, "remove")
@click.argument("model")
@click.argument("upstream")
@click.option("--reason", **_REASON)
def models_route_remove(model, upstream, reason):
    """Stop UPSTREAM serving MODEL (not its last upstream)."""
    routes.remove_route(model, upstream, actor=Actor.cli(), reason=reason)
    click.echo(f"{upstream} no longer serves {model}")
