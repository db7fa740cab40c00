"""Holds raced by many threads and by several processes: never overdrawn, never lost."""
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from portal import ledger
from portal.database import atomic
from portal.errors import HoldNotOpen, InsufficientFunds
from portal.extensions import db
from portal.models import Account, Hold, HoldStatus, LedgerEntry
from tests.factories import make_user

ROOT = Path(__file__).resolve().parents[2]
AMOUNT = 1_000
COVERED = 20


def race(app, workers: int, attempt) -> list:
    """Run `attempt()` in `workers` threads released together; return each thread's outcome."""
    barrier = threading.Barrier(workers)
    outcomes = [None] * workers

    def run(i):
        with app.app_context():
            barrier.wait()
            try:
                outcomes[i] = attempt()
            except Exception as exc:  # every outcome is asserted below
                outcomes[i] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def fresh_account(user) -> Account:
    db.session.rollback()  # end the read snapshot; see the rows as committed now
    return db.session.get(Account, user.account.id)


def test_fifty_threads_race_for_twenty_holds(app):
    user = make_user(credit=AMOUNT * COVERED)
    account_id = user.account.id

    def attempt():
        with atomic():
            return ledger.hold(account_id, AMOUNT)

    outcomes = race(app, 50, attempt)
    held = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, InsufficientFunds)]
    assert (len(held), len(refused)) == (COVERED, 50 - COVERED), outcomes
    account = fresh_account(user)
    assert (account.balance, account.held, account.available) == (AMOUNT * COVERED, AMOUNT * COVERED, 0)
    assert ledger.verify() == []


def test_fifty_threads_hold_and_settle_never_overdraw(app):
    user = make_user(credit=AMOUNT * COVERED)
    account_id = user.account.id

    def attempt():
        with atomic():
            hold_id = ledger.hold(account_id, AMOUNT)
        with atomic():
            return ledger.settle(hold_id, AMOUNT).balance_after

    outcomes = race(app, 50, attempt)
    balances_after = [o for o in outcomes if isinstance(o, int)]
    assert len(balances_after) == COVERED, outcomes
    assert all(isinstance(o, InsufficientFunds) for o in outcomes if not isinstance(o, int))
    assert min(balances_after) == 0 and sorted(balances_after) == [AMOUNT * i for i in range(COVERED)]
    account = fresh_account(user)
    assert (account.balance, account.held) == (0, 0)
    assert ledger.verify() == []


def test_a_hold_settled_by_many_threads_is_charged_once(app):
    user = make_user(credit=AMOUNT)
    with atomic():
        hold_id = ledger.hold(user.account.id, AMOUNT)

    def attempt():
        with atomic():
            return ledger.settle(hold_id, 300).id

    outcomes = race(app, 20, attempt)
    assert sum(isinstance(o, int) for o in outcomes) == 1
    assert sum(isinstance(o, HoldNotOpen) for o in outcomes) == 19
    account = fresh_account(user)
    assert (account.balance, account.held) == (AMOUNT - 300, 0)
    assert ledger.verify() == []


WORKER = textwrap.dedent("""
    import sys, time
    from portal import create_app, ledger
    from portal.database import atomic
    from portal.errors import InsufficientFunds
    account_id, attempts, start_at = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    app = create_app()
    with app.app_context():
        time.sleep(max(0.0, start_at - time.time()))
        won = 0
        for _ in range(attempts):
            try:
                with atomic():
                    hold_id = ledger.hold(account_id, %d)
                with atomic():
                    ledger.settle(hold_id, %d)
                won += 1
            except InsufficientFunds:
                pass
        print(won)
""" % (AMOUNT, AMOUNT))


def test_four_processes_race_for_twenty_charges(app, tmp_path):
    user = make_user(credit=AMOUNT * COVERED)
    env = dict(os.environ, DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], SECRET_KEY="test",
               PYTHONPATH=str(ROOT))
    start_at = time.time() + 3  # every process imports the app before the race starts
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(user.account.id), "10", str(start_at)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert sum(int(out) for out, _ in results) == COVERED
    account = fresh_account(user)
    assert (account.balance, account.held) == (0, 0)
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 1 + COVERED
    assert db.session.scalar(select(func.count()).select_from(Hold)
                             .where(Hold.status != HoldStatus.SETTLED.value)) == 0
    assert ledger.verify() == []
