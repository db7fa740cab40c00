"""Public models and their prices: models set|list|enable|disable|import|export|flagged."""
from datetime import timedelta
from pathlib import Path

import click

from .. import catalog, pricefile
from .. import usage as usage_records
from ..models import utcnow
from ..money import format_usd
from ..pricing import Price
from . import domain_command, models_cli


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


@domain_command(models_cli, "disable")
@click.argument("model")
def models_disable(model):
    """Stop serving a model (calls get 404; its history stays)."""
    click.echo(f"disabled {catalog.set_enabled(model, False).public_id}")


@domain_command(models_cli, "enable")
@click.argument("model")
def models_enable(model):
    """Serve a disabled model again."""
    click.echo(f"enabled {catalog.set_enabled(model, True).public_id}")


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
def models_set(model, upstream_name, upstream_model, input_price, output_price, fees, long_context_above,
               long_context, tiers, max_output_tokens, **options):
    """Create or update a model. The price given replaces the current one whole (a change is a new
    price, effective now); settings not given are kept."""
    price = pricefile.price_from_options(
        {"input": input_price, "output": output_price, **{name: options.pop(name) for name in _CLASS_OPTIONS}},
        fees=fees, long_context_above=long_context_above, long_context=long_context, tiers=tiers)
    row, changed = catalog.set_model(model, upstream_name, price, upstream_model=upstream_model,
                                     max_output_tokens=max_output_tokens,
                                     **{name: value for name, value in options.items() if value is not None})
    click.echo(f"model {row.public_id} -> {row.upstream.name}/{row.upstream_model}; "
               f"{'new price recorded' if changed else 'price unchanged'}")


@domain_command(models_cli, "import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def models_import(file):
    """Create or update models from a price file (.json, or a .csv price list); all of it or nothing."""
    for public_id, outcome in pricefile.import_file(file):
        click.echo(f"{public_id}\t{outcome}")


@models_cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
def models_export(file):
    """Write every model and its current price as a JSON price file (to FILE, or standard output)."""
    text = pricefile.export_json()
    if file is None:
        click.echo(text, nl=False)
    else:
        file.write_text(text, encoding="utf-8")
        click.echo(f"wrote {file}", err=True)
