"""Price files: published price lists entered exactly, all or nothing, and export -> import changes nothing."""
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from portal import catalog, pricefile
from portal.database import atomic
from portal.errors import InvalidInput
from portal.extensions import db
from portal.models import CatalogModel
from portal.pricing import Price, price_from_spec

from tests.factories import price_rows, stored_price

DATA = Path(__file__).resolve().parents[1] / "data"
PUBLISHED = json.loads((DATA / "published-prices.json").read_text())["models"]


@pytest.fixture
def upstreams(app):
    with atomic():
        catalog.add_upstream("openai", "openai", "https://api.openai.com/v1")
        catalog.add_upstream("anthropic", "anthropic", "https://api.anthropic.com")


def load(text: str, kind: str = "json"):
    with atomic():
        return pricefile.import_text(text, kind)


def test_published_lists_are_stored_exactly(upstreams):
    outcomes = load((DATA / "published-prices.json").read_text())
    assert outcomes == [(spec["id"], "created") for spec in PUBLISHED]
    for spec in PUBLISHED:
        assert stored_price(spec["id"]) == price_from_spec(spec), spec["id"]
    sonnet, gpt5, audio = stored_price("claude-sonnet"), stored_price("gpt-5"), stored_price("gpt-audio")
    assert (sonnet.cache_write_1h, sonnet.fees, sonnet.long_context_above, sonnet.long_context["output"]) == \
        (6_000_000, {"web_search": 10_000_000}, 200_000, 22_500_000)
    assert (gpt5.cache_read, gpt5.service_tiers["flex"], gpt5.reasoning) == \
        (125_000, {"input": 625_000, "output": 5_000_000, "cache_read": 62_500}, None)
    assert (audio.input_audio, audio.output_audio) == (32_000_000, 64_000_000)
    model = catalog.find_model("claude-sonnet")
    assert (model.upstream_model, model.max_output_tokens, model.context_window, model.tool_calls_ceiling,
            model.input_by_reference, model.unpriced_tier) == ("claude-sonnet-4-5", 64_000, 1_000_000, 20, "hold", "refuse")
    assert (catalog.find_model("gpt-5").unpriced_tier, catalog.find_model("claude-haiku").input_by_reference) == \
        ("strip", "refuse")


def test_the_csv_price_list_stores_the_same_prices(upstreams):
    assert [outcome for _, outcome in load((DATA / "published-prices.csv").read_text(), "csv")] == ["created"] * 5
    for spec in PUBLISHED:
        assert stored_price(spec["id"]) == price_from_spec(spec), spec["id"]
    exported = {spec["id"]: spec for spec in pricefile.export()["models"]}
    for spec in PUBLISHED:  # the settings too
        assert {key: exported[spec["id"]][key] for key in spec if key in catalog.MODEL_SETTINGS} == \
            {key: spec[key] for key in spec if key in catalog.MODEL_SETTINGS}


def test_export_then_import_changes_nothing(upstreams):
    load((DATA / "published-prices.json").read_text())
    with atomic():
        catalog.set_enabled("o3", False)
    rows = price_rows()
    text = pricefile.export_json()
    assert [outcome for _, outcome in load(text)] == ["unchanged"] * 5
    assert price_rows() == rows
    assert pricefile.export_json() == text
    assert catalog.find_model("o3").enabled is False
    exported = {spec["id"]: spec for spec in json.loads(text)["models"]}
    assert price_from_spec(exported["claude-sonnet"]) == price_from_spec(PUBLISHED[3])
    assert exported["claude-sonnet"]["usd_per_million"]["cache_read"] == "0.3"  # decimal strings, never floats


def test_outcomes_and_settings_kept_when_not_given(upstreams):
    base = {"id": "m", "upstream": "openai", "usd_per_million": {"input": "1", "output": "2"}}
    assert load(json.dumps({"models": [{**base, "context_window": 50_000, "tool_calls_ceiling": 3}]})) == \
        [("m", "created")]
    assert load(json.dumps({"models": [base]})) == [("m", "unchanged")]
    model = catalog.find_model("m")
    assert (model.context_window, model.tool_calls_ceiling, model.upstream_model, model.max_output_tokens) == \
        (50_000, 3, "m", 4096)
    assert load(json.dumps({"models": [{**base, "max_output_tokens": 1000}]})) == [("m", "updated")]
    assert load(json.dumps({"models": [{**base, "context_window": None}]})) == [("m", "updated")]
    assert catalog.find_model("m").context_window is None  # null: back to the default
    assert price_rows() == 1
    assert load(json.dumps({"models": [{**base, "usd_per_million": {"input": "1", "output": "2",
                                                                    "reasoning": "2"}}]})) == [("m", "new price")]
    assert price_rows() == 2
    # The price replaces the current one whole: a class left out is unset again.
    assert load(json.dumps({"models": [base]})) == [("m", "new price")]
    assert stored_price("m") == Price(input=1_000_000, output=2_000_000)


GOOD = {"id": "ok", "upstream": "openai", "usd_per_million": {"input": "1", "output": "2"}}


@pytest.mark.parametrize("model, message", [
    ({**GOOD, "id": "claude-sonnet", "usd_per_million": {"input": 3, "output": "15"}},
     'models[1] (claude-sonnet).usd_per_million.input must be a decimal string such as "2.50", got 3'),
    ({**GOOD, "id": "x", "usd_per_million": {"input": "-1", "output": "15"}},
     "models[1] (x).usd_per_million.input must be a non-negative decimal"),
    ({**GOOD, "id": "x", "usd_per_million": {"input": "1", "output": "1", "cache_writes": "1"}},
     "models[1] (x).usd_per_million: unknown token class 'cache_writes'"),
    ({**GOOD, "id": "x", "usd_per_million": {"output": "1"}}, "models[1] (x).usd_per_million: 'input' is required"),
    ({**GOOD, "id": "x", "price": "1"}, "models[1] (x): unknown field 'price'"),
    ({**GOOD, "id": "x", "upstream": "nope"}, "models[1] (x).upstream: no upstream named 'nope'; add it first"),
    ({**GOOD, "id": "x", "max_output_tokens": 1000.0}, "models[1] (x).max_output_tokens: must be a whole number"),
    ({**GOOD, "id": "x", "max_output_tokens": 0}, "models[1] (x).max_output_tokens: must be a positive whole number"),
    ({**GOOD, "id": "x", "context_window": 0}, "models[1] (x).context_window: the context window must be a positive"),
    ({**GOOD, "id": "x", "tool_calls_ceiling": -1}, "models[1] (x).tool_calls_ceiling: the tool calls ceiling must"),
    ({**GOOD, "id": "x", "input_by_reference": "allow"}, "models[1] (x).input_by_reference: input by reference must be "
                                                         "hold or refuse, got 'allow'"),
    ({**GOOD, "id": "x", "unpriced_tier": None}, "models[1] (x).unpriced_tier: an unpriced tier must be refuse or strip"),
    ({**GOOD, "id": "x", "enabled": "yes"}, "models[1] (x).enabled: enabled must be true or false"),
    ({**GOOD, "id": "x", "upstream_model": "a b"}, "models[1] (x).upstream_model: an upstream model name must be"),
    ({**GOOD, "id": "bad id"}, "models[1] (bad id).id: a model id must be 1-128 characters"),
    ({**GOOD, "id": None}, 'models[1].id is required: a name such as "claude-sonnet"'),
    ({**GOOD, "id": "x", "long_context": {"usd_per_million": {"input": "6"}}},
     "models[1] (x).long_context.above_input_tokens must be a positive whole number, got None"),
    ({**GOOD, "id": "x", "service_tiers": {"default": {"usd_per_million": {"input": "6"}}}},
     "models[1] (x).service_tiers: 'default' is not a tier name that needs its own prices"),
    ({**GOOD, "id": "ok"}, "models[1] (ok).id: the model is listed twice (also models[0] (ok)); keep one"),
    ("gpt-5", "models[1] must be an object with id, upstream and usd_per_million"),
])
@pytest.mark.one_backend  # input checks no database can change
def test_a_bad_model_refuses_the_whole_file(upstreams, model, message):
    with pytest.raises(InvalidInput) as refused:
        load(json.dumps({"models": [GOOD, model]}))
    assert "has 1 error; nothing was changed:\n  " in str(refused.value)
    assert message in str(refused.value)
    assert db.session.scalar(select(CatalogModel)) is None and price_rows() == 0


@pytest.mark.parametrize("text, message", [
    ('{"models": [', "is not valid JSON: Expecting value at line 1 column 13"),
    ('[{"id": "x"}]', 'must be a JSON object {"models": [...]}'),
    ('{"models": [], "extra": 1}', 'must be a JSON object {"models": [...]}'),
    ('{"models": [{"id": "x", "upstream": "openai", "usd_per_million": {"input": "1", "input": "2", "output": "1"}}]}',
     "the key 'input' appears twice in one object; keep one"),
])
def test_a_file_that_is_not_a_price_file_is_refused(upstreams, text, message):
    with pytest.raises(InvalidInput) as refused:
        pricefile.parse_json(text, {"openai"})
    assert message in str(refused.value)


def test_every_error_is_listed(upstreams):
    bad = [{**GOOD, "id": f"m{i}", "upstream": "nope"} for i in range(25)]
    with pytest.raises(InvalidInput) as refused:
        load(json.dumps({"models": [GOOD, *bad]}))
    text = str(refused.value)
    assert text.startswith("the price file has 25 errors; nothing was changed:")
    assert "models[20] (m19).upstream" in text and "models[21]" not in text and "... and 5 more" in text


CSV_HEAD = "id,upstream,upstream_model,max_output_tokens,input,output"


@pytest.mark.parametrize("text, message", [
    (CSV_HEAD + ",cache_writes\nx,openai,,,1,2,3\n",
     "header: unknown column 'cache_writes' (columns: id, upstream, upstream_model"),
    (CSV_HEAD + ",tier:default:input\nx,openai,,,1,2,3\n", "header: unknown column 'tier:default:input'"),
    (CSV_HEAD + ",fee:Web Search\nx,openai,,,1,2,3\n", "header: unknown column 'fee:Web Search'"),
    (CSV_HEAD + ",input\nx,openai,,,1,2,3\n", "header: column 'input' appears twice; keep one"),
    ("id,upstream,input\nx,openai,1\n", "header: column 'output' is required"),
    (CSV_HEAD + "\nx,openai,,,1,2.5.0\n", "line 2 (x): column output must be a non-negative decimal number of USD"),
    (CSV_HEAD + "\nx,openai,,,1,\n", "line 2 (x): column output is empty; every model needs input and output prices"),
    (CSV_HEAD + "\nok,openai,,,1,2\nx,openai,,1e3,1,2\n", "line 3 (x): column max_output_tokens must be a whole number"),
    (CSV_HEAD + ",long_context:input\nx,openai,,,1,2,6\n",
     "line 2 (x): long_context:CLASS prices need long_context_above"),
    (CSV_HEAD + ",enabled\nx,openai,,,1,2,maybe\n", "line 2 (x): column enabled must be true or false"),
    (CSV_HEAD + "\nx,openai,,,1,2,3\n", "line 2 (x): 7 cells but the header names 6 columns"),
    (CSV_HEAD + ",unpriced_tier\nx,openai,,,1,2,allow\n", "line 2 (x).unpriced_tier: an unpriced tier must be"),
    (CSV_HEAD + "\nx,nope,,,1,2\n", "line 2 (x).upstream: no upstream named 'nope'"),
])
@pytest.mark.one_backend  # input checks no database can change
def test_a_bad_csv_price_list_is_refused_whole(upstreams, text, message):
    with pytest.raises(InvalidInput) as refused:
        load(text, "csv")
    assert message in str(refused.value)
    assert db.session.scalar(select(CatalogModel)) is None


def test_csv_empty_cells_are_unset_and_quoted_cells_and_blank_lines_are_fine(upstreams):
    text = CSV_HEAD + ",reasoning,enabled,context_window\n\n" '"m",openai,"up/m",2000,1,2,,no,\n'
    assert load(text, "csv") == [("m", "created")]
    model = catalog.find_model("m")
    assert (model.upstream_model, model.max_output_tokens, model.enabled, model.context_window) == \
        ("up/m", 2000, False, None)
    assert stored_price("m") == Price(input=1_000_000, output=2_000_000)


def test_the_old_cache_write_column_is_the_five_minute_write(upstreams):
    text = CSV_HEAD + ",cache_write,long_context_above,long_context:cache_write,tier:priority:cache_write\n" \
        "m,openai,,,3,15,3.75,100,7.50,5\n"
    assert load(text, "csv") == [("m", "created")]
    price = stored_price("m")
    assert (price.cache_write_5m, price.long_context, price.service_tiers) == (
        3_750_000, {"cache_write_5m": 7_500_000}, {"priority": {"cache_write_5m": 5_000_000}})


def test_import_file_by_suffix(upstreams, tmp_path):
    (tmp_path / "list.CSV").write_text("\ufeff" + CSV_HEAD + "\nm,openai,,,1,2\n", encoding="utf-8")
    with atomic():
        assert pricefile.import_file(tmp_path / "list.CSV") == [("m", "created")]  # the BOM is not a column
    (tmp_path / "list.txt").write_text("")
    with pytest.raises(InvalidInput, match="list.txt: a price file is a .json file or a .csv price list"):
        pricefile.import_file(tmp_path / "list.txt")
    (tmp_path / "latin.json").write_bytes(b'{"models": [{"id": "caf\xe9"}]}')
    with pytest.raises(InvalidInput, match="latin.json is not UTF-8 text"):
        pricefile.import_file(tmp_path / "latin.json")


def test_price_from_options():
    price = pricefile.price_from_options(
        {"input": "3", "output": "15", "cache_read": "0.30", "cache_write": "3.75", "cache_write_1h": "6",
         "reasoning": None},
        fees=["web_search=10"], long_context_above=200_000, long_context=["input=6", "cache-write-1h=12"],
        tiers=["priority:input=6", "priority:output=30", "flex:input=1.50"])
    assert price == Price(input=3_000_000, output=15_000_000, cache_read=300_000, cache_write_5m=3_750_000,
                          cache_write_1h=6_000_000, fees={"web_search": 10_000_000}, long_context_above=200_000,
                          long_context={"input": 6_000_000, "cache_write_1h": 12_000_000},
                          service_tiers={"priority": {"input": 6_000_000, "output": 30_000_000},
                                         "flex": {"input": 1_500_000}})


@pytest.mark.parametrize("classes, options, message", [
    ({"cache_write": "1", "cache_write_5m": "1"}, {}, "--cache-write is --cache-write-5m's old name; give one"),
    ({"cache_write_1h": "x"}, {}, "--cache-write-1h must be a non-negative decimal number of USD, got 'x'; write USD"),
    ({}, {"fees": ["web_search"]}, "--fee takes UNIT=USD, such as --fee web_search=10; got 'web_search'"),
    ({}, {"fees": ["Web=1"]}, "--fee Web: a unit is lower-case letters, digits and _"),
    ({}, {"fees": ["web_search=1", "web_search=2"]}, "--fee web_search is given twice"),
    ({}, {"fees": ["web_search=0.0000001"]}, "--fee web_search has more than 6 decimal places"),
    ({}, {"long_context": ["input=6"]}, "--long-context needs --long-context-above N"),
    ({}, {"long_context": ["audio=6"], "long_context_above": 10}, "--long-context: 'audio' is not a token class"),
    ({}, {"tiers": ["priority=2"]}, "--tier takes NAME:CLASS=USD, such as --tier priority:input=2.50; got priority=2"),
    ({}, {"tiers": ["standard:input=2"]}, "--tier standard: not a tier that needs its own prices"),
    ({}, {"tiers": ["priority:cached=2"]}, "--tier priority: 'cached' is not a token class"),
    ({}, {"tiers": ["priority:input=2", "priority:input=3"]}, "--tier priority:input is given twice"),
])
def test_price_options_errors_name_the_option(classes, options, message):
    with pytest.raises(InvalidInput) as refused:
        pricefile.price_from_options({"input": "1", "output": "2", **classes}, **options)
    assert message in str(refused.value)


def test_the_price_list_in_the_docs_imports_and_exports_back(upstreams):
    text = (DATA.parents[1] / "docs" / "prices" / "openai-anthropic.json").read_text()
    assert {outcome for _, outcome in load(text)} == {"created"}
    for spec in json.loads(text)["models"]:
        assert stored_price(spec["id"]) == price_from_spec(spec), spec["id"]
    assert {outcome for _, outcome in load(pricefile.export_json())} == {"unchanged"}


# -- routes: JSON only ----------------------------------------------------------------------------

@pytest.fixture
def spares(upstreams):
    with atomic():
        catalog.add_upstream("spare", "openai", "https://openrouter.ai/api/v1")
        catalog.add_upstream("backup", "openai", "https://llm.example/v1")
        catalog.add_upstream("echo", "echo")


def routes_now(public_id="m"):
    from portal import routes
    db.session.rollback()
    return sorted((r.upstream.name, r.upstream_model, r.priority, r.weight)
                  for r in routes.routes_of(catalog.find_model(public_id)))


ROUTED = {**GOOD, "id": "m", "upstream_model": "gpt-m", "routes": [
    {"upstream": "openai", "upstream_model": "gpt-m", "priority": 2, "weight": 1},
    {"upstream": "spare", "upstream_model": "openai/gpt-m", "priority": 1, "weight": 3},
    {"upstream": "backup", "priority": 5}]}


def test_routes_export_and_import_back(spares):
    assert load(json.dumps({"models": [ROUTED]})) == [("m", "created")]
    assert routes_now() == [("backup", "m", 5, 1), ("openai", "gpt-m", 2, 1), ("spare", "openai/gpt-m", 1, 3)]
    text = pricefile.export_json()
    exported = json.loads(text)["models"][0]["routes"]
    assert exported == [{"upstream": "spare", "upstream_model": "openai/gpt-m", "priority": 1, "weight": 3},
                        {"upstream": "openai", "upstream_model": "gpt-m", "priority": 2, "weight": 1},
                        {"upstream": "backup", "upstream_model": "m", "priority": 5, "weight": 1}]
    assert load(text) == [("m", "unchanged")]
    assert pricefile.export_json() == text
    # Restored on a catalog that lost them; a route the file does not list goes.
    with atomic():
        from portal import routes
        routes.remove_route("m", "backup")
        routes.update_route("m", "spare", weight=9)
    assert load(text) == [("m", "updated")]
    assert pricefile.export_json() == text
    fewer = {**ROUTED, "routes": ROUTED["routes"][:2]}
    assert load(json.dumps({"models": [fewer]})) == [("m", "updated")]
    assert routes_now() == [("openai", "gpt-m", 2, 1), ("spare", "openai/gpt-m", 1, 3)]
    # Its own upstream's route stays when the list leaves it out: [] keeps only it.
    assert load(json.dumps({"models": [{**ROUTED, "routes": []}]})) == [("m", "updated")]
    assert routes_now() == [("openai", "gpt-m", 2, 1)]


def test_a_file_without_routes_keeps_them_and_a_plain_model_exports_none(spares):
    load(json.dumps({"models": [ROUTED, {**GOOD, "id": "plain"}]}))
    before = routes_now()
    without = {key: value for key, value in ROUTED.items() if key != "routes"}
    assert load(json.dumps({"models": [without]})) == [("m", "unchanged")]
    assert routes_now() == before
    exported = {spec["id"]: spec for spec in pricefile.export()["models"]}
    assert "routes" not in exported["plain"] and "routes" in exported["m"]
    assert pricefile.has_routes(pricefile.export())
    # A CSV price list has no routes; importing one keeps them.
    assert [outcome for _, outcome in load(pricefile.export_csv(), "csv")] == ["unchanged", "unchanged"]
    assert routes_now() == before


def test_routes_may_mix_the_two_apis(spares):
    """A model on an OpenAI-style upstream may fail over to an Anthropic-style one: calls through it are translated."""
    mixed = {**ROUTED, "routes": [*ROUTED["routes"][:2], {"upstream": "anthropic", "upstream_model": "claude-m",
                                                          "priority": 3}]}
    assert load(json.dumps({"models": [mixed]})) == [("m", "created")]
    assert routes_now() == [("anthropic", "claude-m", 3, 1), ("openai", "gpt-m", 2, 1),
                            ("spare", "openai/gpt-m", 1, 3)]
    exported = pricefile.export()["models"][0]["routes"]
    assert {"upstream": "anthropic", "upstream_model": "claude-m", "priority": 3, "weight": 1} in exported


@pytest.mark.parametrize("listed, message", [
    ([{"upstream": "nope"}], "models[1] (m).routes[0].upstream: no upstream named 'nope'; add it first"),
    ([{"upstream": "echo"}], "models[1] (m).routes[0].upstream: 'echo' speaks echo, but 'm' is served by 'openai' "
                             "(openai); the built-in echo upstream shares no model's routes"),
    ([{"upstream": "spare"}, {"upstream": "spare"}], "models[1] (m).routes[1].upstream: 'spare' is listed twice"),
    ([{"upstream": "spare", "priority": -1}], "models[1] (m).routes[0].priority must be a whole number from 0 to"),
    ([{"upstream": "spare", "weight": 0}], "models[1] (m).routes[0].weight must be a whole number from 1 to"),
    ([{"upstream": "spare", "weight": "2"}], "models[1] (m).routes[0].weight must be a whole number"),
    ([{"upstream": "spare", "cost": 1}], "models[1] (m).routes[0]: unknown field 'cost'"),
    ([{"upstream": "spare", "upstream_model": "a b"}], "models[1] (m).routes[0].upstream_model must be 1-128"),
    ([{"upstream": "openai", "upstream_model": "other"}], "models[1] (m).routes[0].upstream_model: 'other' differs "
                                                          "from the model's upstream_model 'gpt-m'"),
    (["spare"], "models[1] (m).routes[0] must be an object with upstream"),
    ({"upstream": "spare"}, "models[1] (m).routes must be a list"),
])
@pytest.mark.one_backend  # input checks no database can change
def test_bad_routes_refuse_the_whole_file(spares, listed, message):
    with pytest.raises(InvalidInput) as refused:
        load(json.dumps({"models": [GOOD, {**ROUTED, "routes": listed}]}))
    assert "has 1 error; nothing was changed:\n  " in str(refused.value)
    assert message in str(refused.value)
    assert db.session.scalar(select(CatalogModel)) is None and price_rows() == 0


def test_a_route_csv_column_is_refused(upstreams):
    with pytest.raises(InvalidInput, match="header: unknown column 'routes'"):
        load(CSV_HEAD + ",routes\nx,openai,,,1,2,spare\n", "csv")
