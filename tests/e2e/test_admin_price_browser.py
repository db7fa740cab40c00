"""An admin changes a model's price in the console, in a real browser; the next call through the
official openai SDK is charged the new price, read back from its usage record and the ledger."""
import pytest
from openai import OpenAI
from sqlalchemy import select

from portal import apikeys, catalog
from portal.database import atomic
from portal.extensions import db
from portal.models import LedgerEntry, ModelPrice, UsageRecord
from portal.pricing import Price, Usage, quote
from tests.e2e.conftest import CHROMIUM, log_in_admin
from tests.factories import make_admin, make_user

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")

OLD = Price(input=2_000_000, output=8_000_000)
NEW = Price(input=7_250_000, output=31_500_000)


@pytest.fixture
def app_config():
    # CSRF on, as in production; a model cache that would outlive the test, so only the
    # console's invalidation after commit can make the next call see the new price.
    return {"WTF_CSRF_ENABLED": True, "MODEL_CACHE_SECONDS": 3600}


def newest_record() -> UsageRecord:
    db.session.rollback()
    return db.session.scalars(select(UsageRecord).order_by(UsageRecord.id.desc())).first()


def test_a_price_changed_in_the_console_charges_the_next_call(app, gateway, phone_page):
    with atomic():
        catalog.add_upstream("echo", "echo")
        catalog.set_model("echo-1", "echo", OLD)
    user = make_user("caller@example.com", credit=5_000_000)
    with atomic():
        _, key = apikeys.issue(user, "laptop")
    admin = make_admin("admin@example.com")
    client = OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)

    def call() -> UsageRecord:
        reply = client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "price check"}])
        assert reply.choices[0].message.content == "Echo: price check"
        return newest_record()

    before = call()  # the proxy's cache now holds the old price
    assert before.cost == quote(OLD, Usage(input=before.input_tokens, output=before.output_tokens))

    page = phone_page  # the operator's phone
    log_in_admin(page, gateway, admin)
    page.goto(f"{gateway}/admin/models")
    page.get_by_role("link", name="echo-1").click()
    page.get_by_role("heading", name="Change the price").wait_for()
    form = page.locator("form", has=page.get_by_role("button", name="Record the new price"))
    form.get_by_label("Input", exact=True).fill("7.25")
    form.get_by_label("Output", exact=True).fill("31.50")
    form.get_by_label("Now").check()
    form.get_by_label("Note for the audit log (optional)").fill("supplier raised prices")
    form.get_by_role("button", name="Record the new price").click()
    page.get_by_text("New price of echo-1 in force from now.").wait_for()
    assert "7.25" in page.get_by_role("region", name="Price in force").inner_text()

    db.session.rollback()
    new_row = db.session.scalars(select(ModelPrice).order_by(ModelPrice.id.desc())).first()
    assert catalog.as_price(new_row) == NEW
    after = call()
    expected = quote(NEW, Usage(input=after.input_tokens, output=after.output_tokens))
    assert expected != quote(OLD, Usage(input=after.input_tokens, output=after.output_tokens))
    assert (after.price_id, after.cost) == (new_row.id, expected)
    assert (before.price_id, after.price_id) != (new_row.id, new_row.id)
    entry = db.session.get(LedgerEntry, after.ledger_entry_id)
    assert entry.amount == -expected
