"""The Statement page and its CSV and JSON downloads: logged-in only, and only ever the owner's entries."""
import csv
import io
import json

import pytest

from portal import ledger
from portal.database import atomic
from portal.models import EntryKind
from tests.factories import make_user

URLS = ["/statement/", "/statement/statement.csv", "/statement/statement.json", "/statement/?format=csv",
        "/statement/?format=json"]


def grant(user, amount, memo, reference=None):
    with atomic():
        ledger.credit(user.account.id, amount, EntryKind.GRANT, memo=memo, reference=reference)


def charge(user, cost):
    with atomic():
        hold_id = ledger.hold(user.account.id, cost)
    with atomic():
        ledger.settle(hold_id, cost, memo="echo-1 req_x")


@pytest.fixture
def two_people(client, auth):
    """The logged-in owner with a history, and someone else with entries of their own."""
    other = make_user("other@example.com")
    grant(other, 7_777_777, "Welcome, other person", reference="other-welcome")
    owner = auth.user()
    grant(owner, 3_000_000, "Welcome credit")
    charge(owner, 120_000)
    charge(owner, 30_000)
    return owner, other


@pytest.mark.parametrize("url", URLS)
def test_the_statement_needs_a_login(client, url):
    make_user()
    response = client.get(url)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_the_page_lists_rows_newest_first_with_running_balances(client, two_people):
    page = client.get("/statement/").get_data(as_text=True)
    assert page.index("Usage: 2 calls") < page.index("Credit: Welcome credit")
    for text in ("$3.00", "-$0.15", "$2.85", 'href="/statement/statement.csv"', 'href="/statement/statement.json"',
                 "hash chain", "python3 verify.py statement.json"):
        assert text in page
    assert "Welcome, other person" not in page and "$7.77" not in page and "other-welcome" not in page


def test_an_empty_statement_says_so(client, auth):
    auth.user()
    assert "Nothing yet" in client.get("/statement/").get_data(as_text=True)


@pytest.mark.parametrize("url", ["/statement/statement.csv", "/statement/?format=csv"])
def test_csv_download(client, two_people, url):
    response = client.get(url)
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="statement-')
    assert response.headers["Cache-Control"] == "private, no-store"
    body = response.get_data(as_text=True)
    lines = list(csv.DictReader(io.StringIO(body)))
    assert [(r["kind"], r["amount_micro_usd"], r["balance_micro_usd"], r["calls"]) for r in lines] == [
        ("grant", "3000000", "3000000", ""), ("charge", "-150000", "2850000", "2")]
    assert "other" not in body and "7777777" not in body


@pytest.mark.parametrize("url", ["/statement/statement.json", "/statement/?format=json"])
def test_json_download_carries_only_the_owners_chain(client, two_people, url):
    owner, other = two_people
    response = client.get(url)
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="statement-')
    assert response.headers["Content-Disposition"].endswith('.json"')
    document = json.loads(response.get_data(as_text=True))
    assert document["account_id"] == owner.account.id
    assert [e["amount"] for e in document["entries"]] == [3_000_000, -120_000, -30_000]
    assert document["chain_head"] == document["entries"][-1]["hash"]
    assert "Welcome, other person" not in response.get_data(as_text=True)


def test_each_person_sees_their_own(client, auth, two_people):
    auth.logout()
    auth.login("other@example.com")
    document = client.get("/statement/statement.json").get_json()
    assert [(e["amount"], e["memo"]) for e in document["entries"]] == [(7_777_777, "Welcome, other person")]
    assert "Welcome credit" not in client.get("/statement/").get_data(as_text=True)
