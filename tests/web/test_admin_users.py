"""Console: the users list and a person's page, and the actions on them (suspend, unsuspend,
terminate, adjust the balance, resend verification, revoke a key), through the real forms."""
import pytest
from sqlalchemy import func, select

from portal import apikeys, calls, catalog, legal, users
from portal.database import atomic
from portal.errors import AccountSuspended, KeyRevoked
from portal.errors import UnknownUpstream
from portal.extensions import db
from portal.models import ApiKey, AuditEntry, LedgerEntry, LegalKind, User, UserSession
from portal.pricing import Price, Usage
from tests.factories import make_user
from tests.web.helpers import outbox, publish_terms


def calls_from(email, addresses, key_name="main"):
    """Real calls through the money path (hold, settle, record), one from each client address."""
    with atomic():
        user = users.find_user(email)
        try:
            catalog.find_upstream("echo")
        except UnknownUpstream:
            catalog.add_upstream("echo", "echo")
        catalog.set_model("echo-1", "echo", Price(input=1_000_000, output=2_000_000))
        key, plaintext = apikeys.issue(user, key_name)
        key_id = key.id
    caller = apikeys.authenticate(plaintext)
    model = catalog.serving_model("echo-1")
    for ip in addresses:
        call = calls.open_call(calls.new_request_id(), caller, model, Usage(input=100, output=10),
                               calls.Bounds(input=1_000, output=100), client_ip=ip, route="chat", streamed=False)
        calls.close_call(call, calls.Outcome("ok", Usage(input=100, output=10), False, 200, duration_ms=5))
    return key_id, plaintext


def uid(email) -> int:
    db.session.rollback()
    return users.find_user(email).id


def entries(action=None):
    db.session.rollback()
    query = select(AuditEntry).order_by(AuditEntry.id)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(db.session.scalars(query))


def fresh(user_id) -> User:
    db.session.rollback()
    return db.session.get(User, user_id)


def test_search_by_email_substring_any_case_and_paginated(client, auth):
    auth.admin()
    for i in range(55):
        make_user(f"Person{i:02d}@Example.com")
    make_user("other@elsewhere.org")
    page = client.get("/admin/users?q=EXAMPLE.COM").get_data(as_text=True)
    assert page.count("/admin/users/") >= 50 and "other@elsewhere.org" not in page
    assert 'rel="next"' in page and "q=EXAMPLE.COM" in page.split('rel="next"')[0].rsplit("href", 1)[1]
    second = client.get("/admin/users?q=example.com&page=2").get_data(as_text=True)
    assert "Person00@Example.com" in second and 'rel="next"' not in second
    only = client.get("/admin/users?q=ELSEWHERE").get_data(as_text=True)
    assert "other@elsewhere.org" in only and "Person01" not in only
    # A LIKE wildcard typed in the search is a plain character.
    assert "No user's email contains" in client.get("/admin/users?q=%25_").get_data(as_text=True)


def test_the_page_of_a_person_shows_what_the_operator_needs(client, auth):
    auth.admin()
    user = make_user("alice@example.com", credit=5_000_000)
    publish_terms("v7")
    with atomic():
        legal.accept(db.session.get(User, user.id), legal.current(LegalKind.TERMS), "192.0.2.1")
    key_id, _ = calls_from("alice@example.com", ["198.51.100.7", "198.51.100.7", "203.0.113.9"], key_name="laptop")
    calls_from("alice@example.com", ["2001:db8::5"], key_name="server")
    page = client.get(f"/admin/users/{uid('alice@example.com')}").get_data(as_text=True)
    assert "alice@example.com" in page and 'data-testid="status"' in page and "active" in page
    assert "laptop" in page and "server" in page
    laptop_row = page.split("laptop")[1].split("</tr>")[0]
    assert laptop_row.count("198.51.100.7") == 1 and "2 calls" in laptop_row and "203.0.113.9" in laptop_row
    assert "2001:db8::5" not in laptop_row
    assert "terms version v7" in page and "192.0.2.1" in page
    assert "Paid, past 12 months" in page and "Statement (recent)" in page and "Credit: test credit" in page
    assert page.count("echo-1") >= 4  # recent calls
    assert client.get("/admin/users/999999").status_code == 404


def test_suspend_mails_ends_sessions_refuses_keys_and_is_audited(app, client, auth):
    admin_id = auth.admin().id
    make_user("bob@example.com", credit=1_000_000)
    _, plaintext = calls_from("bob@example.com", ["198.51.100.7"])
    user = fresh(uid("bob@example.com"))
    other = app.test_client()
    assert auth.login("bob@example.com", client=other).status_code == 302
    response = client.post(f"/admin/users/{user.id}/suspend", data={"reason": "card testing", "confirm": "yes"})
    assert response.status_code == 303 and response.headers["Location"] == f"/admin/users/{user.id}"
    assert "Suspended bob@example.com: card testing." in client.get(response.headers["Location"]).get_data(as_text=True)
    bob = fresh(user.id)
    assert (bob.status, bob.status_reason) == ("suspended", "card testing")
    assert db.session.scalar(select(func.count()).select_from(UserSession).where(
        UserSession.user_id == user.id, UserSession.ended_at.is_(None))) == 0
    assert other.get("/dashboard/").status_code == 302  # that session ended
    with pytest.raises(AccountSuspended):
        apikeys.authenticate(plaintext)
    mail = [m for m in outbox(app) if m["To"] == "bob@example.com"][-1]
    assert mail["Subject"] == "Your account is suspended" and "card testing" in mail.get_content()
    assert "http://localhost/contact" in mail.get_content()
    [entry] = entries("user.suspend")
    assert (entry.actor, entry.actor_id, entry.target_id, entry.reason) == ("admin@example.com", admin_id, str(user.id),
                                                                             "card testing")
    assert entry.before["status"] == "active" and entry.after["status"] == "suspended" and entry.ip

    # Again: nothing changes, no second entry, no second mail.
    mails = len(outbox(app))
    again = client.post(f"/admin/users/{user.id}/suspend", data={"reason": "again", "confirm": "yes"})
    assert again.status_code == 303
    assert "already suspended; nothing changed" in client.get(again.headers["Location"]).get_data(as_text=True)
    assert len(entries("user.suspend")) == 1 and len(outbox(app)) == mails

    # Unsuspend: mailed, audited, keys work again.
    response = client.post(f"/admin/users/{user.id}/unsuspend", data={"reason": "explained by phone"})
    assert response.status_code == 303 and fresh(user.id).status == "active"
    apikeys.authenticate(plaintext)
    assert outbox(app)[-1]["Subject"] == "Your account is active again"
    assert len(entries("user.unsuspend")) == 1


@pytest.mark.parametrize("form, message", [
    ({"confirm": "yes"}, "Give a reason"),
    ({"reason": "   ", "confirm": "yes"}, "Give a reason"),
    ({"reason": "spam"}, "Tick the box to confirm"),
])
def test_suspend_needs_a_reason_and_the_confirmation(client, auth, form, message):
    auth.admin()
    user = make_user("bob@example.com")
    response = client.post(f"/admin/users/{user.id}/suspend", data=form)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert fresh(user.id).status == "active" and entries() == []


def test_an_admin_cannot_suspend_themselves(client, auth):
    admin = auth.admin()
    response = client.post(f"/admin/users/{admin.id}/suspend", data={"reason": "oops", "confirm": "yes"})
    assert response.status_code == 422 and "your own account" in response.get_data(as_text=True)
    assert fresh(admin.id).status == "active"


@pytest.mark.parametrize("amount, topup, balance", [("2", False, 3_000_000), ("+2", True, 3_000_000),
                                                    ("-0.5", False, 500_000), ("-1", False, 0)])
def test_adjust_the_balance(client, auth, amount, topup, balance):
    auth.admin()
    user = make_user("carol@example.com", credit=1_000_000)
    form = {"amount": amount, "reason": "goodwill", "confirm": "yes"}
    if topup:
        form["counts_as_topup"] = "yes"
    response = client.post(f"/admin/users/{user.id}/adjust", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)
    account = fresh(user.id).account
    assert account.balance == balance
    assert (account.credits_expire_at is not None) == topup
    entry = db.session.scalar(select(LedgerEntry).order_by(LedgerEntry.id.desc()))
    assert (entry.kind, entry.memo, entry.amount) == ("adjustment", "goodwill", balance - 1_000_000)
    [audited] = entries("balance.adjust")
    assert (audited.before["balance"], audited.after["balance"]) == (1_000_000, balance)


@pytest.mark.parametrize("form, message", [
    ({"amount": "-1.01", "confirm": "yes"}, "more than the available balance of $1.00"),
    ({"amount": "-0.5"}, "Tick the box to confirm"),
    ({"amount": "0"}, "must not be zero"),
    ({"amount": "abc"}, "is not an amount in USD"),
    ({"amount": "--1", "confirm": "yes"}, "one sign at most"),
    ({"amount": "0.0000001"}, "is not an amount in USD"),
    ({"amount": "-1", "counts_as_topup": "yes", "confirm": "yes"}, "Only a credit can count as a top-up"),
    ({"amount": "1", "reason": ""}, "Give a reason"),
])
def test_adjust_refuses_bad_amounts_with_a_readable_error(client, auth, form, message):
    auth.admin()
    user = make_user("carol@example.com", credit=1_000_000)
    response = client.post(f"/admin/users/{user.id}/adjust", data={"reason": "fix", **form})
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert fresh(user.id).account.balance == 1_000_000 and entries() == []


def test_terminate_forfeits_the_balance_revokes_keys_and_mails(app, client, auth):
    auth.admin()
    make_user("dave@example.com", credit=3_000_000)
    key_id, plaintext = calls_from("dave@example.com", ["198.51.100.7"])
    user = fresh(uid("dave@example.com"))
    assert client.post(f"/admin/users/{user.id}/terminate", data={"reason": "fraud"}).status_code == 422
    response = client.post(f"/admin/users/{user.id}/terminate", data={"reason": "fraud", "confirm": "yes"})
    assert response.status_code == 303
    dave = fresh(user.id)
    assert dave.status == "terminated" and dave.account.balance == 0 and dave.email.endswith("@invalid")
    last = db.session.scalar(select(LedgerEntry).order_by(LedgerEntry.id.desc()))
    assert last.kind == "adjustment" and last.amount < 0 and "without refund" in last.memo
    assert db.session.get(ApiKey, key_id).revoked_at is not None
    mail = outbox(app)[-1]
    assert mail["To"] == "dave@example.com" and "fraud" in mail.get_content()
    [entry] = entries("user.terminate")
    assert entry.after["forfeited"] == entry.before["balance"] > 0 and "dave@example.com" not in str(entry.after)
    page = client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "nothing more can be done" in page
    # The address is free; the person cannot log in to the old account.
    assert auth.login("dave@example.com", client=app.test_client()).status_code == 422


def test_terminate_is_refused_while_a_call_is_in_flight_or_a_refund_is_open(client, auth):
    from portal import ledger, refunds
    auth.admin()
    user = make_user("erin@example.com", credit=2_000_000)
    with atomic():
        hold = ledger.hold(user.account.id, 100)
    response = client.post(f"/admin/users/{user.id}/terminate", data={"reason": "x", "confirm": "yes"})
    assert response.status_code == 422 and "call in progress" in response.get_data(as_text=True)
    with atomic():
        ledger.release(hold)
        refunds.request(db.session.get(User, user.id), "leaving")
    response = client.post(f"/admin/users/{user.id}/terminate", data={"reason": "x", "confirm": "yes"})
    assert response.status_code == 422 and "open refund request" in response.get_data(as_text=True)
    assert fresh(user.id).status == "active" and fresh(user.id).account.balance == 2_000_000


def test_resend_verification_and_revoke_a_key(app, client, auth):
    auth.admin()
    user = fresh(make_user("fay@example.com", verified=False).id)
    response = client.post(f"/admin/users/{user.id}/resend-verification", data={"reason": "asked by phone"})
    assert response.status_code == 303
    assert outbox(app)[-1]["To"] == "fay@example.com" and "/verify/" in outbox(app)[-1].get_content()
    make_user("gus@example.com", credit=1_000_000)
    key_id, plaintext = calls_from("gus@example.com", ["198.51.100.7"])
    gus = fresh(uid("gus@example.com"))
    # The key must belong to the page's user.
    assert client.post(f"/admin/users/{uid('fay@example.com')}/keys/{key_id}/revoke",
                       data={"reason": "leaked", "confirm": "yes"}).status_code == 404
    response = client.post(f"/admin/users/{gus.id}/keys/{key_id}/revoke", data={"reason": "leaked", "confirm": "yes"})
    assert response.status_code == 303
    db.session.rollback()
    with pytest.raises(KeyRevoked):
        apikeys.authenticate(plaintext)
    again = client.post(f"/admin/users/{gus.id}/keys/{key_id}/revoke", data={"reason": "leaked", "confirm": "yes"})
    assert "already revoked; nothing changed" in client.get(again.headers["Location"]).get_data(as_text=True)
    assert len(entries("key.revoke")) == 1 and entries("key.revoke")[0].after["revoked_at"]


def test_console_forms_carry_csrf_tokens(app, client, auth):
    auth.admin()
    make_user("hal@example.com", verified=False)
    make_user("ivy@example.com", credit=1_000_000)
    calls_from("ivy@example.com", ["198.51.100.7"])
    user = fresh(uid("hal@example.com"))
    for email in ("hal@example.com", "ivy@example.com"):
        page = client.get(f"/admin/users/{uid(email)}").get_data(as_text=True)
        forms = page.count('method="post"')
        assert forms >= 3 and page.count('name="csrf_token"') >= forms
    app.config["WTF_CSRF_ENABLED"] = True
    refused = client.post(f"/admin/users/{user.id}/suspend", data={"reason": "x", "confirm": "yes"})
    assert refused.status_code == 400 and fresh(user.id).status == "active"
