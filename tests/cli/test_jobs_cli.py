"""`jobs run`: every periodic job once, for operators who run them from cron instead of serve's timer."""
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from portal.extensions import db
from portal.models import UsageRecord
from tests.domain.test_dashboards import Calls
from tests.factories import make_model, make_user

NOW = datetime(2026, 9, 1, 6, 0, tzinfo=timezone.utc)


def test_jobs_run_runs_expiry_privacy_and_rollups(app, cli):
    calls = Calls()
    model, user = make_model(), make_user("cron@example.com")
    old = calls.add(user, model, NOW - timedelta(days=91))
    recent = calls.add(user, model, NOW - timedelta(days=1))
    result = cli("jobs", "run", "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("privacy: ") for line in lines), result.output
    assert any(line.startswith("dashboard rollups: ") for line in lines), result.output
    assert any(line.startswith("legal notices: ") for line in lines), result.output
    db.session.rollback()
    ips = {r.request_id: r.client_ip for r in db.session.scalars(select(UsageRecord))}
    assert ips[old["request_id"]] is None and ips[recent["request_id"]] is not None
    # Again: nothing is erased twice, and it still succeeds.
    assert cli("jobs", "run", "--now", NOW.isoformat()).exit_code == 0
