"""The console's site page: maintenance on and off, branding, the logo, and incidents."""
import struct
import zlib
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from portal import maintenance, sitesettings, status
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry, Incident, SiteSetting, utcnow
from tests.factories import make_user
from tests.web.helpers import outbox


def audit(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def png(width=2, height=2) -> bytes:
    """A real, tiny PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


ON = {"message": "Moving to a bigger database.", "reason": "planned upgrade", "confirm": "yes"}


def test_an_admin_turns_maintenance_on_and_off(app, client, auth):
    admin = auth.admin()
    until = (utcnow() + timedelta(hours=2)).replace(second=0, microsecond=0)
    response = client.post("/admin/site/maintenance", data={**ON, "until": until.strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 302
    page = client.get("/admin/site").get_data(as_text=True)
    assert "Maintenance is on: API calls are refused with 503" in page  # the flash
    assert "Moving to a bigger database." in page and until.strftime("%Y-%m-%d %H:%M") in page
    state = maintenance.current()
    assert state.message == "Moving to a bigger database." and state.until == until
    [entry] = audit("maintenance.on")
    assert (entry.actor, entry.actor_id, entry.reason) == (admin.email, admin.id, "planned upgrade")
    assert entry.before["on"] is False and entry.after["until"] == until.isoformat()

    # The same again changes nothing and writes nothing.
    client.post("/admin/site/maintenance", data={**ON, "until": until.strftime("%Y-%m-%dT%H:%M")})
    assert "nothing changed" in client.get("/admin/site").get_data(as_text=True)
    assert len(audit("maintenance.on")) == 1 and audit("maintenance.change") == []
    # A new message is a change.
    client.post("/admin/site/maintenance", data={**ON, "message": "Nearly done."})
    assert maintenance.current().message == "Nearly done." and maintenance.current().until is None
    assert len(audit("maintenance.change")) == 1

    assert client.post("/admin/site/maintenance/off", data={"reason": "done"}).status_code == 302
    assert maintenance.current() is None
    assert "the API answers calls again" in client.get("/admin/site").get_data(as_text=True)
    client.post("/admin/site/maintenance/off", data={"reason": "again"})
    assert "already off; nothing changed" in client.get("/admin/site").get_data(as_text=True)
    assert len(audit("maintenance.off")) == 1


@pytest.mark.parametrize("form, field_error", [
    ({"reason": "x"}, "Tick the box to confirm"),
    ({"confirm": "yes"}, "Give a reason"),
    ({**ON, "until": "2001-01-01T10:00"}, "already passed"),
    ({**ON, "until": "next tuesday"}, "Give the time as 2027-01-31 18:00 (UTC)."),
    ({**ON, "message": "x" * 501}, "under 500 characters"),
])
def test_a_bad_maintenance_form_is_refused_whole(app, client, auth, form, field_error):
    auth.admin()
    response = client.post("/admin/site/maintenance", data=form)
    assert response.status_code == 422
    assert field_error in response.get_data(as_text=True)
    assert maintenance.current() is None and audit("maintenance.on") == []
    assert db.session.scalar(select(func.count()).select_from(SiteSetting)) == 0


def test_people_who_are_not_admins_cannot_switch_it(app, client, auth):
    auth.user("someone@example.com")
    assert client.post("/admin/site/maintenance", data=ON).status_code == 403
    assert client.post("/admin/site/incidents", data={"title": "Fake"}).status_code == 403
    assert maintenance.current() is None
    assert db.session.scalar(select(func.count()).select_from(Incident)) == 0


def test_the_banner_shows_on_every_page_and_everyone_can_still_log_in(app, client, auth):
    with atomic():
        maintenance.turn_on(Actor.cli(), message="Back soon.", until=utcnow() + timedelta(minutes=30))
    home = client.get("/").get_data(as_text=True)
    assert 'data-testid="maintenance-banner"' in home and "Back soon." in home
    auth.user("reader@example.com")  # users log in and read their portal (banner on top)
    dashboard = client.get("/dashboard/")
    assert dashboard.status_code == 200 and "Back soon." in dashboard.get_data(as_text=True)
    auth.logout()
    auth.admin()  # admins log in, through two-factor, and the console works
    assert client.get("/admin/site").status_code == 200
    with atomic():
        maintenance.turn_off(Actor.cli())
    assert 'data-testid="maintenance-banner"' not in client.get("/").get_data(as_text=True)


def test_maintenance_ends_by_itself_at_its_end_time(app, client):
    with atomic():
        maintenance.turn_on(Actor.cli(), until=utcnow() + timedelta(minutes=10))
    later = utcnow() + timedelta(minutes=11)
    assert maintenance.current() is not None and maintenance.current(later) is None
    assert maintenance.announced().until < later  # the console says when it ended
    with atomic():
        assert maintenance.turn_off(Actor.cli(), now=later) is False  # nothing left to end


def test_branding_saved_in_the_console_wins_over_the_configuration(app, client, auth):
    auth.admin()
    response = client.post("/admin/site/branding", data={
        "site_name": "  Acme   AI ", "contact_email": "help@acme.example", "operator_name": "Acme Ltd",
        "operator_address": "1 Main Street, Springfield", "reason": "rebrand"})
    assert response.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "<title>Acme AI · Acme AI</title>" in page or "· Acme AI</title>" in page
    assert '<span translate="no">Acme AI</span></a>' in page and "Tollgate" not in page
    [entry] = audit("site.branding")
    assert entry.after["site_name"] == "Acme AI" and entry.before["site_name"] is None
    # Saved again unchanged: nothing written.
    client.post("/admin/site/branding", data={"site_name": "Acme AI", "contact_email": "help@acme.example",
                                              "operator_name": "Acme Ltd",
                                              "operator_address": "1 Main Street, Springfield"})
    assert len(audit("site.branding")) == 1
    # Emptied: back to the configuration's name.
    client.post("/admin/site/branding", data={"site_name": ""})
    assert '<span translate="no">Tollgate</span></a>' in client.get("/").get_data(as_text=True)
    assert sitesettings.branding().operator_name == "Acme Ltd"  # fields not sent stay


@pytest.mark.parametrize("form, error", [
    ({"contact_email": "not an address"}, "name@example.com"),
    ({"site_name": "x" * 61}, "under 60 characters"),
    ({"operator_address": "y" * 301}, "under 300 characters"),
])
def test_bad_branding_is_refused(app, client, auth, form, error):
    auth.admin()
    response = client.post("/admin/site/branding", data={"site_name": "Fine", **form})
    assert response.status_code == 422 and error in response.get_data(as_text=True)
    assert sitesettings.branding().site_name == "Tollgate" and audit("site.branding") == []


def test_a_png_logo_is_uploaded_served_and_removed(app, client, auth):
    auth.admin()
    data = png()
    response = client.post("/admin/site/logo", data={"logo": (__import__("io").BytesIO(data), "logo.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 302
    name = sitesettings.branding().logo
    assert name.startswith("logo-") and name.endswith(".png")
    home = client.get("/").get_data(as_text=True)
    assert f'src="/brand/{name}"' in home
    image = client.get(f"/brand/{name}")
    assert image.status_code == 200 and image.data == data and image.mimetype == "image/png"
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    assert [e.after["logo"] for e in audit("site.logo")] == [name]
    # Only stored logos are served: nothing else from the instance folder.
    (sitesettings.logo_folder() / "secret.txt").write_text("no")
    for path in ("/brand/secret.txt", "/brand/..%2Fsecret_key", "/brand/logo-0000000000000000.png"):
        assert client.get(path).status_code == 404, path
    assert client.post("/admin/site/logo/remove", data={"reason": "old"}).status_code == 302
    assert sitesettings.branding().logo == "" and "/brand/" not in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("data, error", [
    (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
     "SVG logos are refused"),
    (b"<svg onload='alert(1)'></svg>", "SVG logos are refused"),
    (b"GIF89a....", "must be a PNG, JPEG or WebP"),
    (png() + b"\x00" * (256 * 1024), "at most 256 KB"),
    (b"", "Choose an image file"),
])
def test_unsafe_or_large_logos_are_refused(app, client, auth, data, error):
    import io
    auth.admin()
    response = client.post("/admin/site/logo", data={"logo": (io.BytesIO(data), "logo.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 422 and error in response.get_data(as_text=True)
    assert sitesettings.branding().logo == "" and audit("site.logo") == []


def test_incidents_are_written_edited_and_resolved_in_the_console(app, client, auth):
    auth.admin()
    response = client.post("/admin/site/incidents", data={
        "title": "Slow answers from echo-1", "body": "We are **looking into it**. <script>alert(1)</script>"})
    assert response.status_code == 302
    db.session.rollback()
    incident = db.session.scalars(select(Incident)).one()
    public = client.get("/status").get_data(as_text=True)
    assert "Slow answers from echo-1" in public and "<strong>looking into it</strong>" in public
    assert "<script>alert(1)" not in public and "&lt;script&gt;" in public and "ongoing" in public

    started = incident.started_at.strftime("%Y-%m-%dT%H:%M")
    client.post(f"/admin/site/incidents/{incident.id}", data={"title": "Slow answers from echo-1",
                                                            "body": incident.body, "started_at": started})
    assert audit("incident.edit") == []  # nothing changed (the start shown in minutes keeps its seconds)
    client.post(f"/admin/site/incidents/{incident.id}", data={"title": "Slow answers", "body": "Fixed soon.",
                                                            "started_at": started, "reason": "typo"})
    [edit] = audit("incident.edit")
    assert (edit.before["title"], edit.after["title"], edit.reason) == ("Slow answers from echo-1", "Slow answers",
                                                                       "typo")
    assert client.post(f"/admin/site/incidents/{incident.id}/resolve", data={}).status_code == 302
    db.session.rollback()
    assert db.session.get(Incident, incident.id).resolved_at is not None
    client.post(f"/admin/site/incidents/{incident.id}/resolve", data={})
    assert len(audit("incident.resolve")) == 1 and len(audit("incident.add")) == 1
    assert "ongoing" not in client.get("/status").get_data(as_text=True)
    assert client.get("/admin/site/incidents/999").status_code == 404


@pytest.mark.parametrize("form, error", [
    ({"title": "  "}, "Give the incident a title"),
    ({"title": "t" * 201}, "under 200 characters"),
    ({"title": "Later", "started_at": "2999-01-01T00:00"}, "in the future"),
])
def test_a_bad_incident_is_refused(app, client, auth, form, error):
    auth.admin()
    response = client.post("/admin/site/incidents", data=form)
    assert response.status_code == 422 and error in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Incident)) == 0


def test_an_incident_cannot_be_resolved_before_it_started(app, client, auth):
    auth.admin()
    with atomic():
        incident = status.add(Actor.cli(), "Outage", started_at=datetime(2026, 1, 2, 10, tzinfo=timezone.utc))
    response = client.post(f"/admin/site/incidents/{incident.id}/resolve", data={"resolved_at": "2026-01-02T09:00"})
    assert response.status_code == 422 and "before it started" in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.get(Incident, incident.id).resolved_at is None


def test_the_incident_list_paginates(app, client, auth):
    auth.admin()
    base = utcnow() - timedelta(days=30)
    with atomic():
        for n in range(52):
            status.add(Actor.cli(), f"Incident number {n:02d}", started_at=base + timedelta(minutes=n))
    first = client.get("/admin/site/incidents").get_data(as_text=True)
    assert "Incident number 51" in first and "Incident number 01" not in first and 'rel="next"' in first
    second = client.get("/admin/site/incidents?page=2").get_data(as_text=True)
    assert "Incident number 01" in second and "Incident number 51" not in second


def test_branding_reaches_the_mail(app, client, auth):
    with atomic():
        sitesettings.save_branding(Actor.cli(), {"site_name": "Acme AI", "operator_name": "Acme Ltd",
                                                 "contact_email": "help@acme.example"})
    make_user("mailme@example.com", verified=False)
    client.post("/forgot", data={"email": "mailme@example.com"})
    [message] = [m for m in outbox(app) if m["To"] == "mailme@example.com"]
    assert message["From"] == "Acme AI <no-reply@localhost>"
    body = message.get_content()
    assert body.rstrip().endswith("-- \nAcme AI\nAcme Ltd\nContact: help@acme.example")
