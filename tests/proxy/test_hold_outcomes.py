"""How a call's hold closes: released whole when the call failed, settled into one charge when it ran.

A failed call settled at zero would leave the same balance, so these look at the hold and the
ledger themselves: a released hold and no charge entry, not a settled hold and a charge of $0.
"""
import json

import pytest
import requests
from sqlalchemy import select

from portal import ledger
from portal.extensions import db
from portal.models import ApiKey, Hold, HoldStatus, LedgerEntry
from tests.proxy.conftest import CREDIT, balance, wait_for_records

CHAT_BODY = {"model": "gpt-test", "max_completion_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def call(gateway, key, stream):
    body = {**CHAT_BODY, "stream": True} if stream else CHAT_BODY
    response = requests.post(f"{gateway}/v1/chat/completions", data=json.dumps(body), stream=stream, timeout=10,
                             headers={"Authorization": f"Bearer {key}", "content-type": "application/json"})
    response.content
    return response


def charges() -> list[LedgerEntry]:
    return list(db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "charge")))


@pytest.mark.parametrize("knobs, stream", [
    ({"status": 500}, False),
    ({"status": 500}, True),
    ({"status": 429}, False),
    ({"drop_before_headers": True}, False),
    ({"drop_after_events": 1}, True),  # the stream broke before any output reached the client
], ids=["500", "500-stream", "429", "dropped", "stream-broke-before-output"])
def test_a_failed_call_releases_its_hold_and_writes_no_charge(gateway, fake, key, knobs, stream):
    fake.next(**knobs)
    call(gateway, key, stream)
    [record] = wait_for_records(1)
    assert (record.cost, record.ledger_entry_id) == (0, None)
    hold = db.session.get(Hold, record.hold_id)
    assert hold.status == HoldStatus.RELEASED.value and hold.amount == record.hold_amount > 0
    assert charges() == []
    key_row = db.session.scalar(select(ApiKey))
    assert (key_row.held, key_row.spent_total) == (0, 0)
    money = balance(gateway, key)
    assert (money["balance_micro_usd"], money["held_micro_usd"]) == (CREDIT, 0)
    assert ledger.verify() == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_that_ran_settles_its_hold_into_one_charge(gateway, fake, key, stream):
    fake.next(input=11, output=7)
    assert call(gateway, key, stream).status_code == 200
    [record] = wait_for_records(1)
    hold = db.session.get(Hold, record.hold_id)
    assert hold.status == HoldStatus.SETTLED.value
    [charge] = charges()
    assert (charge.id, charge.hold_id, charge.amount) == (record.ledger_entry_id, hold.id, -record.cost)
    assert record.cost > 0
    key_row = db.session.scalar(select(ApiKey))
    assert (key_row.held, key_row.spent_total) == (0, record.cost)
    assert ledger.verify() == []
