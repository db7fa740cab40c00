"""The books and the server: ledger verify|release-stale, credits expire, codes create, demo seed, serve."""
import re
from datetime import date, datetime, timedelta, timezone

import click
from flask import current_app

from .. import calls, demo, expiry, giftcodes, ledger, serving
from ..database import atomic
from ..models import utcnow
from ..money import format_usd, parse_usd
from . import Moment, codes_cli, credits_cli, demo_cli, domain_command, jobs_cli, ledger_cli, shown


@ledger_cli.command("verify")
def ledger_verify():
    """Recompute balances and holds from the ledger; exit 1 on any discrepancy."""
    problems = ledger.verify()
    for problem in problems:
        click.echo(problem)
    if problems:
        raise click.ClickException(f"{len(problems)} discrepancies found")
    click.echo("ledger ok: every balance equals the sum of its entries, every held amount its open holds")


@ledger_cli.command("release-stale")
@click.option("--older-than-seconds", type=click.IntRange(min=0),
              help="Release open holds placed longer ago than this (default: STALE_HOLD_SECONDS, three hours); "
                   "must exceed your longest call.")
@click.option("--older-than-minutes", type=click.IntRange(min=1), help="The same, in minutes.")
def ledger_release_stale(older_than_seconds, older_than_minutes):
    """Release holds left open by calls that never finished (killed processes); nothing is charged,
    and each call's usage record says `abandoned`. `serve` does this in its periodic jobs too."""
    if older_than_seconds is not None and older_than_minutes is not None:
        raise click.UsageError("give --older-than-seconds or --older-than-minutes, not both")
    seconds = (older_than_minutes * 60 if older_than_minutes is not None
               else older_than_seconds if older_than_seconds is not None else current_app.config["STALE_HOLD_SECONDS"])
    released = calls.release_stale(utcnow() - timedelta(seconds=seconds))
    click.echo(f"released {len(released)} stale hold(s){': ' + ', '.join(map(str, released)) if released else ''}")


@domain_command(credits_cli, "expire")
@click.option("--now", "now", type=Moment(), help="Act as if it were this moment (default: now).")
def credits_expire(now):
    """Expire credit past its date and send the 30- and 7-day warnings; safe to run again.

    From cron, hourly:  0 * * * *  cd /srv/tollgate && .venv/bin/flask --app wsgi credits expire
    """
    # The job commits account by account and mails after each commit (see expiry.py); the
    # transaction this command is wrapped in has nothing left to do by then.
    report = expiry.run(now)
    for item in report.expired:
        click.echo(f"expired {format_usd(item.amount)} of account {item.account_id} ({shown(item.email)}): "
                   f"credits expired on {item.expired_at:%Y-%m-%d}")
    for item in report.warned:
        click.echo(f"warned {shown(item.email)} (account {item.account_id}, {format_usd(item.balance)}): "
                   f"credits expire on {item.expires_at:%Y-%m-%d}, {item.days}-day warning")
    for account_id in report.in_flight:
        click.echo(f"skipped account {account_id}: a call is in flight; a later run expires it")
    click.echo(expiry.summary(report))


@jobs_cli.command("run")
@click.option("--now", "now", type=Moment(), help="Act as if it were this moment (default: now).")
def jobs_run(now):
    """Run every periodic job once, as `serve` does each JOBS_INTERVAL_SECONDS: expire credits and warn,
    release the holds of calls that never settled (older than STALE_HOLD_SECONDS), erase old client addresses and closed accounts' personal data, roll up the dashboards' days, and
    finish any interrupted notice of new terms. Safe to run again or from two places at once.

    From cron, hourly (with JOBS_INTERVAL_SECONDS=0):  7 * * * *  cd /srv/tollgate && .venv/bin/flask --app wsgi jobs run
    """
    app = current_app._get_current_object()
    report = expiry.run(now)
    click.echo(expiry.summary(report))
    expiry.other_jobs(app, now, echo=click.echo)





def _code_expiry(text: str | None):
    """An ISO 8601 moment (UTC when it names no offset); a date alone means the end of that day, UTC."""
    if text is None:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            day = date.fromisoformat(text.strip())
            return datetime.combine(day + timedelta(days=1), datetime.min.time(), timezone.utc)
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.ClickException(f"--expires must be an ISO 8601 date or moment, got {text!r}") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


@domain_command(codes_cli, "create")
@click.argument("usd")
@click.option("--count", type=click.IntRange(1, giftcodes.MAX_COUNT), default=1, show_default=True,
              help="How many codes to make.")
@click.option("--expires", help="ISO 8601 moment (UTC unless it says otherwise); a date alone: the end of that day, UTC.")
@click.option("--counts-as-topup", is_flag=True, help="Redeeming moves the credits' expiry like a paid top-up.")
def codes_create(usd, count, expires, counts_as_topup):
    """Make gift codes worth USD each; every code is printed once, one per line, and never again."""
    amount = parse_usd(usd)
    expires_at = _code_expiry(expires)
    codes = giftcodes.create(amount, count, expires_at, counts_as_topup)
    for code in codes:
        click.echo(code)
    # On stderr, so `codes create ... > codes.txt` writes only codes.
    click.echo(f"created {len(codes)} gift code(s) of {format_usd(amount)} each, "
               f"{'expiring ' + expires_at.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M UTC') if expires_at else 'never expiring'}, "
               f"{'counting' if counts_as_topup else 'not counting'} as a top-up for expiry", err=True)


@demo_cli.command("seed")
def demo_seed():
    """Create the demo admin, demo user, echo upstream and demo model once; print the credentials."""
    with atomic():
        created = demo.seed(current_app.instance_path)
    click.echo(demo.credentials_text(current_app.instance_path) if created is None else created)


@click.command("serve")
def serve():
    """Serve the portal and proxy with waitress on HOST:PORT, in WORKERS processes; stop on SIGTERM."""
    app = current_app._get_current_object()
    from .. import logs

    logs.configure_serving(app.config)
    serving.serve(app, echo=click.echo)
