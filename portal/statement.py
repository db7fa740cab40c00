"""An account's statement: every ledger entry with running balances, as rows, CSV and JSON.

Rows: each entry is a row of its own, except charges, which are summed per UTC day (a row says
how many calls and what they cost). A run of charges is also cut wherever another entry falls
between them (a top-up at noon splits that day's usage in two), so every row's balance is the
balance before it plus its amount, and the rows add up as they are shown.

The JSON also carries every entry exactly as the hash chain covers it (ledger.chain_hash), and
the chain head: anyone can recompute the chain with VERIFY_SCRIPT (docs/billing.md, "Checking a statement yourself").
The entries and the head are read as of one moment, so a call settling meanwhile cannot make a
statement that fails its own check.
"""
import csv
import io
import json
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from typing import Iterator, Optional

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from .extensions import db
from .ledger import GENESIS, stamp
from .models import Account, EntryKind, LedgerEntry, utcnow

LABELS = {
    EntryKind.TOPUP.value: "Top-up", EntryKind.GRANT.value: "Credit", EntryKind.CHARGE.value: "Usage",
    EntryKind.REFUND.value: "Refund", EntryKind.DISPUTE.value: "Disputed payment",
    EntryKind.EXPIRY.value: "Credits expired", EntryKind.ADJUSTMENT.value: "Adjustment",
}
CSV_COLUMNS = ["date", "time_utc", "kind", "description", "reference", "calls", "amount_usd", "amount_micro_usd",
               "balance_usd", "balance_micro_usd", "first_entry_id", "last_entry_id"]
# A spreadsheet runs a text cell starting with one of these as a formula (as views/usage.py guards).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

# The check a statement's reader runs (docs/billing.md, "Checking a statement yourself" holds the same lines; a test runs them).
VERIFY_SCRIPT = """\
import hashlib, json, sys
s = json.load(open(sys.argv[1], encoding="utf-8"))
head, balance = s["genesis"], 0
for e in s["entries"]:
    fields = [head, s["account_id"], e["kind"], e["amount"], e["balance_after"], e["reference"], e["memo"], e["created_at"]]
    head, balance = hashlib.sha256(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest(), balance + e["amount"]
    if head != e["hash"] or balance != e["balance_after"]: sys.exit(f"entry {e['id']} does not verify")
if head != s["chain_head"]: sys.exit("the chain head is not the last entry's hash: entries are missing")
if len(sys.argv) > 2 and sys.argv[2] not in [s["genesis"]] + [e["hash"] for e in s["entries"]]: sys.exit("your earlier chain head is gone: history was rewritten")
print(f"ok: {len(s['entries'])} entries, balance {balance} micro-USD, chain head {head}")
"""


# Memos the software itself writes on entries (giftcodes.py, users.py, demo.py, payments.py). The
# entry keeps its English memo (the hash chain covers it); a page shows it in its reader's language.
_MEMOS = [
    (re.compile(r"Gift code (?P<hint>TG-…\w+)"), lambda m: _l("Gift code %(hint)s", hint=m["hint"])),
    (re.compile(r"welcome credit"), lambda m: _l("welcome credit")),
    (re.compile(r"demo credit"), lambda m: _l("demo credit")),
    (re.compile(r"top-up by Stripe Checkout \(payment #(?P<id>\d+)\)"),
     lambda m: _l("top-up by Stripe Checkout (payment #%(id)s)", id=m["id"])),
    (re.compile(r"automatic top-up \(payment #(?P<id>\d+)\)"),
     lambda m: _l("automatic top-up (payment #%(id)s)", id=m["id"])),
    (re.compile(r"top-up by (?P<method>.+) \(reference (?P<reference>.+)\)"),
     lambda m: _l("top-up by %(method)s (reference %(reference)s)", method=m["method"], reference=m["reference"])),
    (re.compile(r"refund made in Stripe \(payment #(?P<id>\d+), charge (?P<charge>\S+)\)"),
     lambda m: _l("refund made in Stripe (payment #%(id)s, charge %(charge)s)", id=m["id"], charge=m["charge"])),
    (re.compile(r"payment #(?P<id>\d+) disputed \(Stripe dispute (?P<dispute>\S+)\)"),
     lambda m: _l("payment #%(id)s disputed (Stripe dispute %(dispute)s)", id=m["id"], dispute=m["dispute"])),
    (re.compile(r"credits expired on (?P<day>\d{4}-\d{2}-\d{2}), (?P<months>\d+) months after the last top-up"),
     lambda m: _l("credits expired on %(day)s, %(months)s months after the last top-up",
                  day=_Day(m["day"]), months=m["months"])),
    (re.compile(r"balance forfeited: account terminated by the operator \(without refund, as the terms allow\)"),
     lambda m: _l("balance forfeited: account terminated by the operator (without refund, as the terms allow)")),
    (re.compile(r"refund request (?P<id>\d+): to be paid back by hand \(manual top-up\)"),
     lambda m: _l("refund request %(id)s: to be paid back by hand (manual top-up)", id=m["id"])),
    (re.compile(r"refund request (?P<id>\d+): to be paid back by hand \((?P<method>.+)\)"),
     lambda m: _l("refund request %(id)s: to be paid back by hand (%(method)s)", id=m["id"], method=m["method"])),
    (re.compile(r"refund request (?P<id>\d+): refunded through Stripe"),
     lambda m: _l("refund request %(id)s: refunded through Stripe", id=m["id"])),
]


class _Day:
    """An ISO day from a memo, written in the reader's format (portal.i18n.day) when the memo is."""

    def __init__(self, iso: str):
        self.iso = iso

    def __str__(self) -> str:
        from .i18n import day
        return day(date.fromisoformat(self.iso))


def memo_words(memo: str) -> str:
    """An entry's memo for a page: a memo the software wrote in the reader's language, others as written."""
    for pattern, words in _MEMOS:
        found = pattern.fullmatch(memo)
        if found:
            return str(words(found))
    return memo


@dataclass(frozen=True)
class Row:
    """One line of the statement: an entry, or a day's run of charges summed."""

    at: datetime  # the entry's time, UTC; for summed charges, the last one's
    kind: str
    description: str
    reference: Optional[str]
    amount: int
    balance_after: int
    calls: int  # charges summed into this row; 0 for other entries
    first_entry_id: int
    last_entry_id: int

    @property
    def day(self) -> date:
        """The UTC day (a summed row covers charges of this day only)."""
        return self.at.date()


@dataclass(frozen=True)
class Statement:
    account_id: int
    generated_at: datetime
    chain_head: str
    balance: int
    rows: list[Row]  # oldest first


def _cut(account_id: int) -> tuple[str, int, int]:
    """The chain head, the balance and the newest entry's id, in one statement (so as of one moment)."""
    newest = select(func.coalesce(func.max(LedgerEntry.id), 0)).where(
        LedgerEntry.account_id == account_id).scalar_subquery()
    head, balance, last_id = db.session.execute(
        select(Account.chain_head, Account.balance, newest).where(Account.id == account_id)).one()
    return head, balance, last_id


def _entries(account_id: int, last_id: int):
    """The account's entries up to `last_id`, oldest first, streamed (a heavy user has millions)."""
    return db.session.execute(
        select(LedgerEntry.id, LedgerEntry.created_at, LedgerEntry.kind, LedgerEntry.amount,
               LedgerEntry.balance_after, LedgerEntry.reference, LedgerEntry.memo, LedgerEntry.entry_hash)
        .where(LedgerEntry.account_id == account_id, LedgerEntry.id <= last_id)
        .order_by(LedgerEntry.id).execution_options(yield_per=2000))


def _describe(kind: str, memo: str) -> str:
    label = LABELS.get(kind, kind)
    return f"{label}: {memo}" if memo else label


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)  # Postgres hands back the session's time zone


class _Rows:
    """Rows from entries fed oldest first. A run of charges is kept as its first id, its last
    entry, a count and a total, so a day of a million calls costs no more memory than one."""

    def __init__(self):
        self._run: Optional[list] = None  # [first id, last entry, calls, total]

    def _close(self) -> list[Row]:
        if self._run is None:
            return []
        first_id, last, calls, total = self._run
        self._run = None
        return [Row(_utc(last.created_at), EntryKind.CHARGE.value, f"Usage: {calls} call{'s' if calls != 1 else ''}",
                    None, total, last.balance_after, calls, first_id, last.id)]

    def feed(self, entry) -> list[Row]:
        """The rows that `entry` completes (none while a day's charges are still running)."""
        if entry.kind != EntryKind.CHARGE.value:
            return self._close() + [Row(_utc(entry.created_at), entry.kind, _describe(entry.kind, entry.memo),
                                        entry.reference, entry.amount, entry.balance_after, 0, entry.id, entry.id)]
        done = self._close() if self._run and _utc(self._run[1].created_at).date() != _utc(entry.created_at).date() else []
        if self._run is None:
            self._run = [entry.id, entry, 0, 0]
        self._run[1:] = [entry, self._run[2] + 1, self._run[3] + entry.amount]
        return done

    def finish(self) -> list[Row]:
        return self._close()


def rows(entries) -> Iterator[Row]:
    """Turn entries (oldest first) into statement rows, oldest first."""
    summary = _Rows()
    for entry in entries:
        yield from summary.feed(entry)
    yield from summary.finish()


def build(account_id: int) -> Statement:
    """The statement of an account as it stands now (rows oldest first)."""
    head, balance, last_id = _cut(account_id)
    return Statement(account_id, utcnow(), head, balance, list(rows(_entries(account_id, last_id))))


def _usd(micro: int) -> str:
    """Exact decimal USD for a spreadsheet: "-0.250000"."""
    whole, frac = divmod(abs(micro), 1_000_000)
    return f"{'-' if micro < 0 else ''}{whole}.{frac:06d}"


def _text(value: Optional[str]) -> str:
    value = value or ""
    return "'" + value if value.startswith(FORMULA_START) else value


def csv_lines(account_id: int) -> Iterator[str]:
    """The statement's rows as CSV, oldest first, a chunk at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    _, _, last_id = _cut(account_id)
    for row in rows(_entries(account_id, last_id)):
        yield buffer.getvalue()  # what is written so far: the header first, then each row
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([row.day.isoformat(), "" if row.calls else row.at.strftime("%H:%M:%S"), row.kind,
                         _text(row.description), _text(row.reference), row.calls or "", _usd(row.amount), row.amount,
                         _usd(row.balance_after), row.balance_after, row.first_entry_id, row.last_entry_id])
    yield buffer.getvalue()


def _row_json(row: Row) -> dict:
    return {"date": row.day.isoformat(), **asdict(row), "at": stamp(row.at)}


def json_chunks(account_id: int) -> Iterator[str]:
    """The statement as JSON: the account, the chain head, every entry with its hash, and the rows."""
    head, _, last_id = _cut(account_id)
    opening = {"account_id": account_id, "generated_at": stamp(utcnow()), "genesis": GENESIS, "chain_head": head}
    yield json.dumps(opening, ensure_ascii=False)[:-1] + ', "entries": ['
    summary, found = _Rows(), []
    for index, e in enumerate(_entries(account_id, last_id)):
        entry = {"id": e.id, "created_at": stamp(e.created_at), "kind": e.kind, "amount": e.amount,
                 "balance_after": e.balance_after, "reference": e.reference, "memo": e.memo, "hash": e.entry_hash}
        yield ("," if index else "") + json.dumps(entry, ensure_ascii=False)
        found.extend(summary.feed(e))  # the summed rows are few: kept until the entries are out
    found.extend(summary.finish())
    yield '], "rows": ' + json.dumps([_row_json(r) for r in found], ensure_ascii=False) + "}"
