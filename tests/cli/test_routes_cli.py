"""`flask models route list|add|set|remove`: a model's upstreams, audited, refused when they cannot work."""
import pytest
from sqlalchemy import select

from portal import catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import AuditEntry, CatalogModel
from portal.pricing import Price
from tests.cli.helpers import ok, refused


@pytest.fixture
def model(app):
    with atomic():
        catalog.add_upstream("main", "openai", "https://api.openai.com/v1", "sk-main")
        catalog.add_upstream("spare", "openai", "https://openrouter.ai/api/v1", "sk-spare")
        catalog.add_upstream("claude", "anthropic", "https://api.anthropic.com", "sk-claude")
        catalog.set_model("gpt-x", "main", Price(input=1_000_000, output=2_000_000), upstream_model="gpt-x-main")
    return "gpt-x"


def audit_actions():
    db.session.rollback()
    return [(e.action, e.reason) for e in db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_a_model_starts_with_its_own_upstream(cli, model):
    assert ok(cli("models", "route", "list", model)).splitlines() == [
        "main\tgpt-x-main\tpriority 1\tweight 1 (the model's own upstream)"]


def test_add_set_and_remove_a_route(cli, model):
    out = ok(cli("models", "route", "add", model, "spare", "--upstream-model", "openai/gpt-x", "--priority", "2",
                 "--weight", "3", "--reason", "a fallback"))
    assert "served by spare as openai/gpt-x (priority 2, weight 3)" in out
    assert ok(cli("models", "route", "list", model)).splitlines()[1] == "spare\topenai/gpt-x\tpriority 2\tweight 3"
    ok(cli("models", "route", "set", model, "spare", "--priority", "1", "--reason", "share the load"))
    assert "spare\topenai/gpt-x\tpriority 1\tweight 3" in ok(cli("models", "route", "list", model))
    ok(cli("models", "route", "remove", model, "main", "--reason", "main is gone"))
    assert ok(cli("models", "route", "list", model)).splitlines() == [
        "spare\topenai/gpt-x\tpriority 1\tweight 3 (the model's own upstream)"]
    db.session.rollback()
    owned = db.session.scalar(select(CatalogModel).where(CatalogModel.public_id == model))
    assert (owned.upstream.name, owned.upstream_model) == ("spare", "openai/gpt-x")
    assert audit_actions()[-3:] == [("model.route_add", "a fallback"), ("model.route_update", "share the load"),
                                    ("model.route_remove", "main is gone")]


def test_a_route_to_an_upstream_of_the_other_api_is_translated(cli, model):
    out = ok(cli("models", "route", "add", model, "claude", "--upstream-model", "claude-x", "--priority", "2",
                 "--reason", "a fallback of the other kind"))
    assert "served by claude as claude-x (priority 2, weight 1); claude speaks anthropic: calls through it are " \
           "translated;" in out
    assert ok(cli("models", "route", "list", model)).splitlines() == [
        "main\tgpt-x-main\tpriority 1\tweight 1 (the model's own upstream)",
        "claude\tclaude-x\tpriority 2\tweight 1 [speaks anthropic: calls are translated]"]
    assert audit_actions()[-1] == ("model.route_add", "a fallback of the other kind")


def test_refusals(cli, model):
    with atomic():
        catalog.add_upstream("echo", "echo")
    refused(cli("models", "route", "add", model, "echo"), "the built-in echo upstream answers for no real model")
    refused(cli("models", "route", "add", model, "main"), "already")
    refused(cli("models", "route", "add", model, "nowhere"), "no upstream named 'nowhere'")
    refused(cli("models", "route", "remove", model, "main"), "only upstream")
    refused(cli("models", "route", "set", model, "spare", "--weight", "2"), "has no route")
    assert cli("models", "route", "add", model, "spare", "--weight", "0").exit_code != 0


def test_models_set_moves_the_own_route_to_a_new_upstream(cli, model):
    ok(cli("models", "route", "add", model, "spare", "--priority", "5"))
    ok(cli("models", "set", model, "--upstream", "spare", "--input", "1", "--output", "2"))
    assert ok(cli("models", "route", "list", model)).splitlines() == [
        "spare\tgpt-x-main\tpriority 5\tweight 1 (the model's own upstream)"]
