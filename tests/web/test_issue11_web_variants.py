"""Variants of issue 11's health checks, outages and console limits that its own tests do not try:
probes addressing the machine rather than the site, /status.json during an outage, odd numbers."""
import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Account, ApiKey
from tests.conftest import make_app
from tests.factories import make_user
from tests.web.test_limits_forms import own_key

MACHINE = "10.0.0.5:8000"  # how a load balancer's probe or a Prometheus target addresses one app server


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_health_and_metrics_answer_a_probe_addressed_to_the_machine(client, path):
    for host in (MACHINE, "app1.internal:8000"):
        answer = client.get(path, headers={"Host": host})
        assert answer.status_code == 200, (host, answer.get_data(as_text=True)[:200])
        assert client.head(path, headers={"Host": host}).status_code == 200
    assert client.post(path, headers={"Host": MACHINE}).status_code == 400  # only the probes' own methods


def test_metrics_for_any_host_still_wants_its_token(client, app):
    app.config["METRICS_TOKEN"] = "metrics-token-for-the-variants-0"
    assert client.get("/metrics", headers={"Host": MACHINE}).status_code == 401
    assert client.get("/metrics", headers={"Host": MACHINE,
                                            "Authorization": "Bearer metrics-token-for-the-variants-0"}).status_code == 200


def test_other_pages_still_refuse_an_unknown_host(client):
    for path in ("/", "/pricing", "/healthz/", "/readyz.json"):
        answer = client.get(path, headers={"Host": MACHINE})
        assert answer.status_code == 400 and "Wrong address" in answer.get_data(as_text=True), path


def test_status_json_answers_json_while_the_database_is_unreachable(database, tmp_path):
    app = make_app(database, tmp_path, SQLALCHEMY_DATABASE_URI="postgresql+psycopg://tollgate@127.0.0.1:9/x",
                   SQLALCHEMY_ENGINE_OPTIONS={"connect_args": {"connect_timeout": 2}})
    answer = app.test_client().get("/status.json")
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
    assert answer.is_json and answer.get_json()["status"] == "unavailable"
    page = app.test_client().get("/status")
    assert page.status_code == 503 and "Temporarily unavailable" in page.get_data(as_text=True)
    app.extensions["tollgate.gateway"].close()


@pytest.mark.parametrize("data", [{"rpm": "²"}, {"tpm": "9" * 5000}, {"concurrency": "9" * 16},
                                  {"target": "²", "rpm": "5"}, {"target": "9" * 30, "rpm": "5"},
                                  {"target": "9" * 5000, "rpm": "5"}])
def test_console_limits_refuse_numbers_it_cannot_use_with_a_message(client, auth, data):
    auth.admin()
    user = make_user("bob@example.com")
    own_key(user)
    answer = client.post(f"/admin/users/{user.id}/limits", data={**data, "reason": "variants"})
    assert answer.status_code == 422, answer.status_code
    text = answer.get_data(as_text=True)
    assert "not a whole number" in text or "Choose the account or one of this person" in text
    db.session.rollback()
    account = db.session.scalar(select(Account).where(Account.user_id == user.id))
    key = db.session.scalar(select(ApiKey).where(ApiKey.user_id == user.id))
    assert (account.rpm_limit, account.tpm_limit, account.concurrency_limit, key.rpm_limit) == (None, None, None, None)
