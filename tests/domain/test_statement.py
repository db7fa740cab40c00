"""The statement: rows with running balances, charges summed per UTC day, CSV and JSON; the hash
chain checked by the script the docs give, and by `ledger.verify` when entries are tampered with."""
import csv
import io
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from portal import ledger, statement
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, EntryKind, LedgerEntry
from tests.factories import make_user

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "billing.md"


def at(monkeypatch, *moment):
    """Entries written from now on carry this UTC time."""
    monkeypatch.setattr(ledger, "utcnow", lambda: datetime(*moment, tzinfo=timezone.utc))


def charge(account_id: int, cost: int) -> None:
    with atomic():
        hold_id = ledger.hold(account_id, cost)
    with atomic():
        ledger.settle(hold_id, cost, memo="echo-1 req_1")


def grant(account_id: int, amount: int, memo: str, reference=None) -> None:
    with atomic():
        ledger.credit(account_id, amount, EntryKind.GRANT, memo=memo, reference=reference)


@pytest.fixture
def history(app, monkeypatch):
    """Two days of an account: credits, charges a top-up splits, charges past midnight, a refund."""
    user = make_user()
    account_id = user.account.id
    at(monkeypatch, 2026, 3, 1, 9, 0)
    with atomic():
        ledger.credit(account_id, 10_000_000, EntryKind.TOPUP, memo="Card payment", reference="stripe:pi_1")
    for hour, cost in ((10, 100_000), (11, 250_000)):
        at(monkeypatch, 2026, 3, 1, hour, 0)
        charge(account_id, cost)
    at(monkeypatch, 2026, 3, 1, 12, 0)
    grant(account_id, 2_000_000, "Gift code TG-…AB12", "giftcode:1")
    at(monkeypatch, 2026, 3, 1, 23, 59, 59, 999_999)
    charge(account_id, 50_000)
    for minute, cost in ((0, 1), (5, 2)):  # after midnight UTC: the next day's row
        at(monkeypatch, 2026, 3, 2, 0, minute)
        charge(account_id, cost)
    at(monkeypatch, 2026, 3, 2, 8, 0)
    with atomic():
        ledger.debit(account_id, 1_000_000, EntryKind.REFUND, memo="Refund #7 paid out", reference="refund:7")
    return user


def downloaded_json(account_id: int) -> dict:
    return json.loads("".join(statement.json_chunks(account_id)))


def test_rows_sum_charges_per_utc_day_and_between_other_entries(history):
    found = statement.build(history.account.id)
    assert [(r.kind, r.description, r.reference, r.amount, r.balance_after, r.calls) for r in found.rows] == [
        ("topup", "Top-up: Card payment", "stripe:pi_1", 10_000_000, 10_000_000, 0),
        ("charge", "Usage: 2 calls", None, -350_000, 9_650_000, 2),
        ("grant", "Credit: Gift code TG-…AB12", "giftcode:1", 2_000_000, 11_650_000, 0),
        ("charge", "Usage: 1 call", None, -50_000, 11_600_000, 1),
        ("charge", "Usage: 2 calls", None, -3, 11_599_997, 2),
        ("refund", "Refund: Refund #7 paid out", "refund:7", -1_000_000, 10_599_997, 0),
    ]
    assert [r.day.isoformat() for r in found.rows] == ["2026-03-01"] * 4 + ["2026-03-02"] * 2
    assert found.rows[1].at == datetime(2026, 3, 1, 11, 0, tzinfo=timezone.utc)  # the day's last charge
    running = 0
    for row in found.rows:
        running += row.amount
        assert row.balance_after == running
    assert found.balance == running == db.session.get(Account, history.account.id).balance
    entry_ids = [e.id for e in ledger.statement_entries(history.account.id)]
    assert [(r.first_entry_id, r.last_entry_id) for r in found.rows] == [
        (entry_ids[0], entry_ids[0]), (entry_ids[1], entry_ids[2]), (entry_ids[3], entry_ids[3]),
        (entry_ids[4], entry_ids[4]), (entry_ids[5], entry_ids[6]), (entry_ids[7], entry_ids[7])]


def test_an_empty_account_has_an_empty_statement(app):
    user = make_user()
    found = statement.build(user.account.id)
    assert (found.rows, found.chain_head, found.balance) == ([], "", 0)
    document = downloaded_json(user.account.id)
    assert (document["entries"], document["rows"], document["chain_head"], document["genesis"]) == ([], [], "", "")
    assert list(csv.reader(io.StringIO("".join(statement.csv_lines(user.account.id))))) == [statement.CSV_COLUMNS]


def test_csv_rows_are_the_page_rows(history):
    lines = list(csv.reader(io.StringIO("".join(statement.csv_lines(history.account.id)))))
    assert lines[0] == statement.CSV_COLUMNS
    rows = statement.build(history.account.id).rows
    assert len(lines) == 1 + len(rows)
    by_name = [dict(zip(lines[0], line)) for line in lines[1:]]
    assert by_name[0] | {"first_entry_id": "", "last_entry_id": ""} == {
        "date": "2026-03-01", "time_utc": "09:00:00", "kind": "topup", "description": "Top-up: Card payment",
        "reference": "stripe:pi_1", "calls": "", "amount_usd": "10.000000", "amount_micro_usd": "10000000",
        "balance_usd": "10.000000", "balance_micro_usd": "10000000", "first_entry_id": "", "last_entry_id": ""}
    assert [(r["kind"], r["calls"], r["time_utc"], r["amount_usd"], r["balance_micro_usd"]) for r in by_name[1:5]] == [
        ("charge", "2", "", "-0.350000", "9650000"), ("grant", "", "12:00:00", "2.000000", "11650000"),
        ("charge", "1", "", "-0.050000", "11600000"), ("charge", "2", "", "-0.000003", "11599997")]
    assert by_name[4]["date"] == "2026-03-02"
    assert [int(r["last_entry_id"]) for r in by_name] == [r.last_entry_id for r in rows]


def test_csv_text_a_spreadsheet_would_run_is_quoted(app):
    user = make_user()
    grant(user.account.id, 1, "=1+1", reference='=HYPERLINK("http://evil.example")')
    line = list(csv.DictReader(io.StringIO("".join(statement.csv_lines(user.account.id)))))[0]
    assert line["reference"] == "'=HYPERLINK(\"http://evil.example\")"
    assert line["description"] == "Credit: =1+1"  # starts with its label: a spreadsheet shows it as text


def test_json_carries_every_entry_the_chain_and_the_rows(history):
    document = downloaded_json(history.account.id)
    account = db.session.get(Account, history.account.id)
    assert list(document) == ["account_id", "generated_at", "genesis", "chain_head", "entries", "rows"]
    assert (document["account_id"], document["genesis"], document["chain_head"]) == (account.id, "", account.chain_head)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", document["generated_at"])
    entries = ledger.statement_entries(account.id)
    assert document["entries"] == [
        {"id": e.id, "created_at": ledger.stamp(e.created_at), "kind": e.kind, "amount": e.amount,
         "balance_after": e.balance_after, "reference": e.reference, "memo": e.memo, "hash": e.entry_hash}
        for e in entries]
    assert document["entries"][0]["created_at"] == "2026-03-01T09:00:00.000000Z"
    assert document["entries"][-1]["hash"] == account.chain_head
    rows = statement.build(account.id).rows
    assert [(r["kind"], r["amount"], r["balance_after"], r["calls"], r["date"]) for r in document["rows"]] == [
        (r.kind, r.amount, r.balance_after, r.calls, r.day.isoformat()) for r in rows]
    assert document["rows"][1]["at"] == "2026-03-01T11:00:00.000000Z"


def test_another_accounts_entries_never_appear(history):
    other = make_user("other@example.com")
    grant(other.account.id, 7_777_777, "only for the other account")
    for account_id, mine, theirs in ((history.account.id, 8, 7_777_777), (other.account.id, 1, 10_000_000)):
        document = downloaded_json(account_id)
        assert len(document["entries"]) == mine
        assert theirs not in [e["amount"] for e in document["entries"]]
        assert str(theirs) not in "".join(statement.csv_lines(account_id))


# --- the verification script in the docs ----------------------------------------------------------

def docs_script() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/billing.md should hold exactly one Python block: the statement check"
    return blocks[0]


def check(tmp_path, document: dict, *earlier: str) -> subprocess.CompletedProcess:
    """Run the docs' script as a statement's reader would: a file, python3, the downloaded JSON."""
    script, saved = tmp_path / "verify.py", tmp_path / "statement.json"
    script.write_text(docs_script(), encoding="utf-8")
    saved.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return subprocess.run([sys.executable, "-I", str(script), str(saved), *earlier], capture_output=True, text=True,
                          timeout=60)


def test_the_docs_script_is_at_most_ten_lines_and_is_the_one_the_page_shows():
    assert docs_script() == statement.VERIFY_SCRIPT
    assert len(docs_script().splitlines()) <= 10


def test_the_docs_script_verifies_a_downloaded_statement(history, tmp_path):
    grant(history.account.id, 5, "Grüße, 日本 and \"quotes\"")  # the chain hashes text as it is, not ASCII-escaped
    document = downloaded_json(history.account.id)
    result = check(tmp_path, document)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"ok: 9 entries, balance 10600002 micro-USD, chain head {document['chain_head']}")


@pytest.mark.parametrize("tamper, message", [
    (lambda d: d["entries"][3].update(amount=2_000_001), "entry {3} does not verify"),
    (lambda d: d["entries"][3].update(amount=2_000_001, balance_after=11_650_001), "entry {3} does not verify"),
    (lambda d: d["entries"][7].update(memo="Refund"), "entry {7} does not verify"),
    (lambda d: d["entries"][0].update(created_at="2026-03-01T09:00:00.000001Z"), "entry {0} does not verify"),
    (lambda d: d["entries"].pop(2), "entry {3} does not verify"),
    (lambda d: d["entries"].pop(), "the chain head is not the last entry's hash: entries are missing"),
    (lambda d: d.update(account_id=d["account_id"] + 1), "entry {0} does not verify"),
])
def test_the_docs_script_fails_a_tampered_statement(history, tmp_path, tamper, message):
    document = downloaded_json(history.account.id)
    ids = [e["id"] for e in document["entries"]]
    tamper(document)
    result = check(tmp_path, document)
    assert result.returncode != 0 and not result.stdout
    assert result.stderr.strip() == message.format(*ids)


def rechain(document: dict) -> dict:
    """Recompute every hash and the head, as a forger who edited the file would (the chain has no secret)."""
    head = document["genesis"]
    for e in document["entries"]:
        head = e["hash"] = ledger.chain_hash(head, document["account_id"], e["kind"], e["amount"], e["balance_after"],
                                             e["reference"], e["memo"], e["created_at"])
    document["chain_head"] = head
    return document


def test_the_docs_script_fails_balances_that_do_not_add_up_even_when_rechained(history, tmp_path):
    document = downloaded_json(history.account.id)
    document["entries"][1]["amount"] -= 1_000_000  # a charge made bigger; balances left as they were
    result = check(tmp_path, rechain(document))
    assert result.returncode != 0 and result.stderr.strip() == f"entry {document['entries'][1]['id']} does not verify"


def test_a_rewritten_history_is_caught_by_an_earlier_chain_head(history, tmp_path):
    earlier = downloaded_json(history.account.id)
    assert check(tmp_path, rechain(earlier)).returncode == 0  # rechain itself changes nothing
    rewritten = downloaded_json(history.account.id)
    rewritten["entries"][0]["memo"] = "Something else"
    rewritten = rechain(rewritten)
    assert check(tmp_path, rewritten).returncode == 0  # consistent in itself...
    caught = check(tmp_path, rewritten, earlier["chain_head"])  # ...but not with what the reader kept
    assert caught.returncode != 0 and "your earlier chain head is gone: history was rewritten" in caught.stderr


def test_the_docs_script_checks_an_earlier_chain_head_is_still_there(history, tmp_path):
    earlier = downloaded_json(history.account.id)["chain_head"]
    grant(history.account.id, 1, "later")
    later = downloaded_json(history.account.id)
    assert check(tmp_path, later, earlier).returncode == 0
    rewritten = check(tmp_path, later, "0" * 64)
    assert rewritten.returncode != 0 and "your earlier chain head is gone" in rewritten.stderr


# --- the chain in the database: ledger.verify -----------------------------------------------------

def tamper(sql: str, **params) -> None:
    """Run `sql` on ledger_entry past its append-only triggers (as someone with database access could)."""
    with atomic():
        if db.session.get_bind().dialect.name == "postgresql":
            # In one transaction with the change, so the guard is back for every other test.
            db.session.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only"))
            db.session.execute(text(sql), params)
            db.session.execute(text("ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only"))
        else:  # this test's own copy of the database
            db.session.execute(text("DROP TRIGGER IF EXISTS ledger_entry_no_update"))
            db.session.execute(text("DROP TRIGGER IF EXISTS ledger_entry_no_delete"))
            db.session.execute(text(sql), params)


@pytest.mark.books_broken
def test_verify_reports_an_altered_entry(history):
    entries = [e.id for e in ledger.statement_entries(history.account.id)]
    assert ledger.verify() == []
    # The memo only: balances still add up, so only the hash can tell.
    tamper("UPDATE ledger_entry SET memo = 'Gift code TG-…ZZZZ' WHERE id = :id", id=entries[3])
    if db.session.get_bind().dialect.name == "postgresql":  # the shared database keeps its guard
        with pytest.raises(DBAPIError, match="append-only"), atomic():
            db.session.execute(text("UPDATE ledger_entry SET memo = 'x'"))
    assert ledger.verify() == [f"entry {entries[3]}: hash does not match its content and the entry before it "
                               "(altered, inserted or a predecessor removed)"]


@pytest.mark.books_broken
def test_verify_reports_an_altered_amount_with_balances_fixed_up(history):
    """A careful forger moves the amount, every later balance_after and the cached balance: the hashes still tell."""
    entries = [e.id for e in ledger.statement_entries(history.account.id)]
    tamper("UPDATE ledger_entry SET amount = amount + 1 WHERE id = :id", id=entries[3])
    tamper("UPDATE ledger_entry SET balance_after = balance_after + 1 WHERE account_id = :a AND id >= :id",
           a=history.account.id, id=entries[3])
    with atomic():
        db.session.execute(text("UPDATE account SET balance = balance + 1 WHERE id = :a"), {"a": history.account.id})
    assert ledger.verify() == [f"entry {e}: hash does not match its content and the entry before it "
                               "(altered, inserted or a predecessor removed)" for e in entries[3:]]


@pytest.mark.books_broken
def test_verify_reports_the_newest_entry_removed_through_the_chain_head(history):
    (*_, before, newest) = [(e.id, e.amount) for e in ledger.statement_entries(history.account.id)]
    tamper("DELETE FROM ledger_entry WHERE id = :id", id=newest[0])
    # Even with the cached balance put back to match, the account's chain head gives it away.
    with atomic():
        db.session.execute(text("UPDATE account SET balance = balance - :amount WHERE id = :a"),
                           {"amount": newest[1], "a": history.account.id})
    assert ledger.verify() == [f"account {history.account.id}: chain head does not match its newest entry "
                               "(the newest entries were removed or replaced)"]
    assert db.session.scalar(select(LedgerEntry.id).order_by(LedgerEntry.id.desc()).limit(1)) == before[0]
