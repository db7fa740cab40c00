"""Maintenance and incidents: maintenance on|off|status, incidents add|edit|resolve|list."""
from pathlib import Path

import click

from .. import maintenance, status
from ..audit import Actor
from ..errors import InvalidInput
from ..extensions import db
from . import Moment, _day, domain_command, incidents_cli, maintenance_cli, shown


def _describe(state: maintenance.State) -> str:
    until = f"until {_day(state.until)}" if state.until else "until turned off"
    return f"on since {_day(state.since)}, {until}" + (f": {shown(state.message)}" if state.message else "")


@domain_command(maintenance_cli, "on")
@click.option("--message", help="Shown in the portal's banner, on the status page and in the API's 503 answers.")
@click.option("--until", type=Moment(), help="When it ends by itself (ISO 8601 with a timezone); "
                                             "API clients are told to retry then.")
@click.option("--reason", help="Kept in the audit log.")
def maintenance_on(message, until, reason):
    """Turn maintenance on (again, to change its message or end time)."""
    if maintenance.turn_on(Actor.cli(), message=message, until=until, reason=reason):
        click.echo(f"maintenance is {_describe(maintenance.saved())}; the API answers 503")
    else:
        click.echo("maintenance is already on with this message and end time; nothing changed")


@domain_command(maintenance_cli, "off")
@click.option("--reason", help="Kept in the audit log.")
def maintenance_off(reason):
    """Turn maintenance off: the API answers again."""
    if maintenance.turn_off(Actor.cli(), reason=reason):
        click.echo("maintenance off: the API answers calls again")
    else:
        click.echo("maintenance is already off; nothing changed")


@domain_command(maintenance_cli, "status")
def maintenance_status():
    """Say whether maintenance is on."""
    state = maintenance.announced()
    if state is None:
        click.echo("maintenance is off")
    elif not state.active():
        click.echo(f"maintenance is off (it ended by itself at {_day(state.until)})")
    else:
        click.echo(f"maintenance is {_describe(state)}")


def _body(body, body_file) -> str:
    if body is not None and body_file is not None:
        raise InvalidInput("Give --body or --body-file, not both.")
    if body_file is not None:
        return click.get_text_stream("stdin").read() if body_file == "-" else Path(body_file).read_text("utf-8")
    return body or ""


@domain_command(incidents_cli, "add")
@click.argument("title")
@click.option("--body", help="What happened and what people should do, in Markdown.")
@click.option("--body-file", help="Read the Markdown body from this file ('-': standard input).")
@click.option("--started", type=Moment(), help="When it began (ISO 8601 with a timezone); default now.")
def incidents_add(title, body, body_file, started):
    """Write an ongoing incident on the status page."""
    incident = status.add(Actor.cli(), title, _body(body, body_file), started_at=started)
    click.echo(f"incident {incident.id} added (ongoing since {_day(incident.started_at)}): {shown(incident.title)}")


@domain_command(incidents_cli, "edit")
@click.argument("incident_id", type=int)
@click.option("--title", help="A new title.")
@click.option("--body", help="A new Markdown body.")
@click.option("--body-file", help="Read the new Markdown body from this file ('-': standard input).")
@click.option("--started", type=Moment(), help="A corrected start (ISO 8601 with a timezone).")
@click.option("--reason", help="Kept in the audit log.")
def incidents_edit(incident_id, title, body, body_file, started, reason):
    """Change an incident's title, body or start."""
    incident = status.get(incident_id)
    new_body = incident.body if body is None and body_file is None else _body(body, body_file)
    if status.edit(Actor.cli(), incident_id, title if title is not None else incident.title, new_body,
                   started_at=started, reason=reason):
        click.echo(f"incident {incident_id} updated")
    else:
        click.echo(f"incident {incident_id} already says that; nothing changed")


@domain_command(incidents_cli, "resolve")
@click.argument("incident_id", type=int)
@click.option("--at", "at", type=Moment(), help="When it ended (ISO 8601 with a timezone); default now.")
@click.option("--reason", help="Kept in the audit log.")
def incidents_resolve(incident_id, at, reason):
    """Mark an incident resolved."""
    if status.resolve(Actor.cli(), incident_id, at=at, reason=reason):
        click.echo(f"incident {incident_id} resolved at {_day(status.get(incident_id).resolved_at)}")
    else:
        click.echo(f"incident {incident_id} was already resolved; nothing changed")


@domain_command(incidents_cli, "list")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def incidents_list(limit):
    """List incidents, newest first."""
    rows = list(db.session.scalars(status.all_incidents().limit(limit)))
    if not rows:
        click.echo("no incidents")
    for incident in rows:
        end = f"resolved {_day(incident.resolved_at)}" if incident.resolved_at else "ongoing"
        click.echo(f"{incident.id}\t{_day(incident.started_at)}\t{end}\t{shown(incident.title)}")
