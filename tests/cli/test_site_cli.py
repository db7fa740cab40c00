"""`maintenance on|off|status` and `incidents add|edit|resolve|list`: the console's twins, audited."""
import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import maintenance, sitesettings
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry, Incident, utcnow
from tests.cli.test_cli import ok, refused


def actions() -> list[tuple[str, str]]:
    db.session.rollback()
    return [(e.action, e.actor) for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_maintenance_on_off_and_repeats(app, cli):
    assert ok(cli("maintenance", "status")) == "maintenance is off\n"
    until = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    out = ok(cli("maintenance", "on", "--message", "Upgrading \x1b[31mnow", "--until", until.isoformat(),
                 "--reason", "planned"))
    assert "maintenance is on since" in out and f"until {until:%Y-%m-%d %H:%M} UTC" in out
    assert "\\x1b[31m" in out and "\x1b" not in out  # the message is shown, escapes made harmless
    db.session.rollback()
    assert maintenance.current().until == until
    again = ok(cli("maintenance", "on", "--message", "Upgrading \x1b[31mnow", "--until", until.isoformat()))
    assert again == "maintenance is already on with this message and end time; nothing changed\n"
    assert "Upgrading" in ok(cli("maintenance", "status"))
    assert ok(cli("maintenance", "off")) == "maintenance off: the API answers calls again\n"
    assert ok(cli("maintenance", "off")) == "maintenance is already off; nothing changed\n"
    [(on, who), (off, _)] = actions()
    assert (on, off) == ("maintenance.on", "maintenance.off") and who.startswith("cli:")
    db.session.rollback()
    assert db.session.scalars(select(AuditEntry)).first().reason == "planned"


@pytest.mark.parametrize("until, message", [
    ("2027-01-01T10:00:00", "has no timezone"),
    ("tomorrow", "is not an ISO 8601 date and time"),
    ("2001-01-01T10:00:00Z", "already passed"),
    ("2999-01-01T10:00:00Z", "more than a year away"),
])
def test_a_bad_end_time_is_refused(app, cli, until, message):
    refused(cli("maintenance", "on", "--until", until), message)
    assert maintenance.current() is None and actions() == []


def test_status_says_when_maintenance_ended_by_itself(app, cli):
    ended = (utcnow() - timedelta(minutes=1)).replace(microsecond=0)
    state = maintenance.State(since=ended - timedelta(hours=1), until=ended, message="")
    with atomic():  # as stored by an `on --until` an hour ago
        sitesettings.put(maintenance.KEY, json.dumps(state.as_dict()))
    assert ok(cli("maintenance", "status")) == f"maintenance is off (it ended by itself at {ended:%Y-%m-%d %H:%M} UTC)\n"
    assert ok(cli("maintenance", "off")) == "maintenance is already off; nothing changed\n"
    assert actions() == []


def test_incidents_add_edit_resolve_list(app, cli, tmp_path):
    body = tmp_path / "body.md"
    body.write_text("Calls to **echo-1** time out.\n", encoding="utf-8")
    out = ok(cli("incidents", "add", "Timeouts on echo-1", "--body-file", str(body)))
    assert out.startswith("incident 1 added (ongoing since ")
    ok(cli("incidents", "add", "Older one", "--body", "Done.", "--started", "2026-01-02T03:04:05+01:00"))
    listing = ok(cli("incidents", "list")).splitlines()
    assert listing[0].startswith("1\t") and "ongoing\tTimeouts on echo-1" in listing[0]
    assert listing[1].startswith("2\t2026-01-02 02:04 UTC\tongoing\tOlder one")

    assert ok(cli("incidents", "edit", "1", "--title", "Timeouts on echo-1 (fixed upstream)")) == \
        "incident 1 updated\n"
    assert ok(cli("incidents", "edit", "1", "--title", "Timeouts on echo-1 (fixed upstream)")) == \
        "incident 1 already says that; nothing changed\n"
    db.session.rollback()
    assert db.session.get(Incident, 1).body == "Calls to **echo-1** time out."  # the body stays

    assert ok(cli("incidents", "resolve", "2", "--at", "2026-01-02T05:00:00Z")) == \
        "incident 2 resolved at 2026-01-02 05:00 UTC\n"
    assert ok(cli("incidents", "resolve", "2")) == "incident 2 was already resolved; nothing changed\n"
    assert "resolved 2026-01-02 05:00 UTC" in ok(cli("incidents", "list"))
    assert [a for a, _ in actions()] == ["incident.add", "incident.add", "incident.edit", "incident.resolve"]


def test_incident_mistakes_are_refused_cleanly(app, cli):
    refused(cli("incidents", "resolve", "7"), "There is no incident 7.")
    refused(cli("incidents", "add", "   "), "Give the incident a title")
    ok(cli("incidents", "add", "Outage", "--started", "2026-01-02T10:00:00Z"))
    refused(cli("incidents", "resolve", "1", "--at", "2026-01-02T09:00:00Z"), "cannot be resolved before it started")
    refused(cli("incidents", "add", "Both", "--body", "x", "--body-file", "-"), "not both")
    assert [a for a, _ in actions()] == ["incident.add"]
    assert ok(cli("incidents", "list", "--limit", "1")).count("\n") == 1
