"""`upstreams` with dialects, and `models set / list / import / export` with every way providers bill."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from portal import catalog
from portal.extensions import db
from portal.models import CatalogModel, Upstream
from portal.pricing import PRICE_FIELDS, Price, price_from_spec
from tests.cli.test_cli import ok, refused
from tests.factories import price_rows, stored_price

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
PUBLISHED = {spec["id"]: spec for spec in json.loads((DATA / "published-prices.json").read_text())["models"]}

# The same published lists, typed as an operator would.
SET_ARGS = {
    "gpt-5": ["--upstream", "openai", "--upstream-model", "gpt-5", "--max-output-tokens", "128000",
              "--input", "1.25", "--output", "10", "--cache-read", "0.125",
              "--tier", "priority:input=2.50", "--tier", "priority:output=20", "--tier", "priority:cache_read=0.25",
              "--tier", "flex:input=0.625", "--tier", "flex:output=5", "--tier", "flex:cache-read=0.0625",
              "--context-window", "400000", "--unpriced-tier", "strip"],
    "o3": ["--upstream", "openai", "--max-output-tokens", "100000", "--input", "2", "--output", "8",
           "--cache-read", "0.50"],
    "gpt-audio": ["--upstream", "openai", "--max-output-tokens", "16384", "--input", "2.50", "--output", "10",
                  "--input-audio", "32", "--output-audio", "64"],
    "claude-sonnet": ["--upstream", "anthropic", "--upstream-model", "claude-sonnet-4-5", "--max-output-tokens", "64000",
                      "--input", "3", "--output", "15", "--cache-read", "0.30", "--cache-write", "3.75",
                      "--cache-write-1h", "6", "--fee", "web_search=10",
                      "--long-context-above", "200000", "--long-context", "input=6", "--long-context", "output=22.50",
                      "--long-context", "cache_read=0.60", "--long-context", "cache_write_5m=7.50",
                      "--long-context", "cache_write_1h=12", "--context-window", "1000000",
                      "--tool-calls-ceiling", "20"],
    "claude-haiku": ["--upstream", "anthropic", "--upstream-model", "claude-haiku-4-5", "--max-output-tokens", "64000",
                     "--input", "1", "--output", "5", "--cache-read", "0.10", "--cache-write-5m", "1.25",
                     "--cache-write-1h", "2", "--input-by-reference", "refuse"],
}


@pytest.fixture
def upstreams(cli):
    ok(cli("upstreams", "add", "openai", "--protocol", "openai", "--base-url", "https://api.openai.com/v1"))
    ok(cli("upstreams", "add", "anthropic", "--protocol", "anthropic", "--base-url", "https://api.anthropic.com"))


def test_models_set_enters_published_lists_exactly(upstreams, cli):
    for public_id, args in SET_ARGS.items():
        assert "new price recorded" in ok(cli("models", "set", public_id, *args))
        assert stored_price(public_id) == price_from_spec(PUBLISHED[public_id]), public_id
    for public_id, args in SET_ARGS.items():  # the same again: no new history
        assert "price unchanged" in ok(cli("models", "set", public_id, *args))
    assert price_rows() == len(SET_ARGS)
    exported = {spec["id"]: spec for spec in json.loads(ok(cli("models", "export")))["models"]}
    for public_id, spec in PUBLISHED.items():  # the model's settings as the file has them
        settings = {key: value for key, value in spec.items() if key not in PRICE_FIELDS}
        assert {key: exported[public_id][key] for key in settings} == settings
        assert price_from_spec(exported[public_id]) == price_from_spec(spec)


def test_models_set_replaces_the_price_whole_and_keeps_settings(upstreams, cli):
    ok(cli("models", "set", "claude-sonnet", *SET_ARGS["claude-sonnet"]))
    out = ok(cli("models", "set", "claude-sonnet", "--upstream", "anthropic", "--input", "3", "--output", "15"))
    assert "new price recorded" in out
    assert stored_price("claude-sonnet") == Price(input=3_000_000, output=15_000_000)
    model = catalog.find_model("claude-sonnet")
    assert (model.upstream_model, model.max_output_tokens, model.context_window, model.tool_calls_ceiling) == \
        ("claude-sonnet-4-5", 64_000, 1_000_000, 20)
    out = ok(cli("models", "set", "claude-sonnet", "--upstream", "anthropic", "--input", "3", "--output", "15",
                 "--input-by-reference", "refuse", "--unpriced-tier", "strip", "--tool-calls-ceiling", "0"))
    assert "price unchanged" in out and price_rows() == 2
    db.session.rollback()
    model = catalog.find_model("claude-sonnet")
    assert (model.input_by_reference, model.unpriced_tier, model.tool_calls_ceiling, model.context_window) == \
        ("refuse", "strip", 0, 1_000_000)


@pytest.mark.parametrize("args, message", [
    (["--cache-write", "1", "--cache-write-5m", "1"], "--cache-write is --cache-write-5m's old name; give one of them"),
    (["--cache-write-1h", "six"], "--cache-write-1h must be a non-negative decimal number of USD, got 'six'"),
    (["--reasoning", "0.0000001"], "--reasoning has more than 6 decimal places"),
    (["--fee", "web_search"], "--fee takes UNIT=USD, such as --fee web_search=10; got 'web_search'"),
    (["--long-context", "input=6"], "--long-context needs --long-context-above N"),
    (["--long-context-above", "0"], "Invalid value for '--long-context-above'"),
    (["--tier", "priority=2"], "--tier takes NAME:CLASS=USD, such as --tier priority:input=2.50"),
    (["--tier", "default:input=2"], "--tier default: not a tier that needs its own prices"),
    (["--context-window", "0"], "Invalid value for '--context-window'"),
    (["--input-by-reference", "allow"], "Invalid value for '--input-by-reference'"),
    (["--unpriced-tier", "charge"], "Invalid value for '--unpriced-tier'"),
    (["--tool-calls-ceiling", "-1"], "Invalid value for '--tool-calls-ceiling'"),
])
@pytest.mark.one_backend  # input checks no database can change
def test_models_set_errors_name_the_option(upstreams, cli, args, message):
    refused(cli("models", "set", "m", "--upstream", "openai", "--input", "1", "--output", "2", *args), message)
    assert db.session.scalar(select(CatalogModel)) is None


def test_models_list_shows_every_price_and_setting(upstreams, cli):
    for public_id in ("claude-sonnet", "gpt-5", "gpt-audio"):
        ok(cli("models", "set", public_id, *SET_ARGS[public_id]))
    listing = ok(cli("models", "list"))
    assert ("claude-sonnet\tenabled\tanthropic/claude-sonnet-4-5\tmax_out=64000\tcontext_window=1,000,000"
            "\tinput_by_reference=hold\tunpriced_tier=refuse\ttool_calls_ceiling=20\n"
            "  per million: input=$3.00 output=$15.00 cache_read=$0.30 cache_write_5m=$3.75 cache_write_1h=$6.00\n"
            "  unset: input_audio output_audio unpriced (charged the highest input-side price); reasoning as output\n"
            "  per thousand: web_search=$10.00\n"
            "  above 200,000 input tokens: input=$6.00 output=$22.50 cache_read=$0.60 cache_write_5m=$7.50 "
            "cache_write_1h=$12.00\n") in listing
    assert ("gpt-5\tenabled\topenai/gpt-5\tmax_out=128000\tcontext_window=400,000\tinput_by_reference=hold"
            "\tunpriced_tier=strip\ttool_calls_ceiling=default\n"
            "  per million: input=$1.25 output=$10.00 cache_read=$0.125\n") in listing
    assert ("  tier flex: input=$0.625 output=$5.00 cache_read=$0.0625\n"
            "  tier priority: input=$2.50 output=$20.00 cache_read=$0.25\n") in listing
    assert ("gpt-audio\tenabled\topenai/gpt-audio\tmax_out=16384\tcontext_window=200,000 (default)") in listing
    assert ("  per million: input=$2.50 output=$10.00 input_audio=$32.00 output_audio=$64.00\n"
            "  unset: cache_read cache_write_5m cache_write_1h as input; reasoning as output\n") in listing


def test_models_import_and_export(upstreams, cli, tmp_path):
    out = ok(cli("models", "import", str(DATA / "published-prices.json")))
    assert out == "".join(f"{public_id}\tcreated\n" for public_id in PUBLISHED)
    for public_id, spec in PUBLISHED.items():
        assert stored_price(public_id) == price_from_spec(spec), public_id
    rows = price_rows()
    ok(cli("models", "export", str(tmp_path / "catalog.json")))
    exported = (tmp_path / "catalog.json").read_text()
    assert exported == ok(cli("models", "export"))
    assert ok(cli("models", "import", str(tmp_path / "catalog.json"))) == \
        "".join(f"{public_id}\tunchanged\n" for public_id in sorted(PUBLISHED))  # export is in id order
    assert price_rows() == rows
    # The CSV list of the same prices changes nothing either.
    assert ok(cli("models", "import", str(DATA / "published-prices.csv"))).count("\tunchanged\n") == 5
    assert price_rows() == rows


def test_models_import_refuses_a_bad_file_whole(upstreams, cli, tmp_path):
    models = [dict(spec) for spec in PUBLISHED.values()]
    models[2]["usd_per_million"] = {"input": 2.5, "output": "10"}
    models[4]["upstream"] = "bedrock"
    (tmp_path / "bad.json").write_text(json.dumps({"models": models}))
    result = cli("models", "import", str(tmp_path / "bad.json"))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: bad.json has 2 errors; nothing was changed:",
        '  models[2] (gpt-audio).usd_per_million.input must be a decimal string such as "2.50", got 2.5',
        "  models[4] (claude-haiku).upstream: no upstream named 'bedrock'; add it first "
        "(flask --app wsgi upstreams add bedrock --protocol ... --base-url ...)",
    ]
    assert db.session.scalar(select(CatalogModel)) is None
    (tmp_path / "prices.xlsx").write_text("")
    refused(cli("models", "import", str(tmp_path / "prices.xlsx")), "a price file is a .json file or a .csv price list")


def test_real_flask_models_import(tmp_path):
    """`flask --app wsgi models import` as operators run it, in its own process, and export back."""
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}", SECRET_KEY="x")
    env.pop("PORTAL_ENV", None)

    def flask(*args):
        return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    assert flask("db", "upgrade").returncode == 0
    assert flask("upstreams", "add", "openai", "--protocol", "openai", "--base-url", "https://api.openai.com/v1").returncode == 0
    assert flask("upstreams", "add", "anthropic", "--protocol", "anthropic", "--base-url", "https://api.anthropic.com").returncode == 0
    imported = flask("models", "import", str(DATA / "published-prices.json"))
    assert imported.returncode == 0 and imported.stdout.count("\tcreated\n") == 5, imported.stderr
    exported = flask("models", "export")
    assert exported.returncode == 0
    assert {spec["id"]: price_from_spec(spec) for spec in json.loads(exported.stdout)["models"]} == \
        {public_id: price_from_spec(spec) for public_id, spec in PUBLISHED.items()}


# -- upstreams and their dialects -----------------------------------------------------------------

def dialects() -> dict:
    db.session.rollback()
    return {u.name: u.dialect for u in db.session.scalars(select(Upstream))}


def test_upstream_dialects_are_guessed_from_the_host_or_given(cli):
    for name, protocol, url in [("oai", "openai", "https://api.openai.com/v1"), ("ds", "openai", "https://api.deepseek.com"),
                                ("qwen", "openai", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
                                ("kimi", "openai", "https://api.moonshot.ai/v1"), ("grok", "openai", "https://api.x.ai/v1"),
                                ("or", "openai", "https://openrouter.ai/api/v1"), ("local", "openai", "http://127.0.0.1:8000/v1"),
                                ("claude", "anthropic", "https://api.anthropic.com")]:
        private = ["--allow-private-host"] if name == "local" else []
        assert "dialect " in ok(cli("upstreams", "add", name, "--protocol", protocol, "--base-url", url, *private))
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    out = ok(cli("upstreams", "add", "proxy", "--protocol", "openai", "--base-url", "https://llm.example/v1",
                 "--dialect", "openrouter"))
    assert out.strip() == "added upstream proxy (openai, https://llm.example/v1, dialect openrouter)"
    assert dialects() == {"oai": "openai", "ds": "deepseek", "qwen": "dashscope", "kimi": "moonshot", "grok": "xai",
                          "or": "openrouter", "local": "generic-openai", "claude": "anthropic", "echo": "echo",
                          "proxy": "openrouter"}
    listing = ok(cli("upstreams", "list"))
    assert "ds\topenai\thttps://api.deepseek.com\tno credential\tdialect deepseek\n" in listing
    assert "echo\techo\t-\tno credential\tdialect echo\n" in listing


def test_upstreams_update_dialect(cli):
    ok(cli("upstreams", "add", "gw", "--protocol", "openai", "--base-url", "https://api.openai.com/v1", "--api-key", "k"))
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    out = ok(cli("upstreams", "update", "gw", "--dialect", "xai"))  # the dialect alone is a change
    assert out.strip() == ("updated upstream gw (https://api.openai.com/v1, dialect xai, credential set, "
                           "chat completions only (dialect xai))")  # xai has no Responses API
    ok(cli("upstreams", "update", "gw", "--base-url", "https://api.deepseek.com"))
    assert dialects()["gw"] == "xai"  # chosen by the operator: kept
    ok(cli("upstreams", "update", "gw", "--dialect", "deepseek"))
    ok(cli("upstreams", "update", "gw", "--base-url", "https://openrouter.ai/api/v1"))
    assert dialects()["gw"] == "openrouter"  # it was the guess for the old URL: guessed again
    ok(cli("upstreams", "update", "echo", "--dialect", "echo"))
    refused(cli("upstreams", "update", "echo", "--dialect", "openai"),
            "the dialect of an echo upstream must be one of echo, got 'openai'")
    refused(cli("upstreams", "update", "gw", "--dialect", "echo"),
            "the dialect of an openai upstream must be one of anthropic, openai, deepseek, dashscope, moonshot, xai, "
            "openrouter, generic-openai, got 'echo'")
    refused(cli("upstreams", "update", "gw", "--dialect", "mistral"), "Invalid value for '--dialect'")
    refused(cli("upstreams", "add", "x", "--protocol", "echo", "--dialect", "openai"),
            "the dialect of an echo upstream must be one of echo")
    refused(cli("upstreams", "update", "gw"), "nothing to change: give --base-url, --api-key and/or --dialect")
    assert dialects() == {"gw": "openrouter", "echo": "echo"}


def test_models_flagged_counts_what_the_operator_never_priced(cli):
    from tests.factories import make_user
    from tests.web.test_receipt_classes import rich_call

    assert ok(cli("models", "flagged")) == "no flagged calls in the past 30 days\n"
    make_user(credit=10_000_000)
    rich_call()
    rich_call()
    lines = ok(cli("models", "flagged", "--days", "1")).splitlines()
    # output audio and mystery_tool have no price; the meter's note is passed on as it came.
    assert sorted(line.split("\t")[3] for line in lines) == [
        "total_tokens guard: +0 reasoning", "unpriced class: output_audio", "unpriced unit: mystery_tool"]
    assert all(line.startswith("sonnet-rich\t2 calls\tlast ") for line in lines)
    refused(cli("models", "flagged", "--days", "0"), "0")


# -- future prices, history, withdrawal, cost prices, the audit log (issue 10) --------------------

def audit_actions() -> list[tuple[str, str]]:
    from portal.models import AuditEntry
    db.session.rollback()
    return [(e.action, e.actor) for e in db.session.scalars(select(AuditEntry).where(AuditEntry.target_type == "model")
                                                            .order_by(AuditEntry.id))]


def test_models_set_effective_later_history_and_cancel_change(upstreams, cli):
    import getpass
    from datetime import timedelta

    from portal.models import utcnow

    ok(cli("models", "set", "o3", *SET_ARGS["o3"]))
    moment = (utcnow() + timedelta(days=10)).replace(microsecond=0)
    iso = moment.isoformat().replace("+00:00", "Z")
    out = ok(cli("models", "set", "o3", "--upstream", "openai", "--input", "3", "--output", "9", "--effective", iso,
                 "--reason", "supplier rise"))
    assert out.strip() == f"model o3 -> openai/o3; new price recorded, effective {moment:%Y-%m-%d %H:%M} UTC"
    assert stored_price("o3") == price_from_spec(PUBLISHED["o3"])  # not yet
    refused(cli("models", "set", "o3", "--upstream", "openai", "--input", "3", "--output", "9",
                "--effective", "2001-01-01T00:00:00Z"), "2001-01-01 00:00 UTC has passed")
    refused(cli("models", "set", "o3", "--upstream", "openai", "--input", "3", "--output", "9",
                "--effective", "2031-01-01T00:00"), "has no timezone")
    listing = ok(cli("models", "list"))
    assert f"  from {moment:%Y-%m-%d %H:%M} UTC (price 2): per million: input=$3.00 output=$9.00" in listing
    history = ok(cli("models", "prices", "o3")).splitlines()
    assert history[0] == f"2\tfrom {moment:%Y-%m-%d %H:%M} UTC\tupcoming"
    assert history[1] == "  per million: input=$3.00 output=$9.00"
    assert history[3].startswith("1\tfrom ") and history[3].endswith("\tin force")
    # Withdrawal: a reason is required; the row stays, marked withdrawn; twice is refused.
    refused(cli("models", "cancel-change", "o3"), "Missing option '--reason'")
    out = ok(cli("models", "cancel-change", "o3", "--reason", "supplier backed down"))
    assert out.strip() == f"withdrew the price change 2 of o3 (it was to take effect {moment:%Y-%m-%d %H:%M} UTC)"
    assert "\twithdrawn " in ok(cli("models", "prices", "o3")).splitlines()[0]
    refused(cli("models", "cancel-change", "o3", "--reason", "x"), "o3 has no price change planned; nothing changed")
    refused(cli("models", "cancel-change", "o3", "2", "--reason", "x"), "was withdrawn already")
    refused(cli("models", "cancel-change", "o3", "1", "--reason", "x"), "took effect on")
    # Two planned: name the one.
    for days in (20, 30):
        later = (utcnow() + timedelta(days=days)).isoformat()
        ok(cli("models", "set", "o3", "--upstream", "openai", "--input", str(days), "--output", "9", "--effective", later))
    refused(cli("models", "cancel-change", "o3", "--reason", "x"), "o3 has 2 price changes planned (ids 3, 4)")
    ok(cli("models", "cancel-change", "o3", "4", "--reason", "x"))
    assert price_rows() == 4
    login = f"cli:{getpass.getuser()}"
    assert audit_actions() == [("model.create", login), ("model.price", login), ("model.price_withdraw", login),
                               ("model.price", login), ("model.price", login), ("model.price_withdraw", login)]


def test_models_enable_disable_say_when_nothing_changed_and_are_audited(upstreams, cli):
    ok(cli("models", "set", "o3", *SET_ARGS["o3"]))
    assert ok(cli("models", "disable", "o3", "--reason", "retired")) == "disabled o3\n"
    assert ok(cli("models", "disable", "o3")) == "o3 was disabled already; nothing changed\n"
    assert ok(cli("models", "enable", "o3")) == "enabled o3\n"
    assert ok(cli("models", "enable", "o3")) == "o3 was enabled already; nothing changed\n"
    assert [action for action, _ in audit_actions()] == ["model.create", "model.disable", "model.enable"]
    refused(cli("models", "disable", "nope"), "no model named 'nope'")


def test_models_cost_sets_shows_and_clears_the_cost_price(upstreams, cli):
    ok(cli("models", "set", "claude-sonnet", *SET_ARGS["claude-sonnet"]))
    out = ok(cli("models", "cost", "claude-sonnet", "--input", "2.10", "--output", "10.5", "--cache-read", "0.21",
                 "--tier", "priority:input=4", "--reason", "contract"))
    assert out == "cost price of claude-sonnet recorded\n"
    assert catalog.cost_price_of(catalog.find_model("claude-sonnet")) == Price(
        input=2_100_000, output=10_500_000, cache_read=210_000, service_tiers={"priority": {"input": 4_000_000}})
    assert "  cost per million: input=$2.10 output=$10.50 cache_read=$0.21" in ok(cli("models", "list"))
    assert "cost price (what you pay upstream)" in ok(cli("models", "prices", "claude-sonnet"))
    assert "nothing changed" in ok(cli("models", "cost", "claude-sonnet", "--input", "2.1", "--output", "10.50",
                                       "--cache-read", "0.21", "--tier", "priority:input=4"))
    refused(cli("models", "cost", "claude-sonnet", "--input", "1"), "give --input and --output")
    refused(cli("models", "cost", "claude-sonnet", "--input", "x", "--output", "1"), "--input must be a non-negative")
    assert ok(cli("models", "cost", "claude-sonnet", "--clear")) == "cost price of claude-sonnet cleared\n"
    db.session.rollback()
    assert catalog.find_model("claude-sonnet").cost_price is None
    assert [action for action, _ in audit_actions()].count("model.cost_price") == 2


def test_models_export_csv_imports_back_unchanged_and_import_can_wait(upstreams, cli, tmp_path):
    from datetime import timedelta

    from portal.models import utcnow

    ok(cli("models", "import", str(DATA / "published-prices.json")))
    rows = price_rows()
    ok(cli("models", "export", str(tmp_path / "list.csv")))
    text = (tmp_path / "list.csv").read_text()
    assert text.splitlines()[0].startswith("id,upstream,upstream_model,max_output_tokens,input,output,cache_read,")
    assert ok(cli("models", "import", str(tmp_path / "list.csv"))).count("\tunchanged\n") == len(PUBLISHED)
    assert price_rows() == rows
    moment = (utcnow() + timedelta(days=1)).replace(microsecond=0)
    (tmp_path / "rise.csv").write_text("id,upstream,input,output\no3,openai,4,16\n")
    assert ok(cli("models", "import", str(tmp_path / "rise.csv"), "--effective", moment.isoformat())) == \
        "o3\tnew price\n"
    assert stored_price("o3") == price_from_spec(PUBLISHED["o3"])
    assert [r.effective_at for r in catalog.upcoming_prices(catalog.find_model("o3").id)] == [moment]
    refused(cli("models", "import", str(tmp_path / "rise.csv"), "--effective", "2001-01-01T00:00:00+00:00"),
            "has passed")


def test_models_import_restores_routes_audited_and_csv_export_says_it_has_none(upstreams, cli, tmp_path):
    from portal.models import AuditEntry
    ok(cli("upstreams", "add", "spare", "--protocol", "openai", "--base-url", "https://openrouter.ai/api/v1"))
    routed = {"id": "m", "upstream": "openai", "usd_per_million": {"input": "1", "output": "2"},
              "routes": [{"upstream": "spare", "upstream_model": "openai/m", "priority": 2, "weight": 3}]}
    (tmp_path / "routed.json").write_text(json.dumps({"models": [routed]}))
    assert ok(cli("models", "import", str(tmp_path / "routed.json"), "--reason", "failover")) == "m\tcreated\n"
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "model.route_add"))
    assert (entry.reason, entry.after["upstream"], entry.after["weight"]) == ("failover", "spare", 3)
    exported = json.loads(ok(cli("models", "export")))["models"][0]["routes"]
    assert {"upstream": "spare", "upstream_model": "openai/m", "priority": 2, "weight": 3} in exported
    result = cli("models", "export", str(tmp_path / "catalog.csv"))
    assert result.exit_code == 0 and "a CSV price list has no routes" in result.output
    # A route to an upstream of the other API is imported (calls through it are translated); the echo
    # upstream shares no model's routes.
    mixed = {**routed, "routes": [{"upstream": "anthropic", "upstream_model": "claude-m", "priority": 2}]}
    (tmp_path / "mixed.json").write_text(json.dumps({"models": [mixed]}))
    assert ok(cli("models", "import", str(tmp_path / "mixed.json"))) == "m\tupdated\n"
    assert "anthropic\tclaude-m\tpriority 2\tweight 1 [speaks anthropic: calls are translated]" in ok(
        cli("models", "route", "list", "m"))
    ok(cli("upstreams", "add", "echo", "--protocol", "echo"))
    (tmp_path / "bad.json").write_text(json.dumps({"models": [{**routed, "routes": [{"upstream": "echo"}]}]}))
    refused(cli("models", "import", str(tmp_path / "bad.json")), "the built-in echo upstream shares no model's routes")
