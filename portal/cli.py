"""Operator commands (`flask --app wsgi GROUP COMMAND`): thin wrappers over the domain modules.

Every command runs in one transaction and turns domain errors into a one-line message with a
non-zero exit status.
"""
import functools
import re
import sys
import unicodedata
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from . import apikeys, calls, catalog, demo, dialects, expiry, giftcodes, ledger, legal, payments, pricefile, serving, users
from . import refunds as refund_requests
from . import usage as usage_records
from .database import atomic
from .errors import DomainError
from .extensions import db
from .models import Account, ContactMessage, EntryKind, LegalKind, RefundRequest, StripeEvent, User, utcnow
from .money import format_usd, parse_usd
from .pricing import Price

users_cli = AppGroup("users", help="Create, verify and suspend users.")
credits = AppGroup("credits", help="Grant credit, record manual top-ups, expire old credit.")
keys = AppGroup("keys", help="Issue API keys.")
upstreams = AppGroup("upstreams", help="Configure upstream providers.")
models = AppGroup("models", help="Configure public models and their prices.")
ledger_cli = AppGroup("ledger", help="Check the books.")
demo_cli = AppGroup("demo", help="Demo data for a local try-out.")
terms_cli = AppGroup("terms", help="Publish the terms of service.")
inbox_cli = AppGroup("inbox", help="What users sent the operator: contact messages and refund requests.")
privacy_cli = AppGroup("privacy", help="Publish the privacy policy.")
refunds_cli = AppGroup("refunds", help="Approve or reject requests for unused balance.")
codes_cli = AppGroup("codes", help="Create gift codes.")
refund_policy_cli = AppGroup("refund-policy", help="Publish the refund policy.")


def domain_command(group: AppGroup, *args, **kwargs):
    """Register a command that runs atomically and reports DomainError as a clean failure."""
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            try:
                with atomic():
                    return fn(*a, **kw)
            except DomainError as exc:
                raise click.ClickException(str(exc)) from None
        return group.command(*args, **kwargs)(wrapper)
    return decorate


@domain_command(users_cli, "create")
@click.argument("email")
@click.option("--password", help="Login password (omit for an account that cannot log in yet).")
@click.option("--admin", is_flag=True, help="Give operator rights in the portal.")
@click.option("--verified", is_flag=True, help="Mark the email address as verified.")
def users_create(email, password, admin, verified):
    """Create a user with an empty credit account."""
    user = users.create_user(email, password, admin=admin, verified=verified)
    click.echo(f"created {user.email}{' (admin)' if admin else ''}{' (verified)' if verified else ''}")


@domain_command(users_cli, "verify")
@click.argument("email")
def users_verify(email):
    """Mark a user's email address as verified."""
    user = users.find_user(email)
    user.is_verified = True
    click.echo(f"verified {user.email}")


@domain_command(users_cli, "suspend")
@click.argument("email")
@click.option("--reason", help="Shown to the user and kept for the record.")
def users_suspend(email, reason):
    """Suspend a user: their keys stop working at once."""
    user = users.find_user(email)
    users.suspend(user, reason)
    click.echo(f"suspended {user.email}: {user.status_reason}")


@domain_command(users_cli, "unsuspend")
@click.argument("email")
def users_unsuspend(email):
    """Lift a suspension."""
    user = users.find_user(email)
    users.unsuspend(user)
    click.echo(f"reactivated {user.email}")


@domain_command(credits, "grant")
@click.argument("email")
@click.argument("usd")
@click.option("--reason", required=True, help="Why the credit is given (kept in the ledger).")
@click.option("--reference", help="Idempotency reference: granting twice with it credits once.")
@click.option("--counts-as-topup", is_flag=True,
              help="Move the credit expiry to 12 months from now, as a paid top-up does (it still is not paid money).")
def credits_grant(email, usd, reason, reference, counts_as_topup):
    """Grant USD (a decimal string such as 5 or 0.000050) to a user's balance; by default the expiry stays."""
    amount = parse_usd(usd)
    if amount == 0:
        raise click.ClickException("amount must be greater than zero")
    if not reason.strip():
        raise click.ClickException("--reason must not be empty")
    user = users.find_user(email)
    entry = ledger.credit(user.account.id, amount, EntryKind.GRANT, memo=reason.strip(), reference=reference,
                          topup_at=utcnow() if counts_as_topup else None)
    expires_at = user.account.credits_expire_at
    click.echo(f"granted {format_usd(amount)} to {user.email}; balance {format_usd(entry.balance_after)}"
               f"{f'; credits expire {expires_at:%Y-%m-%d %H:%M} UTC' if expires_at else ''}")


@domain_command(keys, "create")
@click.argument("email")
@click.option("--name", default="", help="A label for the key.")
def keys_create(email, name):
    """Issue an API key; the key is printed alone on the last line and never shown again."""
    user = users.find_user(email)
    key, plaintext = apikeys.issue(user, name)
    click.echo(f"created key {key.name!r} ({key.hint}) for {user.email}")
    click.echo(plaintext)


_DIALECTS = click.Choice([*dialects.DIALECTS, "echo"])


@domain_command(upstreams, "add")
@click.argument("name")
@click.option("--protocol", required=True, type=click.Choice(["openai", "anthropic", "echo"]))
@click.option("--base-url", help="As the provider's SDK takes it: OpenAI-style ends in /v1, Anthropic-style is the host root.")
@click.option("--api-key", help="The upstream credential; '-' reads it from standard input (keeps it out of shell history).")
@click.option("--dialect", type=_DIALECTS, help="How it reports usage (default: guessed from the base URL's host).")
def upstreams_add(name, protocol, base_url, api_key, dialect):
    """Register an upstream provider."""
    if api_key == "-":
        api_key = sys.stdin.readline().strip()
    upstream = catalog.add_upstream(name, protocol, base_url, api_key, dialect)
    click.echo(f"added upstream {upstream.name} ({upstream.protocol}{', ' + upstream.base_url if upstream.base_url else ''}"
               f", dialect {upstream.dialect})")


@domain_command(upstreams, "update")
@click.argument("name")
@click.option("--base-url", help="A new base URL.")
@click.option("--api-key", help="A new credential; '-' reads it from standard input; '' removes it.")
@click.option("--dialect", type=_DIALECTS, help="How it reports usage.")
def upstreams_update(name, base_url, api_key, dialect):
    """Change an upstream's base URL, credential or dialect (takes effect within MODEL_CACHE_SECONDS)."""
    if api_key == "-":
        api_key = sys.stdin.readline().strip()
    upstream = catalog.update_upstream(name, base_url, api_key, dialect)
    click.echo(f"updated upstream {upstream.name} ({upstream.base_url or 'built in'}, dialect {upstream.dialect}, "
               f"{'credential set' if upstream.api_key else 'no credential'})")


@domain_command(upstreams, "list")
def upstreams_list():
    """List upstreams (credentials are never shown)."""
    for u in catalog.list_upstreams():
        click.echo(f"{u.name}\t{u.protocol}\t{u.base_url or '-'}\t{'credential set' if u.api_key else 'no credential'}"
                   f"\tdialect {u.dialect}")


def _rates_text(rates: dict, scale: str = "") -> str:
    return " ".join(f"{name}={format_usd(value)}{scale}" for name, value in rates.items())


def _price_lines(price: Price) -> list[str]:
    """Every price the operator set, USD per million tokens (fees: per thousand units), and what
    the classes left unset cost instead."""
    base = price.base_rates()
    lines = ["per million: " + _rates_text({n: v for n, v in base.items() if v is not None})]
    unset: dict[str, list] = {}
    for name, value in base.items():
        if value is None:
            how = {"reasoning": "as output"}.get(name, "as input" if name.startswith("cache_") else
                                                 "unpriced (charged the highest input-side price)")
            unset.setdefault(how, []).append(name)
    if unset:
        lines.append("unset: " + "; ".join(f"{' '.join(names)} {how}" for how, names in unset.items()))
    if price.fees:
        lines.append("per thousand: " + _rates_text(dict(sorted(price.fees.items()))))
    if price.long_context_above is not None:
        lines.append(f"above {price.long_context_above:,} input tokens: " + _rates_text(price.long_context))
    for tier, rates in sorted(price.service_tiers.items()):
        lines.append(f"tier {tier}: " + _rates_text(rates))
    return lines


@domain_command(models, "flagged")
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True, help="How far back to look.")
def models_flagged(days):
    """Calls charged with a class, fee or tier you have not priced, or read with a meter's note."""
    found = usage_records.flagged(utcnow() - timedelta(days=days))
    if not found:
        click.echo(f"no flagged calls in the past {days} days")
    for f in found:
        click.echo(f"{f.model_id}\t{f.calls} call{'s' if f.calls != 1 else ''}\tlast {f.last:%Y-%m-%d %H:%M} UTC"
                   f"\t{f.flag}")


@domain_command(models, "list")
def models_list():
    """List models with their upstream, settings and every price (USD per million tokens, per thousand units)."""
    for m in catalog.all_models():
        row = catalog.current_price(m.id)
        context = f"{m.context_window:,}" if m.context_window else f"{catalog.DEFAULT_CONTEXT_WINDOW:,} (default)"
        ceiling = "default" if m.tool_calls_ceiling is None else m.tool_calls_ceiling
        click.echo(f"{m.public_id}\t{'enabled' if m.enabled else 'disabled'}\t{m.upstream.name}/{m.upstream_model}"
                   f"\tmax_out={m.max_output_tokens}\tcontext_window={context}\tinput_by_reference={m.input_by_reference}"
                   f"\tunpriced_tier={m.unpriced_tier}\ttool_calls_ceiling={ceiling}")
        for line in ["no price"] if row is None else _price_lines(catalog.as_price(row)):
            click.echo(f"  {line}")


@domain_command(models, "disable")
@click.argument("model")
def models_disable(model):
    """Stop serving a model (calls get 404; its history stays)."""
    click.echo(f"disabled {catalog.set_enabled(model, False).public_id}")


@domain_command(models, "enable")
@click.argument("model")
def models_enable(model):
    """Serve a disabled model again."""
    click.echo(f"enabled {catalog.set_enabled(model, True).public_id}")


_CLASS_OPTIONS = ("cache_read", "cache_write", "cache_write_5m", "cache_write_1h", "input_audio", "output_audio",
                  "reasoning")


@domain_command(models, "set")
@click.argument("model")
@click.option("--upstream", "upstream_name", required=True, help="Name of a configured upstream.")
@click.option("--upstream-model", help="The model name the upstream knows (default: MODEL).")
@click.option("--input", "input_price", metavar="USD", required=True, help="USD per million input tokens.")
@click.option("--output", "output_price", metavar="USD", required=True, help="USD per million output tokens.")
@click.option("--cache-read", metavar="USD", help="USD per million cache-read tokens (default: the input price).")
@click.option("--cache-write", metavar="USD", help="The same as --cache-write-5m (its old name).")
@click.option("--cache-write-5m", metavar="USD", help="USD per million 5-minute cache-write tokens (default: the input price).")
@click.option("--cache-write-1h", metavar="USD", help="USD per million 1-hour cache-write tokens (default: the input price).")
@click.option("--input-audio", metavar="USD", help="USD per million audio input tokens (default: the highest input-side price, flagged).")
@click.option("--output-audio", metavar="USD", help="USD per million audio output tokens (default: the highest input-side price, flagged).")
@click.option("--reasoning", metavar="USD", help="USD per million reasoning tokens (default: the output price).")
@click.option("--fee", "fees", multiple=True, metavar="UNIT=USD",
              help="USD per thousand units of a fee, such as web_search=10; repeat for each.")
@click.option("--long-context-above", type=click.IntRange(min=1), metavar="N",
              help="Input tokens above which the --long-context prices apply to the whole call.")
@click.option("--long-context", multiple=True, metavar="CLASS=USD",
              help="A long-context price, USD per million, such as input=6; repeat for each class.")
@click.option("--tier", "tiers", multiple=True, metavar="NAME:CLASS=USD",
              help="A service tier's price, USD per million, such as priority:input=2.50; repeat.")
@click.option("--max-output-tokens", type=int, metavar="N", help="Cap and default for a call's output tokens.")
@click.option("--context-window", type=click.IntRange(min=1), metavar="N", help="Input tokens the model takes in all.")
@click.option("--input-by-reference", type=click.Choice(catalog.INPUT_BY_REFERENCE),
              help="Hold requests whose input is not in the body at the context window, or refuse them.")
@click.option("--unpriced-tier", type=click.Choice(catalog.UNPRICED_TIER),
              help="Refuse a requested service tier without prices, or strip it from the request.")
@click.option("--tool-calls-ceiling", type=click.IntRange(min=0), metavar="N",
              help="Server tool uses held for when a request sets no limit (default: TOOL_CALLS_CEILING).")
def models_set(model, upstream_name, upstream_model, input_price, output_price, fees, long_context_above,
               long_context, tiers, max_output_tokens, **options):
    """Create or update a model. The price given replaces the current one whole (a change is a new
    price, effective now); settings not given are kept."""
    price = pricefile.price_from_options(
        {"input": input_price, "output": output_price, **{name: options.pop(name) for name in _CLASS_OPTIONS}},
        fees=fees, long_context_above=long_context_above, long_context=long_context, tiers=tiers)
    row, changed = catalog.set_model(model, upstream_name, price, upstream_model=upstream_model,
                                     max_output_tokens=max_output_tokens,
                                     **{name: value for name, value in options.items() if value is not None})
    click.echo(f"model {row.public_id} -> {row.upstream.name}/{row.upstream_model}; "
               f"{'new price recorded' if changed else 'price unchanged'}")


@domain_command(models, "import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def models_import(file):
    """Create or update models from a price file (.json, or a .csv price list); all of it or nothing."""
    for public_id, outcome in pricefile.import_file(file):
        click.echo(f"{public_id}\t{outcome}")


@models.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
def models_export(file):
    """Write every model and its current price as a JSON price file (to FILE, or standard output)."""
    text = pricefile.export_json()
    if file is None:
        click.echo(text, nl=False)
    else:
        file.write_text(text, encoding="utf-8")
        click.echo(f"wrote {file}", err=True)


def _publish(kind: LegalKind, path: str, version: str, significant: bool) -> None:
    try:
        body = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    document = legal.publish(kind, version, body, significant=significant)
    # The refund policy is shown, not consented to: no one is held at the consent page for it.
    note = (" (significant: users must accept it at their next visit)"
            if significant and kind is not LegalKind.REFUND_POLICY else "")
    click.echo(f"published {kind.value} version {document.version}{note}")


for _group, _kind in ((terms_cli, LegalKind.TERMS), (privacy_cli, LegalKind.PRIVACY)):
    @domain_command(_group, "publish")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--version", required=True, help="Version label shown to users, e.g. 2026-11.")
    @click.option("--significant", is_flag=True, help="Users must accept it again before using the portal.")
    def _publish_command(file, version, significant, _kind=_kind):
        """Publish a new version from a Markdown file."""
        _publish(_kind, file, version, significant)


def shown(text: str | None, *, multiline: bool = False) -> str:
    """User-written text made safe for the operator's terminal: controls and bidi overrides escaped.

    An escape sequence in a contact message could recolour, move the cursor or rewrite earlier
    lines; a right-to-left override could make a line read differently from what it says. Each
    such character is shown as \\xNN or \\uNNNN instead. With `multiline`, line breaks start an
    indented continuation line rather than being escaped.
    """
    def escape(c: str) -> str:
        if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
        return c

    text = text or ""
    if not multiline:
        return "".join(map(escape, text))
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n  ".join("".join(map(escape, line)) for line in lines)


@inbox_cli.command("messages")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
def inbox_messages(limit):
    """Show contact-form messages."""
    rows = db.session.scalars(select(ContactMessage).order_by(ContactMessage.id.desc()).limit(limit)).all()
    for m in rows:
        click.echo(f"#{m.id} {m.created_at:%Y-%m-%d %H:%M} {shown(m.email)} ({shown(m.ip)}) — {shown(m.subject)}\n"
                   f"  {shown(m.message, multiline=True)}")
    if not rows:
        click.echo("no messages")


@inbox_cli.command("refunds")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
def inbox_refunds(limit):
    """Show refund requests (the payout itself is the operator's to make)."""
    rows = db.session.execute(select(RefundRequest, RefundRequest.contact_email)  # closing anonymises User.email
                              .order_by(RefundRequest.id.desc()).limit(limit)).all()
    for refund, email in rows:
        click.echo(f"#{refund.id} {refund.created_at:%Y-%m-%d %H:%M} {shown(email)} {format_usd(refund.balance_at_request)} "
                   f"[{refund.status}] {shown(refund.reason, multiline=True)}")
    if not rows:
        click.echo("no refund requests")


@inbox_cli.command("payments")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
def inbox_payments(limit):
    """Show Stripe events flagged for you: disputes, and payments that could not be credited as they were."""
    rows = db.session.execute(select(StripeEvent, User.email).outerjoin(Account, Account.id == StripeEvent.account_id)
                              .outerjoin(User, User.id == Account.user_id).where(StripeEvent.flagged.is_(True))
                              .order_by(StripeEvent.received_at.desc()).limit(limit)).all()
    for event, email in rows:
        click.echo(f"{event.received_at:%Y-%m-%d %H:%M} {event.type} {event.id} {shown(email) if email else '(no account)'}"
                   f"\n  {shown(event.outcome)}")
    if not rows:
        click.echo("nothing flagged")


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
@click.option("--older-than-minutes", type=click.IntRange(min=1), default=180, show_default=True,
              help="Release open holds placed longer ago than this; must exceed your longest call.")
def ledger_release_stale(older_than_minutes):
    """Release holds left open by calls that never finished (crashed processes); nothing is charged."""
    released = calls.release_stale(utcnow() - timedelta(minutes=older_than_minutes))
    click.echo(f"released {len(released)} stale hold(s){': ' + ', '.join(map(str, released)) if released else ''}")


# --- payments: users show, credits topup (payments.py) ------------------------------------------


def _day(moment) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


@users_cli.command("show")
@click.argument("email")
def users_show(email):
    """Show a user's status, balance, expiry, what they paid in the past 12 months, and open questions."""
    try:
        user = users.find_user(email)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    view = payments.overview(user)
    account = view.account
    status = user.status + (f" ({shown(user.status_reason)})" if user.status_reason and user.status != "active" else "")
    click.echo(f"{shown(user.email)} (account {account.id})")
    click.echo(f"  status:        {status}")
    click.echo(f"  balance:       {format_usd(account.balance)}")
    click.echo(f"  held:          {format_usd(account.held)}")
    click.echo(f"  available:     {format_usd(account.available)}")
    click.echo(f"  last top-up:   {_day(account.last_topup_at)}")
    click.echo(f"  expires:       {_day(account.credits_expire_at)}")
    click.echo(f"  paid, past 12 months: {format_usd(view.paid_gross)} "
               f"({format_usd(view.paid_net)} net of refunds and disputes)")
    refund = view.open_refund
    click.echo("  open refund request: " + ("none" if refund is None else
               f"#{refund.id} of {refund.created_at:%Y-%m-%d} ({format_usd(refund.balance_at_request)} at the time)"))
    for payment in view.disputed:
        click.echo(f"  dispute: payment #{payment.id} of {format_usd(payment.amount)}: {payment.dispute_status}, "
                   f"{format_usd(payment.disputed)} debited")
    for event in view.flagged:
        click.echo(f"  flagged: {event.received_at:%Y-%m-%d %H:%M} {event.type} {event.id}: {shown(event.outcome)}")


@domain_command(credits, "topup")
@click.argument("email")
@click.argument("usd")
@click.option("--reference", required=True,
              help="The transfer's or receipt's number: recording it twice credits once.")
@click.option("--method", default="bank transfer", show_default=True, help="How the money was paid.")
def credits_topup(email, usd, reference, method):
    """Record a paid top-up received by hand (bank transfer, cash): it moves the expiry, unlike a grant."""
    amount = parse_usd(usd)
    user = users.find_user(email)
    again = payments.manual_payment(reference) is not None
    payment = payments.record_manual_topup(user, amount, reference, method)
    if again:
        click.echo(f"already recorded: payment #{payment.id} of {format_usd(payment.amount)} with reference "
                   f"{shown(payment.reference)}; nothing credited")
        return
    db.session.flush()
    account = user.account
    db.session.refresh(account)
    click.echo(f"credited {format_usd(amount)} to {shown(user.email)} (payment #{payment.id}, {shown(method)}); "
               f"balance {format_usd(account.balance)}, credits valid until {_day(account.credits_expire_at)}")



# --- expiry: credits expire (expiry.py) ----------------------------------------------------------
class Moment(click.ParamType):
    """An ISO 8601 moment with its timezone ("2027-11-28T00:00:00Z")."""

    name = "ISO8601"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date and time, e.g. 2027-11-28T00:00:00Z", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} has no timezone; add one, e.g. 2027-11-28T00:00:00Z or +01:00", param, ctx)
        return moment


@domain_command(credits, "expire")
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


# --- refunds: refunds list|approve|reject, refund-policy publish (refunds.py) -------------------


@domain_command(refunds_cli, "list")
@click.option("--all", "include_closed", is_flag=True, help="Also list paid, refused and cancelled requests.")
def refunds_list(include_closed):
    """List refund requests, open ones first, with what approving would refund now."""
    rows = refund_requests.listing(include_closed)
    for row in rows:
        r = row.request
        line = (f"#{r.id} {r.created_at:%Y-%m-%d %H:%M} {shown(r.contact_email)} [{r.status}] "
                f"balance when asked {format_usd(r.balance_at_request)}")
        if row.refundable is not None:
            plan = row.refundable
            line += f"; refundable now {format_usd(plan.amount)}"
            line += f" ({format_usd(plan.by_hand)} of it by hand)" if plan.by_hand else ""
            line += " (credits expired)" if plan.expired else ""
        else:
            line += f"; refunded {format_usd(r.amount_refunded)}"
        line += "; close the account when paid" if r.close_account else ""
        if r.reason:
            line += f"\n  reason: {shown(r.reason, multiline=True)}"
        if r.decision_reason:
            line += f"\n  note: {shown(r.decision_reason, multiline=True)}"
        click.echo(line)
    if not rows:
        click.echo("no open refund requests" if not include_closed else "no refund requests")


@refunds_cli.command("approve")
@click.argument("request_id", type=int)
def refunds_approve(request_id):
    """Refund a request newest payment first (Stripe, or by hand for manual top-ups); safe to run again."""
    # Not a domain_command: approval commits payment by payment (a Stripe refund cannot be rolled back).
    try:
        result = refund_requests.approve(request_id)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    for p in result.payouts:
        if p.by_hand:
            click.echo(f"to pay back by hand: {format_usd(p.amount)} of payment {p.payment.id} "
                       f"({shown(p.payment.method or 'manual')}{', ' + shown(p.payment.reference) if p.payment.reference else ''})")
        else:
            click.echo(f"refunded {format_usd(p.amount)} of payment {p.payment.id} through Stripe ({p.stripe_refund_id})")
    refund = result.request
    if not result.done:
        raise click.ClickException(f"refund request {request_id} is still open, {format_usd(refund.amount_refunded)} "
                                   f"refunded so far: {result.stopped}")
    if refund.amount_refunded == 0:
        click.echo(f"refund request {request_id} closed as paid with $0.00: {refund.decision_reason}")
    else:
        click.echo(f"refund request {request_id} paid: {format_usd(refund.amount_refunded)} in all")
    if result.closed_account:
        click.echo("the account is closed, as the person asked")
    click.echo(f"mailed {shown(refund.contact_email)}")


@refunds_cli.command("reject")
@click.argument("request_id", type=int)
@click.option("--reason", required=True, help="Why: the person is told it by mail.")
def refunds_reject(request_id, reason):
    """Refuse a refund request; the balance stays and the person is told the reason."""
    try:
        refund = refund_requests.reject(request_id, reason)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"refund request {refund.id} refused; mailed {shown(refund.contact_email)}")


@domain_command(refund_policy_cli, "publish")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--version", required=True, help="Version label shown to users, e.g. 2026-11.")
@click.option("--significant", is_flag=True, help="Mark the version as a significant change.")
def refund_policy_publish(file, version, significant):
    """Publish a new version of the refund policy from a Markdown file (shown at /legal/refunds)."""
    _publish(LegalKind.REFUND_POLICY, file, version, significant)


# --- gift codes: codes create (giftcodes.py) -----------------------------------------------------


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
    """Serve the portal and proxy with waitress on HOST:PORT."""
    app = current_app._get_current_object()
    server = serving.create(app, app.config["HOST"], app.config["PORT"])
    click.echo(f"serving on http://{app.config['HOST']}:{server.effective_port}/ ({app.config['PORTAL_ENV']}, "
               f"{app.config['SERVE_THREADS']} threads)")
    if expiry.start_timer(app) is not None:  # a database claim keeps other processes from running it too
        click.echo(f"expiry job: every {app.config['JOBS_INTERVAL_SECONDS']} seconds")
    server.run()


def register(app: Flask) -> None:
    for group in (users_cli, credits, keys, upstreams, models, ledger_cli, demo_cli, terms_cli, privacy_cli, inbox_cli,
                  refunds_cli, codes_cli, refund_policy_cli):
        app.cli.add_command(group)
    app.cli.add_command(serve)
