"""Upstream providers: upstreams add|update|list."""
import sys

import click

from .. import catalog, dialects
from . import domain_command, upstreams_cli

_DIALECTS = click.Choice([*dialects.DIALECTS, "echo"])


@domain_command(upstreams_cli, "add")
@click.argument("name")
@click.option("--protocol", required=True, type=click.Choice(["openai", "anthropic", "echo"]))
@click.option("--base-url", help="As the provider's SDK takes it: OpenAI-style ends in /v1, Anthropic-style is the host root.")
@click.option("--api-key", help="The upstream credential; '-' reads it from standard input (keeps it out of shell history).")
@click.option("--dialect", type=_DIALECTS, help="How it reports usage (default: guessed from the base URL's host).")
def upstreams_add(name, protocol, base_url, api_key, dialect):
    """Register an upstream provider."""
    if api_key == "-":
        api_key = sys.stdin.readline().strip()
    upstream = catalog.add_upstream(name, protocol, base_url, api_key, dialect)
    click.echo(f"added upstream {upstream.name} ({upstream.protocol}{', ' + upstream.base_url if upstream.base_url else ''}"
               f", dialect {upstream.dialect})")


@domain_command(upstreams_cli, "update")
@click.argument("name")
@click.option("--base-url", help="A new base URL.")
@click.option("--api-key", help="A new credential; '-' reads it from standard input; '' removes it.")
@click.option("--dialect", type=_DIALECTS, help="How it reports usage.")
def upstreams_update(name, base_url, api_key, dialect):
    """Change an upstream's base URL, credential or dialect (takes effect within MODEL_CACHE_SECONDS)."""
    if api_key == "-":
        api_key = sys.stdin.readline().strip()
    upstream = catalog.update_upstream(name, base_url, api_key, dialect)
    click.echo(f"updated upstream {upstream.name} ({upstream.base_url or 'built in'}, dialect {upstream.dialect}, "
               f"{'credential set' if upstream.api_key else 'no credential'})")


@domain_command(upstreams_cli, "list")
def upstreams_list():
    """List upstreams (credentials are never shown)."""
    for u in catalog.list_upstreams():
        click.echo(f"{u.name}\t{u.protocol}\t{u.base_url or '-'}\t{'credential set' if u.api_key else 'no credential'}"
                   f"\tdialect {u.dialect}")
