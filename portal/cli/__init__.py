"""Operator commands (`flask --app wsgi GROUP COMMAND`): thin wrappers over the domain modules.

One module per feature registers its commands on the groups defined here. Every command runs
in one transaction and turns domain errors into a one-line message with a
non-zero exit status.
"""
import functools
import importlib
import unicodedata
from datetime import datetime

import click
from flask import Flask
from flask.cli import AppGroup

from ..database import atomic
from ..errors import DomainError

users_cli = AppGroup("users", help="Find, create, verify, suspend and terminate users.")
credits_cli = AppGroup("credits", help="Grant credit, adjust balances, record manual top-ups, expire old credit.")
keys_cli = AppGroup("keys", help="Issue and revoke API keys.")
upstreams_cli = AppGroup("upstreams", help="Configure upstream providers.")
models_cli = AppGroup("models", help="Configure public models and their prices.")
jobs_cli = AppGroup("jobs", help="Run the periodic jobs (from cron, when serve's timer is off).")
ledger_cli = AppGroup("ledger", help="Check the books.")
demo_cli = AppGroup("demo", help="Demo data for a local try-out.")
terms_cli = AppGroup("terms", help="Publish the terms of service.")
inbox_cli = AppGroup("inbox", help="What users sent the operator: contact messages and refund requests.")
privacy_cli = AppGroup("privacy", help="Publish the privacy policy.")
refunds_cli = AppGroup("refunds", help="Approve or reject requests for unused balance.")
codes_cli = AppGroup("codes", help="Create gift codes.")
refund_policy_cli = AppGroup("refund-policy", help="Publish the refund policy.")
announce_cli = AppGroup("announce", help="Mail an announcement to all users or the active ones.")
maintenance_cli = AppGroup("maintenance", help="Turn maintenance mode on or off (the API answers 503).")
incidents_cli = AppGroup("incidents", help="Incidents on the public status page.")
limits_cli = AppGroup("limits", help="Rate limits per account and per key (requests and tokens per minute, calls at once).")
signals_cli = AppGroup("signals", help="Abuse signals: shared keys, accounts sharing a card or an address.")


def domain_command(group: AppGroup, *args, **kwargs):
    """Register a command that runs atomically and reports DomainError as a clean failure."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            try:
                with atomic():
                    return fn(*a, **kw)
            except DomainError as exc:
                raise click.ClickException(str(exc)) from None
        return group.command(*args, **kwargs)(wrapper)
    return decorate



def shown(text: str | None, *, multiline: bool = False) -> str:
    """User-written text made safe for the operator's terminal: controls and bidi overrides escaped.

    An escape sequence in a contact message could recolour, move the cursor or rewrite earlier
    lines; a right-to-left override could make a line read differently from what it says. Each
    such character is shown as \\xNN or \\uNNNN instead. With `multiline`, line breaks start an
    indented continuation line rather than being escaped.
    """
    def escape(c: str) -> str:
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
        return c

    text = text or ""
    if not multiline:
        return "".join(map(escape, text))
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n  ".join("".join(map(escape, line)) for line in lines)


def _day(moment) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"



class Moment(click.ParamType):
    """An ISO 8601 moment with its timezone ("2027-11-28T00:00:00Z")."""

    name = "ISO8601"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date and time, e.g. 2027-11-28T00:00:00Z", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} has no timezone; add one, e.g. 2027-11-28T00:00:00Z or +01:00", param, ctx)
        return moment



# The modules that register commands on the groups above, one per feature.
MODULES = ("people", "upstreams", "models", "legal", "inbox", "books", "site", "limits", "signals", "doctor")


def register(app: Flask) -> None:
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    for group in (users_cli, credits_cli, keys_cli, upstreams_cli, models_cli, ledger_cli, jobs_cli, demo_cli, terms_cli,
                  privacy_cli, refund_policy_cli, inbox_cli, refunds_cli, codes_cli, announce_cli, maintenance_cli,
                  incidents_cli, limits_cli, signals_cli):
        app.cli.add_command(group)
    app.cli.add_command(importlib.import_module(f"{__name__}.books").serve)
    app.cli.add_command(importlib.import_module(f"{__name__}.doctor").doctor_command)
    from .. import logs
    logs.log_commands(app.cli)  # one log line per command: its name and exit status, never its arguments
