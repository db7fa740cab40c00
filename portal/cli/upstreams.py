"""Upstream providers: upstreams add|update|list|enable|disable|test|rotate-keys."""
import sys

import click

from .. import catalog, dialects, secretbox, upstream_health
from ..audit import Actor
from . import domain_command, shown, upstreams_cli

_DIALECTS = click.Choice([*dialects.DIALECTS, "echo"])
_PRIVATE_HELP = ("Allow the base URL's host to be on a private, loopback or link-local address (a model server on "
                 "your own network). Without it such hosts are refused, when saved and at every call.")
_CHAT_ONLY_HELP = ("An OpenAI-compatible upstream without the Responses API: /v1/responses calls reach it "
                   f"translated to chat completions. The {', '.join(dialects.CHAT_ONLY)} dialects are chat-only "
                   "whatever this says.")


def _credential(upstream) -> str:
    if secretbox.is_unreadable(upstream.api_key):
        return "credential unreadable (enter it again)"
    return "credential set" if upstream.api_key else "no credential"


def _marks(upstream) -> list[str]:
    """What sets the upstream apart, as the confirmations and the list show it: its private-host
    allowance, and "chat completions only" with why (its flag, its dialect: catalog.UpstreamInfo)."""
    marks = ["private host allowed"] if upstream.allow_private_host else []
    why = [*(["flag"] if upstream.chat_only else []),
           *([f"dialect {upstream.dialect}"] if upstream.dialect in dialects.CHAT_ONLY else [])]
    if upstream.protocol == "openai" and why:
        marks.append(f"chat completions only ({', '.join(why)})")
    return marks


def _key_from(api_key):
    return sys.stdin.readline().strip() if api_key == "-" else api_key


@domain_command(upstreams_cli, "add")
@click.argument("name")
@click.option("--protocol", required=True, type=click.Choice(["openai", "anthropic", "echo"]))
@click.option("--base-url", help="As the provider's SDK takes it: OpenAI-style ends in /v1, Anthropic-style is the host root.")
@click.option("--api-key", help="The upstream credential; '-' reads it from standard input (keeps it out of shell history).")
@click.option("--dialect", type=_DIALECTS, help="How it reports usage (default: guessed from the base URL's host).")
@click.option("--allow-private-host/--no-allow-private-host", default=False, help=_PRIVATE_HELP)
@click.option("--chat-only", is_flag=True, help=_CHAT_ONLY_HELP)
@click.option("--reason", help="Kept in the audit log.")
def upstreams_add(name, protocol, base_url, api_key, dialect, allow_private_host, chat_only, reason):
    """Register an upstream provider (its credential is stored encrypted and never shown again)."""
    upstream = catalog.add_upstream(name, protocol, base_url, _key_from(api_key), dialect,
                                    allow_private_host=allow_private_host, chat_only=chat_only, actor=Actor.cli(),
                                    reason=reason)
    click.echo(f"added upstream {upstream.name} ({upstream.protocol}{', ' + upstream.base_url if upstream.base_url else ''}"
               f", dialect {upstream.dialect}{''.join(', ' + mark for mark in _marks(upstream))})")


@domain_command(upstreams_cli, "update")
@click.argument("name")
@click.option("--base-url", help="A new base URL.")
@click.option("--api-key", help="A new credential; '-' reads it from standard input; '' removes it.")
@click.option("--dialect", type=_DIALECTS, help="How it reports usage.")
@click.option("--allow-private-host/--no-allow-private-host", default=None, help=_PRIVATE_HELP)
@click.option("--chat-only/--no-chat-only", default=None, help=_CHAT_ONLY_HELP)
@click.option("--reason", help="Kept in the audit log.")
def upstreams_update(name, base_url, api_key, dialect, allow_private_host, chat_only, reason):
    """Change an upstream's base URL, credential, dialect, private-host allowance or chat-only flag.

    Takes effect in this process at once, in other running servers within MODEL_CACHE_SECONDS.
    """
    upstream = catalog.update_upstream(name, base_url, _key_from(api_key), dialect,
                                       allow_private_host=allow_private_host, chat_only=chat_only, actor=Actor.cli(),
                                       reason=reason)
    click.echo(f"updated upstream {upstream.name} ({upstream.base_url or 'built in'}, dialect {upstream.dialect}, "
               f"{_credential(upstream)}{''.join(', ' + mark for mark in _marks(upstream))})")


def _switch(name: str, enabled: bool, reason):
    upstream, changed = catalog.set_upstream_enabled(name, enabled, actor=Actor.cli(), reason=reason)
    state = "enabled" if enabled else "disabled"
    if not changed:
        click.echo(f"upstream {upstream.name} is already {state}; nothing changed")
        return
    if enabled:
        click.echo(f"enabled upstream {upstream.name}: its models answer again")
    else:
        click.echo(f"disabled upstream {upstream.name}: its models answer \"unavailable\" until it is enabled again "
                   "(other running servers within MODEL_CACHE_SECONDS)")


@domain_command(upstreams_cli, "disable")
@click.argument("name")
@click.option("--reason", help="Kept in the audit log.")
def upstreams_disable(name, reason):
    """Stop sending calls to an upstream: its models answer "unavailable" (503)."""
    _switch(name, False, reason)


@domain_command(upstreams_cli, "enable")
@click.argument("name")
@click.option("--reason", help="Kept in the audit log.")
def upstreams_enable(name, reason):
    """Serve a disabled upstream's models again."""
    _switch(name, True, reason)


@domain_command(upstreams_cli, "test")
@click.argument("name")
def upstreams_test(name):
    """Ask the upstream for its models list (through the same address checks as calls); show the result."""
    result = upstream_health.probe(catalog.find_upstream(name))
    if not result.ok:
        raise click.ClickException(f"{name}: {shown(result.summary())}")
    click.echo(f"{name}: {result.summary()}")


def _ms(value) -> str:
    return "-" if value is None else f"{value} ms"


@domain_command(upstreams_cli, "list")
def upstreams_list():
    """List upstreams with their state and last hour's health (credentials are never shown)."""
    health = upstream_health.recent()
    for u in catalog.list_upstreams():
        h = health.get(u.id, upstream_health.Health())
        click.echo(f"{u.name}\t{u.protocol}\t{u.base_url or '-'}\t{_credential(u)}\tdialect {u.dialect}")
        state = ["enabled" if u.enabled else "DISABLED", *_marks(u)]
        click.echo(f"  {', '.join(state)}; last hour: {h.calls} calls, {h.error_percent} errors, latency p50 "
                   f"{_ms(h.p50_latency_ms)}, first byte p50 {_ms(h.p50_first_byte_ms)}")


@domain_command(upstreams_cli, "rotate-keys")
def upstreams_rotate_keys():
    """Re-encrypt the stored credentials under the first UPSTREAM_KEYS_SECRET key (after adding a new one)."""
    rotated, unreadable = catalog.rotate_upstream_keys(actor=Actor.cli())
    click.echo(f"re-encrypted {rotated} credential{'s' if rotated != 1 else ''} under the first key")
    if unreadable:
        raise click.ClickException(f"{len(unreadable)} could not be decrypted with any key ({', '.join(unreadable)}); "
                                   "restore the old key, or enter those credentials again with "
                                   "`flask upstreams update NAME --api-key -`")
