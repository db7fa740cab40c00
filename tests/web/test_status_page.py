"""The public status page and /status.json: availability and median latency per public model over the
last hour and day, the maintenance notice, and the operator's incidents."""
import uuid
from datetime import timedelta

import pytest

from portal import apikeys, catalog, maintenance, status
from portal.audit import Actor
from portal.database import atomic
from portal.extensions import db
from portal.models import UsageRecord, utcnow
from tests.factories import make_model, make_user


@pytest.fixture
def calls(app):
    """record(model, status, ...): a usage record as the proxy writes one, `ago` before now."""
    user = make_user("caller@example.com")
    with atomic():
        key, _ = apikeys.issue(user, "status")
    key_id, account_id = key.id, user.account.id

    def record(public_id: str, outcome: str = "ok", *, http_status=200, first_byte_ms=100, ago=timedelta(minutes=5)):
        model = catalog.find_model(public_id)
        with atomic():
            db.session.add(UsageRecord(
                request_id=f"req_{uuid.uuid4().hex[:24]}", account_id=account_id, api_key_id=key_id,
                model_id=model.id, upstream_id=model.upstream_id, price_id=catalog.current_price(model.id).id,
                status=outcome, http_status=http_status, first_byte_ms=first_byte_ms, duration_ms=first_byte_ms,
                started_at=utcnow() - ago))
    return record


def test_availability_counts_only_the_services_failures(app, client, calls):
    make_model("echo-1")
    make_model("echo-2")
    make_model("hidden")
    with atomic():
        catalog.set_enabled("hidden", False)
    for ms in (100, 300, 200):
        calls("echo-1", first_byte_ms=ms)
    calls("echo-1", "upstream_error", http_status=500, first_byte_ms=None)    # the upstream failed
    calls("echo-1", "upstream_timeout", http_status=504, first_byte_ms=None)  # so did this
    calls("echo-1", "upstream_error", http_status=429, first_byte_ms=None)    # the upstream rate limits us
    calls("echo-1", "upstream_error", http_status=400, first_byte_ms=None)    # the caller's bad request
    calls("echo-1", "client_disconnected", first_byte_ms=50)                  # the caller left
    calls("echo-1", first_byte_ms=1000, ago=timedelta(hours=3))               # in the day, not the hour
    calls("echo-1", "gateway_error", first_byte_ms=None, ago=timedelta(hours=5))
    calls("echo-1", first_byte_ms=99_999, ago=timedelta(days=2))              # too old for either
    calls("hidden", first_byte_ms=10)

    document = client.get("/status.json").get_json()
    assert [m["id"] for m in document["models"]] == ["echo-1", "echo-2"]  # public models only
    echo1, echo2 = document["models"]
    assert echo1["last_hour"] == {"calls": 8, "failures": 3, "availability": 0.625, "median_latency_ms": 200}
    # The day: 10 calls, 4 failures; successes 100, 200, 300, 1000: the median is between 200 and 300.
    assert echo1["last_day"] == {"calls": 10, "failures": 4, "availability": 0.6, "median_latency_ms": 250}
    assert echo2["last_hour"] == {"calls": 0, "failures": 0, "availability": None, "median_latency_ms": None}
    assert document["maintenance"] is None

    page = client.get("/status").get_data(as_text=True)
    assert "62.50%" in page and "60.00%" in page and "200 ms" in page and "250 ms" in page and "no calls" in page
    main = page.split("<main", 1)[1].split("</main>", 1)[0]  # the page's own content, not the frame's
    assert ">hidden<" not in main and "<code>hidden</code>" not in main  # the disabled model


def test_the_figures_are_kept_for_a_few_seconds(app, client, calls):
    make_model("echo-1")
    calls("echo-1")
    assert client.get("/status.json").get_json()["models"][0]["last_hour"]["calls"] == 1
    calls("echo-1")
    assert client.get("/status.json").get_json()["models"][0]["last_hour"]["calls"] == 1  # cached
    status.forget(app)
    assert client.get("/status.json").get_json()["models"][0]["last_hour"]["calls"] == 2


def test_a_slow_model_shows_seconds(app, client, calls):
    make_model("slow-1")
    calls("slow-1", first_byte_ms=2500)
    assert "2.5 s" in client.get("/status").get_data(as_text=True)


def test_the_page_needs_no_login_and_shows_maintenance(app, client):
    assert client.get("/status").status_code == 200
    with atomic():
        maintenance.turn_on(Actor.cli(), message="Database upgrade.", until=utcnow() + timedelta(hours=1))
    page = client.get("/status").get_data(as_text=True)
    assert "Maintenance is under way" in page and "Database upgrade." in page
    document = client.get("/status.json").get_json()
    assert document["maintenance"]["message"] == "Database upgrade."
    assert 3500 < document["maintenance"]["retry_after_seconds"] <= 3600


def test_incidents_newest_first_ongoing_and_resolved(app, client):
    now = utcnow()
    with atomic():
        old = status.add(Actor.cli(), "Long ago, resolved", started_at=now - timedelta(days=120))
        status.resolve(Actor.cli(), old.id, at=now - timedelta(days=119))
        status.add(Actor.cli(), "Long ago, still ongoing", started_at=now - timedelta(days=100))
        week = status.add(Actor.cli(), "Last week", "Upstream *outage*.", started_at=now - timedelta(days=7))
        status.resolve(Actor.cli(), week.id, at=now - timedelta(days=7) + timedelta(hours=2))
        status.add(Actor.cli(), "Right now", "<img src=x onerror=alert(1)> [link](javascript:alert(1))")
    page = client.get("/status").get_data(as_text=True)
    assert page.index("Right now") < page.index("Last week") < page.index("Long ago, still ongoing")
    assert "Long ago, resolved" not in page  # older than 90 days and over
    main = page.split("<main", 1)[1].split("</main>", 1)[0]  # the page's own content, not the frame's logo
    assert "<em>outage</em>" in main and "<img" not in main and "&lt;img" in main
    assert "An incident is ongoing" in page
    incidents = client.get("/status.json").get_json()["incidents"]
    assert [(i["title"], i["ongoing"]) for i in incidents] == [
        ("Right now", True), ("Last week", False), ("Long ago, still ongoing", True)]


@pytest.mark.parametrize("link", ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "java&#09;script:alert(1)",
                                  "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox(1)"])
def test_markdown_links_cannot_run_script(app, client, link):
    with atomic():
        status.add(Actor.cli(), "Links", f"[click]({link}) and [docs](https://example.com/docs) "
                                         f"and ![pic]({link}) and [here](/pricing)")
    page = client.get("/status").get_data(as_text=True)
    assert "script:" not in page.lower().replace("&#09;", "") and "data:text" not in page
    assert '<a href="#">click</a>' in page and '<img alt="pic" src="#"' in page
    assert '<a href="https://example.com/docs">docs</a>' in page and '<a href="/pricing">here</a>' in page
