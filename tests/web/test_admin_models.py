"""The console's models and prices: list, add, edit, enable and disable, price changes now or later,
withdrawal, cost prices, import and export. Each action goes through the catalog's functions and
is audited with the acting admin; bad input is a 422 form with every error and changes nothing."""
import html
import io
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal import catalog, pricefile
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry, CatalogModel, ModelPrice, utcnow
from portal.pricing import Price, price_from_spec
from tests.factories import make_user, price_rows, stored_price
from tests.web import test_pricing_page

PRICE = Price(input=2_000_000, output=8_000_000)
SETTINGS = {"upstream": "echo", "upstream_model": "", "max_output_tokens": "4096", "context_window": "",
            "input_by_reference": "hold", "unpriced_tier": "refuse", "tool_calls_ceiling": ""}


@pytest.fixture
def admin(auth):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("m", "echo", PRICE)
    return auth.admin()


def text_of(page: str) -> str:
    return html.unescape(test_pricing_page.text_of(page))


def model_id(public_id="m") -> int:
    return model(public_id).id


def model(public_id="m") -> CatalogModel:
    """The model as committed now."""
    db.session.rollback()
    return catalog.find_model(public_id)


def entries(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def test_the_list_shows_price_next_change_and_cost_and_paginates(client, admin):
    moment = utcnow().replace(microsecond=0) + timedelta(days=2)
    with atomic():
        for i in range(50):
            catalog.set_model(f"z-{i:02d}", "echo", PRICE)
        catalog.change_price("m", Price(input=3_000_000, output=9_000_000, cache_read=1),
                             effective_at=moment, actor=None)
        catalog.set_cost_price("m", Price(input=1_000_000, output=4_000_000), actor=None)
        catalog.set_enabled("z-00", False)
    page = text_of(client.get("/admin/models").get_data(as_text=True))
    assert f"m echo m enabled in $2.00 · out $8.00 from {moment:%Y-%m-%d %H:%M} UTC" in page
    assert "in $3.00 · out $9.00 in $1.00 · out $4.00" in page
    assert "z-00 echo z-00 disabled" in page and "z-48" in page and "z-49" not in page
    second = text_of(client.get("/admin/models?page=2").get_data(as_text=True))
    assert "z-49" in second and "z-48" not in second


def test_add_a_model_with_every_class_and_the_rarer_parts(client, admin):
    form = {**SETTINGS, "public_id": "claude-sonnet", "upstream_model": "claude-sonnet-4-5",
            "max_output_tokens": "64,000", "context_window": "1000000", "tool_calls_ceiling": "0",
            "input": "3", "output": "15", "cache_read": "0.30", "cache_write_5m": "3.75", "cache_write_1h": "6",
            "input_audio": "", "output_audio": "", "reasoning": "",
            "extras": json.dumps({"usd_per_thousand": {"web_search": "10"},
                                  "long_context": {"above_input_tokens": 200000,
                                                   "usd_per_million": {"input": "6", "output": "22.50"}}}),
            "effective": "now", "reason": "launch"}
    response = client.post("/admin/models/new", data=form)
    assert response.status_code == 302
    assert "Model claude-sonnet added." in client.get(response.headers["Location"]).get_data(as_text=True)
    assert stored_price("claude-sonnet") == price_from_spec({
        "usd_per_million": {"input": "3", "output": "15", "cache_read": "0.30", "cache_write_5m": "3.75",
                            "cache_write_1h": "6"},
        "usd_per_thousand": {"web_search": "10"},
        "long_context": {"above_input_tokens": 200000, "usd_per_million": {"input": "6", "output": "22.50"}}})
    added = model("claude-sonnet")
    assert (added.upstream_model, added.max_output_tokens, added.context_window, added.tool_calls_ceiling) == \
        ("claude-sonnet-4-5", 64_000, 1_000_000, 0)
    [entry] = entries("model.create")
    assert (entry.actor, entry.ip, entry.reason, entry.target_id) == ("admin@example.com", "127.0.0.1", "launch",
                                                                     "claude-sonnet")
    assert entry.before is None and entry.after["price input"] == "3" and entry.after["price fee:web_search"] == "10"


def test_a_bad_model_form_lists_every_error_and_changes_nothing(client, admin):
    rows, models = price_rows(), count(CatalogModel)
    form = {**SETTINGS, "public_id": "m", "max_output_tokens": "0", "context_window": "lots", "input": "2.5.0",
            "output": "", "cache_read": "-1", "reasoning": "0.0000001", "extras": "{\"usd_per_thousand\": 3",
            "effective": "later", "effective_at": "2020-01-01T00:00"}
    response = client.post("/admin/models/new", data=form)
    assert response.status_code == 422
    page = text_of(response.get_data(as_text=True))
    for message in ("A model 'm' exists already", "Give a whole number, 1 or more.",
                    "input must be a non-negative decimal number of USD, got '2.5.0'",
                    "Give the output price, in USD per million tokens", "cache read must be a non-negative",
                    "reasoning has more than 6 decimal places", "This is not valid JSON",
                    "2020-01-01 00:00 UTC has passed"):
        assert message in page, message
    assert 'value="2.5.0"' in response.get_data(as_text=True)  # what was typed stays in the form
    assert (price_rows(), count(CatalogModel), count(AuditEntry)) == (rows, models, 0)
    # The JSON part's own mistakes name the field.
    form = {**SETTINGS, "public_id": "n", "input": "1", "output": "2",
            "extras": json.dumps({"long_context": {"usd_per_million": {"input": "6"}}})}
    response = client.post("/admin/models/new", data=form)
    assert response.status_code == 422
    assert "long_context.above_input_tokens must be a positive whole number" in response.get_data(as_text=True)
    response = client.post("/admin/models/new", data={**form, "extras": '{"fees": {}}'})
    assert "Write an object with any of usd_per_thousand" in response.get_data(as_text=True)
    assert count(CatalogModel) == models


def test_change_the_price_now_and_later_and_withdraw_the_later_one(client, admin):
    mid = model_id()
    url = f"/admin/models/{mid}/price"
    response = client.post(url, data={"input": "2.50", "output": "10", "effective": "now", "reason": "rise"})
    assert response.status_code == 302
    assert stored_price("m") == Price(input=2_500_000, output=10_000_000)
    [entry] = entries("model.price")
    assert entry.before == {"price input": "2", "price output": "8"}
    assert entry.after["price input"] == "2.5" and entry.after["effective_at"] == "now"
    # The same again records nothing.
    response = client.post(url, data={"input": "2.5", "output": "10.00", "effective": "now"})
    assert "nothing changed" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert price_rows() == 2
    # Later: a row with that moment, shown on the page as planned.
    moment = (utcnow() + timedelta(days=3)).replace(second=0, microsecond=0)
    response = client.post(url, data={"input": "4", "output": "12", "effective": "later",
                                      "effective_at": moment.strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"it takes effect {moment:%Y-%m-%d %H:%M} UTC" in page and "Planned changes" in page
    assert stored_price("m") == Price(input=2_500_000, output=10_000_000)
    planned = db.session.scalars(select(ModelPrice).order_by(ModelPrice.id.desc())).first()
    assert planned.effective_at == moment
    # Withdrawing needs a reason and the box ticked.
    withdraw = f"/admin/models/{mid}/prices/{planned.id}/withdraw"
    response = client.post(withdraw, data={"reason": "oops"})
    assert response.status_code == 422 and "Tick the box" in response.get_data(as_text=True)
    response = client.post(withdraw, data={"confirm": "yes"})
    assert response.status_code == 422 and "Give a reason" in response.get_data(as_text=True)
    assert entries("model.price_withdraw") == []
    response = client.post(withdraw, data={"confirm": "yes", "reason": "typo"})
    assert response.status_code == 302
    db.session.rollback()
    assert db.session.get(ModelPrice, planned.id).withdrawn_at is not None
    assert [e.reason for e in entries("model.price_withdraw")] == ["typo"]
    page = text_of(client.get(f"/admin/models/{mid}").get_data(as_text=True))
    assert "Planned changes" not in page and "withdrawn" in page
    response = client.post(withdraw, data={"confirm": "yes", "reason": "again"})
    assert response.status_code == 422 and "was withdrawn already" in response.get_data(as_text=True)


@pytest.mark.parametrize("effective_at, message", [
    ("", "Give the date and time the price takes effect"),
    ("tomorrow", "Give the date and time the price takes effect"),
    ("2001-02-03T04:05", "2001-02-03 04:05 UTC has passed"),
])
def test_a_price_change_at_a_bad_moment_is_refused(client, admin, effective_at, message):
    response = client.post(f"/admin/models/{model_id()}/price",
                           data={"input": "3", "output": "9", "effective": "later", "effective_at": effective_at})
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert 'value="3"' in response.get_data(as_text=True)
    assert price_rows() == 1 and entries("model.price") == []


def test_edit_settings_enable_and_disable(client, admin):
    mid = model_id()
    response = client.post(f"/admin/models/{mid}/settings",
                           data={**SETTINGS, "upstream_model": "echo-upstream", "max_output_tokens": "2048",
                                 "input_by_reference": "refuse", "reason": "tighter"})
    assert response.status_code == 302
    stored = model()
    assert (stored.upstream_model, stored.max_output_tokens, stored.input_by_reference) == ("echo-upstream", 2048, "refuse")
    [entry] = entries("model.update")
    assert (entry.before["max_output_tokens"], entry.after["max_output_tokens"]) == (4096, 2048)
    assert not any(key.startswith("price") for key in entry.after) and price_rows() == 1
    response = client.post(f"/admin/models/{mid}/settings", data={**SETTINGS, "max_output_tokens": "-3"})
    assert response.status_code == 422 and "Give a whole number, 1 or more." in response.get_data(as_text=True)
    assert model().max_output_tokens == 2048 and len(entries("model.update")) == 1
    # A blank upstream model name is the model's own id, as when it was added.
    assert client.post(f"/admin/models/{mid}/settings", data={**SETTINGS, "max_output_tokens": "2048",
                                                              "input_by_reference": "refuse"}).status_code == 302
    assert model().upstream_model == "m"
    assert entries("model.update")[-1].after["upstream_model"] == "m"
    # Disable: a reason and the box; again says nothing changed and writes nothing.
    assert client.post(f"/admin/models/{mid}/enabled", data={"reason": "x"}).status_code == 422
    for _ in range(2):
        response = client.post(f"/admin/models/{mid}/enabled", data={"reason": "retired", "confirm": "yes"})
        assert response.status_code == 302
    assert "was disabled already; nothing changed" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert not model().enabled
    assert [(e.before, e.after) for e in entries("model.disable")] == [({"enabled": True}, {"enabled": False})]
    response = client.post(f"/admin/models/{mid}/enabled", data={"enabled": "yes", "reason": "back"})
    assert response.status_code == 302 and model().enabled
    assert len(entries("model.enable")) == 1


def test_cost_price_form_sets_and_clears(client, admin):
    mid = model_id()
    response = client.post(f"/admin/models/{mid}/cost", data={"cost_input": "1.5", "cost_output": "6",
                                                              "cost_cache_read": "0.15"})
    assert response.status_code == 302
    assert catalog.cost_price_of(model()) == Price(input=1_500_000, output=6_000_000,
                                                                    cache_read=150_000)
    page = text_of(client.get(f"/admin/models/{mid}").get_data(as_text=True))
    assert "input: $1.50" in page and "cache read: $0.15" in page
    response = client.post(f"/admin/models/{mid}/cost", data={"cost_input": "x", "cost_output": ""})
    assert response.status_code == 422
    assert "Give the output price" in response.get_data(as_text=True)
    assert client.post(f"/admin/models/{mid}/cost", data={"clear": "yes"}).status_code == 302
    assert model().cost_price is None
    assert len(entries("model.cost_price")) == 2


def upload(client, name: str, content: bytes, **form):
    return client.post("/admin/models/import", data={"file": (io.BytesIO(content), name), "effective": "now", **form},
                       content_type="multipart/form-data")


def test_import_is_all_or_nothing_and_lists_every_error(client, admin):
    bad = {"models": [{"id": "a", "upstream": "echo", "usd_per_million": {"input": 3, "output": "1"}},
                      {"id": "b", "upstream": "nowhere", "usd_per_million": {"input": "1", "output": "1"}},
                      {"id": "c", "upstream": "echo", "usd_per_million": {"input": "1", "output": "2"}}]}
    response = upload(client, "prices.json", json.dumps(bad).encode())
    assert response.status_code == 422
    page = text_of(response.get_data(as_text=True))
    assert "Nothing was imported." in page
    assert 'models[0] (a).usd_per_million.input must be a decimal string such as "2.50", got 3' in page
    assert "models[1] (b)" in page and "nowhere" in page
    assert count(CatalogModel) == 1 and entries("model.create") == []
    csv_bad = "id,upstream,input,output\nx,echo,1,\ny,echo,abc,2\n".encode()
    page = text_of(upload(client, "list.csv", csv_bad).get_data(as_text=True))
    assert "line 2 (x): column output is empty" in page and "line 3 (y): column input" in page
    for name, content, message in (("prices.txt", b"{}", "a .json file or a .csv price list"),
                                   ("prices.json", "{}".encode("utf-16"), "is not UTF-8 text")):
        response = upload(client, name, content)
        assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert count(CatalogModel) == 1


def test_import_applies_the_file_and_audits_each_model(client, admin):
    content = "\ufeffid,upstream,input,output,cache_read\nm,echo,2,8,\nnew-one,echo,1,2,0.5\n".encode()
    response = upload(client, "list.csv", content, reason="quarterly list")
    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"]).get_data(as_text=True))
    assert "Imported list.csv: 2 models (created: new-one; 1 unchanged)." in page
    assert stored_price("new-one") == Price(input=1_000_000, output=2_000_000, cache_read=500_000)
    assert [(e.target_id, e.reason) for e in entries("model.create")] == [("new-one", "quarterly list")]
    # A future moment for the whole file.
    moment = (utcnow() + timedelta(days=1)).replace(second=0, microsecond=0)
    response = upload(client, "list.csv", b"id,upstream,input,output\nm,echo,5,9\n", effective="later",
                      effective_at=moment.strftime("%Y-%m-%dT%H:%M"))
    assert f"(new price: m). New prices take effect {moment:%Y-%m-%d %H:%M} UTC." in \
        text_of(client.get(response.headers["Location"]).get_data(as_text=True))
    assert stored_price("m") == PRICE
    assert [r.effective_at for r in catalog.upcoming_prices(model_id())] == [moment]


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_export_downloads_the_list_and_importing_it_changes_nothing(client, admin, kind):
    with atomic():
        catalog.set_model("rich", "echo", Price(input=1, output=2, reasoning=3, fees={"web_search": 10_000_000},
                                                service_tiers={"priority": {"input": 4}}), context_window=9_000,
                          enabled=False)
    response = client.get(f"/admin/models/export.{kind}")
    assert response.status_code == 200
    assert re.fullmatch(rf'attachment; filename="prices-\d{{8}}-\d{{4}}\.{kind}"',
                        response.headers["Content-Disposition"])
    text = response.get_data(as_text=True)
    assert text == (pricefile.export_json() if kind == "json" else pricefile.export_csv())
    [entry] = entries("model.export")
    assert entry.after == {"format": kind} and entry.actor == "admin@example.com"
    rows = price_rows()
    response = upload(client, f"back.{kind}", text.encode())
    assert "2 models (2 unchanged)" in text_of(client.get(response.headers["Location"]).get_data(as_text=True))
    assert price_rows() == rows and entries("model.update") == []
    assert client.get("/admin/models/export.xml").status_code == 404


def test_the_model_page_and_forms_show_what_is_stored(client, admin):
    with atomic():
        catalog.set_model("tiered", "echo", Price(input=1_250_000, output=10_000_000, fees={"web_search": 10_000_000},
                                                  service_tiers={"priority": {"input": 2_500_000}}))
    page = client.get(f"/admin/models/{model_id('tiered')}").get_data(as_text=True)
    assert 'name="input" type="text" value="1.25"' in page
    assert "&#34;web_search&#34;: &#34;10&#34;" in page  # the rarer parts, prefilled as the price file has them
    assert "priority tier:" in text_of(page)
    assert client.get("/admin/models/999999").status_code == 404


def test_people_who_are_not_admins_cannot_change_prices(client, auth, app):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("m", "echo", PRICE)
    make_user("admin-not@example.com")
    auth.login("admin-not@example.com")
    response = client.post(f"/admin/models/{model_id()}/price", data={"input": "0", "output": "0"})
    assert response.status_code == 403 and stored_price("m") == PRICE
