"""The console's routes on a model's page (add, change, remove, each audited with its reason; either
API, never echo with a real upstream) and the circuit states it, the upstreams list and /status show."""
import re

import pytest
from sqlalchemy import select

from portal import catalog, routes
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry
from portal.pricing import Price
from tests.web.test_admin_models import model, model_id, text_of


@pytest.fixture
def admin(auth):
    with atomic():
        catalog.add_upstream("main", "openai", "https://api.openai.com/v1", "sk-main-secret-Hq2")
        catalog.add_upstream("spare", "openai", "https://openrouter.ai/api/v1", "sk-spare-secret-Zt9")
        catalog.add_upstream("claude", "anthropic", "https://api.anthropic.com", "sk-claude")
        catalog.add_upstream("echo", "echo")
        catalog.set_model("m", "main", Price(input=2_000_000, output=8_000_000))
    return auth.admin()


def listed():
    db.session.rollback()
    return [(r.upstream.name, r.upstream_model, r.priority, r.weight) for r in routes.routes_of(model())]


def audited(action):
    db.session.rollback()
    return [(e.reason, e.after, e.before) for e in db.session.scalars(
        select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def upstream_id(name):
    db.session.rollback()
    return catalog.find_upstream(name).id


def test_the_page_lists_the_routes_and_offers_upstreams_of_either_api_not_echo(client, admin):
    page = client.get(f"/admin/models/{model_id()}").get_data(as_text=True)
    text = text_of(page)
    assert "Upstreams routes, tried in order" in text and "main (own) openai" in text
    adding = page[page.index('id="add-route"'):]
    adding = adding[:adding.index("</form>")]
    assert re.findall(r'<option value="([^"]+)">([^<]+)</option>', adding) == [("claude", "claude (anthropic)"),
                                                                            ("spare", "spare (openai)")]
    assert 'data-testid="mixed-routes"' not in page
    assert "sk-main-secret" not in page


def test_a_route_to_an_upstream_of_the_other_api_is_added_and_the_page_says_calls_are_translated(client, admin):
    response = client.post(f"/admin/models/{model_id()}/routes", data={
        "upstream": "claude", "upstream_model": "claude-m", "priority": "2", "reason": "fallback of the other kind"})
    assert response.status_code == 302
    assert listed() == [("main", "m", 1, 1), ("claude", "claude-m", 2, 1)]
    assert audited("model.route_add")[0][0] == "fallback of the other kind"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "claude (own)" not in text_of(page) and "claude anthropic" in text_of(page)
    assert "Its upstreams speak different APIs: each call is translated to the API of the upstream that serves it" \
        in text_of(page)
    assert 'data-testid="mixed-routes"' in page


def test_add_change_and_remove_a_route(client, admin):
    mid = model_id()
    response = client.post(f"/admin/models/{mid}/routes", data={
        "upstream": "spare", "upstream_model": "openai/m", "priority": "2", "weight": "3", "reason": "fallback"})
    assert response.status_code == 302
    assert listed() == [("main", "m", 1, 1), ("spare", "openai/m", 2, 3)]
    assert audited("model.route_add")[0][:2] == ("fallback", {"upstream": "spare", "upstream_model": "openai/m",
                                                               "priority": 2, "weight": 3})
    assert "spare may now serve m." in client.get(response.headers["Location"]).get_data(as_text=True)

    spare = upstream_id("spare")
    response = client.post(f"/admin/models/{mid}/routes/{spare}", data={
        "upstream_model": "openai/m", "priority": "1", "weight": "3", "reason": "share"})
    assert response.status_code == 302 and listed()[1] == ("spare", "openai/m", 1, 3)
    assert audited("model.route_update")[0][0] == "share"

    main = upstream_id("main")
    response = client.post(f"/admin/models/{mid}/routes/{main}/remove", data={"reason": "gone", "confirm": "yes"})
    assert response.status_code == 302 and listed() == [("spare", "openai/m", 1, 3)]
    assert model().upstream.name == "spare"  # the best remaining route is the model's own now
    assert audited("model.route_remove")[0][0] == "gone"


@pytest.mark.parametrize("form, error", [
    ({"upstream": "spare", "priority": "1", "weight": "1"}, "Give a reason"),
    ({"upstream": "spare", "priority": "1", "weight": "0", "reason": "x"}, "weight must be from 1 to 1000"),
    ({"upstream": "echo", "reason": "x"}, "the built-in echo upstream answers for no real model"),
    ({"upstream": "main", "reason": "x"}, "already"),
])
def test_a_refused_route_is_a_form_error_and_changes_nothing(client, admin, form, error):
    response = client.post(f"/admin/models/{model_id()}/routes", data=form)
    assert response.status_code == 422 and error in text_of(response.get_data(as_text=True))
    assert listed() == [("main", "m", 1, 1)] and audited("model.route_add") == []


def test_the_last_route_cannot_be_removed(client, admin):
    response = client.post(f"/admin/models/{model_id()}/routes/{upstream_id('main')}/remove",
                           data={"reason": "x", "confirm": "yes"})
    assert response.status_code == 422 and "only upstream" in text_of(response.get_data(as_text=True))
    assert listed() == [("main", "m", 1, 1)]


def test_circuit_states_show_in_the_console_and_as_degraded_on_status(app, client, admin):
    breakers = app.extensions["tollgate.gateway"].breakers
    for _ in range(breakers.failures):
        breakers.failed("main")
    upstreams = client.get("/admin/upstreams").get_data(as_text=True)
    assert 'data-testid="circuit-main"><strong>open</strong>' in upstreams
    assert 'data-testid="circuit-spare">closed' in upstreams
    assert "open" in text_of(client.get(f"/admin/models/{model_id()}").get_data(as_text=True))
    client.post("/logout")
    status = client.get("/status").get_data(as_text=True)
    assert "degraded" in status and "main" not in text_of(status).replace("maintenance", "").lower().split()
    [entry] = client.get("/status.json").get_json()["models"]
    assert entry["id"] == "m" and entry["degraded"] is True


def test_status_is_not_degraded_while_every_circuit_is_closed(client, admin):
    [entry] = client.get("/status.json").get_json()["models"]
    assert entry["degraded"] is False
