"""The console's refund queue: open requests first, what approval would refund against which payments
(the very plan approval then carries out), approve with a confirmation, refuse with a mailed reason;
each audited like the CLI."""
import pytest
from sqlalchemy import select

from portal import refunds
from portal.extensions import db
from portal.models import AuditEntry, RefundRequest
from tests.conftest import stripe_settings
from tests.domain.test_refunds_approval import USD, ask, balance, grant, pay_by_card, pay_by_hand
from tests.factories import make_user
from tests.web.helpers import outbox


@pytest.fixture
def app_config(fake_stripe):
    return stripe_settings(fake_stripe)


def audit_actions(target_id) -> list[tuple[str, str]]:
    db.session.rollback()
    return [(e.action, e.actor) for e in db.session.scalars(
        select(AuditEntry).where(AuditEntry.target_type == "refund_request", AuditEntry.target_id == str(target_id))
        .order_by(AuditEntry.id))]


def status(request_id) -> str:
    db.session.rollback()
    return db.session.get(RefundRequest, request_id).status


def test_the_queue_lists_open_requests_first_with_balances_and_paginates(app, client, auth, fake_stripe):
    auth.admin()
    decided = make_user("decided@example.com", credit=USD)
    decided_id = ask(decided)
    refunds.reject(decided_id, "no")
    waiting = []
    for n in range(22):
        user = make_user(f"p{n}@example.com")
        pay_by_hand(user, 2 * USD, reference=f"bank-{n}")
        waiting.append(ask(user))
    first = client.get("/admin/refunds").get_data(as_text=True)
    assert 'data-testid="refund-%d"' % waiting[0] in first and 'rel="next"' in first
    assert "p0@example.com" in first and "$2.00 by hand" in first
    assert "decided@example.com" not in first  # open only, by default
    everything = client.get("/admin/refunds?show=all&page=2").get_data(as_text=True)
    # Page 2 of "all": the last two open requests, then the decided one after every open one.
    assert f'data-testid="refund-{waiting[-1]}"' in everything and "decided@example.com" in everything
    assert everything.index(f"refund-{waiting[-1]}") < everything.index(f"refund-{decided_id}")
    assert "show=all" in everything  # the pager keeps the filter


def test_the_request_page_shows_the_plan_that_approval_carries_out(app, client, auth, fake_stripe):
    auth.admin()
    user = make_user("ada@example.com")
    pay_by_card(fake_stripe, user, 4 * USD, days_ago=5)
    pay_by_hand(user, 2 * USD, reference="wire-7")
    grant(user, 1 * USD)
    request_id = ask(user, close_account=True)
    page = client.get(f"/admin/refunds/{request_id}").get_data(as_text=True)
    assert "$6.00 in all, newest payment first, of which $2.00 you pay back by hand" in page
    assert 'data-testid="balance-now">$7.00' in page
    assert "wire-7" in page and "$2.00 by hand" in page and "$4.00 through Stripe" in page
    assert "$1.00 of the available balance stays on the account" in page
    assert "/admin/users/%d" % user.id in page
    plan = refunds.preview(request_id)
    assert [(s.payment.method, s.amount) for s in plan.shares] == [("bank transfer", 2 * USD), ("card", 4 * USD)]

    # No confirmation box ticked: nothing happens.
    unconfirmed = client.post(f"/admin/refunds/{request_id}/approve", follow_redirects=True)
    assert b"Tick the box to confirm" in unconfirmed.data and status(request_id) == "requested"

    done = client.post(f"/admin/refunds/{request_id}/approve", data={"confirm": "yes"}, follow_redirects=True)
    text = done.get_data(as_text=True)
    assert f"Refund request {request_id} is paid: $6.00 in all, of which $2.00 is yours to pay back by hand" in text
    assert "The account is closed, as the person asked." in text
    assert status(request_id) == "paid" and balance(user) == 1 * USD
    assert len(fake_stripe.refunds) == 1 and sum(r["amount"] for r in fake_stripe.refunds.values()) == 400
    actions = audit_actions(request_id)
    assert [a for a, _ in actions] == ["refund.payout", "refund.payout", "refund.approve"]
    assert {who for _, who in actions} == {"admin@example.com"}
    assert outbox(app)[-1]["To"] == "ada@example.com"
    # Approving again changes nothing and says why.
    again = client.post(f"/admin/refunds/{request_id}/approve", data={"confirm": "yes"}, follow_redirects=True)
    assert f"refund request {request_id} is paid, not open" in again.get_data(as_text=True)
    assert len(audit_actions(request_id)) == 3


def test_a_stripe_failure_leaves_the_request_open_and_says_so(app, client, auth, fake_stripe):
    auth.admin()
    user = make_user()
    pay_by_card(fake_stripe, user, 3 * USD)
    request_id = ask(user)
    fake_stripe.fail_refunds = True
    page = client.post(f"/admin/refunds/{request_id}/approve", data={"confirm": "yes"}, follow_redirects=True)
    assert f"Refund request {request_id} is still open" in page.get_data(as_text=True)
    assert status(request_id) == "requested"
    assert [a for a, _ in audit_actions(request_id)] == ["refund.stopped"]
    fake_stripe.fail_refunds = False
    client.post(f"/admin/refunds/{request_id}/approve", data={"confirm": "yes"})
    assert status(request_id) == "paid" and balance(user) == 0


def test_refusing_needs_a_reason_which_is_mailed_and_audited(app, client, auth):
    auth.admin()
    user = make_user("bob@example.com", credit=USD)
    request_id = ask(user)
    without = client.post(f"/admin/refunds/{request_id}/reject", data={"reason": "  "}, follow_redirects=True)
    assert b"Give a reason" in without.data and status(request_id) == "requested"
    done = client.post(f"/admin/refunds/{request_id}/reject", data={"reason": "Used for spam."},
                       follow_redirects=True)
    assert f"Refund request {request_id} is refused; bob@example.com was mailed the reason." in done.get_data(as_text=True)
    assert status(request_id) == "refused"
    mail = outbox(app)[-1]
    assert mail["To"] == "bob@example.com" and "Used for spam." in mail.get_content()
    [(action, who)] = audit_actions(request_id)
    assert (action, who) == ("refund.reject", "admin@example.com")
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "refund.reject"))
    assert entry.reason == "Used for spam." and entry.after == {"status": "refused"}
    page = client.get(f"/admin/refunds/{request_id}").get_data(as_text=True)
    assert 'data-testid="refund-status">refused' in page and "Approve and refund" not in page


def test_an_unknown_request_is_404(app, client, auth):
    auth.admin()
    assert client.get("/admin/refunds/999").status_code == 404


def test_the_cli_and_the_console_share_the_audit(app, cli, fake_stripe):
    user = make_user(credit=USD)
    request_id = ask(user)
    result = cli("refunds", "reject", str(request_id), "--reason", "duplicate")
    assert result.exit_code == 0, result.output
    [(action, who)] = audit_actions(request_id)
    assert action == "refund.reject" and who.startswith("cli:")


def test_an_operator_opens_a_refund_for_a_person_who_asked_by_mail(app, client, auth):
    auth.admin()
    person = make_user("asked-by-mail@example.com")
    pay_by_hand(person, 10 * USD)
    grant(person, 3 * USD)  # a gift: not refundable
    response = client.post(f"/admin/users/{person.id}/refund", data={"reason": "asked by mail on Monday"})
    assert response.status_code == 303
    db.session.rollback()
    request = db.session.scalar(select(RefundRequest).where(RefundRequest.user_id == person.id))
    assert request.status == "requested" and request.reason == "opened by the operator: asked by mail on Monday"
    assert response.headers["Location"].endswith(f"/admin/refunds/{request.id}")
    page = client.get(f"/admin/refunds/{request.id}").get_data(as_text=True)
    assert "$10.00" in page and "refundable now" in page
    opened = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "refund.open")).all()
    assert [(e.target_id, e.after["refundable"], e.reason) for e in opened] == [
        (str(person.id), 10 * USD, "asked by mail on Monday")]

    # Again: the open request is shown, nothing new is filed or audited.
    again = client.post(f"/admin/users/{person.id}/refund", data={"reason": "twice"}, follow_redirects=True)
    assert "nothing changed" in again.get_data(as_text=True)
    db.session.rollback()
    assert db.session.query(RefundRequest).count() == 1
    assert len(db.session.scalars(select(AuditEntry).where(AuditEntry.action == "refund.open")).all()) == 1


@pytest.mark.parametrize("data, message", [({"reason": ""}, "Give a reason"),
                                           ({"reason": "asked"}, "Nothing of")])
def test_opening_a_refund_needs_a_reason_and_something_refundable(app, client, auth, data, message):
    auth.admin()
    person = make_user("gift-only@example.com")
    grant(person, 3 * USD)
    response = client.post(f"/admin/users/{person.id}/refund", data=data)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    db.session.rollback()
    assert db.session.query(RefundRequest).count() == 0


def test_the_command_line_opens_one_too(app, cli):
    person = make_user("cli-refund@example.com")
    pay_by_hand(person, 4 * USD)
    first = cli("refunds", "open", "cli-refund@example.com", "--reason", "phoned us")
    assert first.exit_code == 0 and "opened refund request #" in first.output and "$4.00 refundable" in first.output
    second = cli("refunds", "open", "cli-refund@example.com", "--reason", "phoned again")
    assert second.exit_code == 0 and "nothing changed" in second.output
    db.session.rollback()
    assert db.session.query(RefundRequest).count() == 1
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.action == "refund.open"))
    assert entry.actor.startswith("cli:") and entry.reason == "phoned us"
