"""Legal documents: terms|privacy|refund-policy publish, status and notify (the console's twins)."""
from pathlib import Path

import click

from .. import legal
from ..audit import Actor
from ..database import atomic
from ..errors import DomainError
from ..models import LegalKind
from . import privacy_cli, refund_policy_cli, shown, terms_cli

GROUPS = ((terms_cli, LegalKind.TERMS), (privacy_cli, LegalKind.PRIVACY), (refund_policy_cli, LegalKind.REFUND_POLICY))


def _notify(document_id: int) -> None:
    # After the commit, batch by batch; a rerun (`notify`) mails only those not reached yet.
    sent = legal.send_notices(document_id)
    click.echo(f"mailed the advance notice to {sent} {'person' if sent == 1 else 'people'}")


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None


def _publish(kind: LegalKind, path: str, version: str, significant: bool, effective: str | None,
             reason: str | None) -> None:
    body = _read(path)
    try:
        with atomic():
            document = legal.publish(kind, version, body, significant=significant,
                                     effective_at=legal.parse_effective(effective), actor=Actor.cli(),
                                     reason=(reason or "").strip() or None)
            label, notify, document_id = document.version, legal.after_publish(document), document.id
            takes_effect = legal.when(document.takes_effect)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    consent = kind is not LegalKind.REFUND_POLICY
    if notify:
        note = (f" (significant: in force from {takes_effect}; users must accept it from then)" if consent
                else f" (in force from {takes_effect})")
    else:
        # The refund policy is shown, not consented to: no one is held at the consent page for it.
        note = " (significant: users must accept it at their next visit)" if significant and consent else ""
    click.echo(f"published {kind.value} version {shown(label)}{note}")
    if notify:
        _notify(document_id)


def _publish_translation(kind: LegalKind, path: str, version: str, lang: str, significant: bool,
                         effective: str | None, reason: str | None) -> None:
    if significant or effective:
        raise click.ClickException("a translation follows its English version's significance and dates: "
                                   "leave out --significant and --effective")
    body = _read(path)
    try:
        with atomic():
            document = legal.publish_translation(kind, version, lang, body, actor=Actor.cli(),
                                                 reason=(reason or "").strip() or None)
            label = document.version
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"published the {lang} text of {kind.value} version {shown(label)} (readers of {lang} now see it; "
               "nothing else changes)")


def _status(kind: LegalKind) -> None:
    rows = legal.version_rows(kind)
    if not rows:
        click.echo(f"no {legal.TITLES[kind.value]} published yet")
        return
    in_force = legal.current(kind)
    if in_force is not None:
        click.echo(f"in force: version {shown(in_force.version)} (since {legal.when(in_force.takes_effect)})")
    audience = legal.notice_audience(rows[0].document)
    for document in legal.upcoming(kind):
        row = next(r for r in rows if r.document.id == document.id)
        click.echo(f"scheduled: version {shown(document.version)} takes effect on {legal.when(document.takes_effect)};"
                   f" notice mailed to {row.notified} of {audience}")
    click.echo(f"{'VERSION':<20} {'PUBLISHED':<17} {'IN FORCE FROM':<20} {'SIGNIFICANT':<11} {'ACCEPTED':>8} "
               f"{'DECLINED':>8}  LANGUAGES")
    for row in rows:
        d = row.document
        effective = legal.when(d.takes_effect) if d.effective_at else "at publication"
        counts = ("-", "-") if kind is LegalKind.REFUND_POLICY else (row.accepted, row.declined)
        click.echo(f"{shown(d.version):<20} {d.published_at:%Y-%m-%d %H:%M}  {effective:<20} "
                   f"{'yes' if d.significant else 'no':<11} {counts[0]:>8} {counts[1]:>8}  "
                   f"{','.join(legal.languages(d))}")


def _request_notices(kind: LegalKind, version: str) -> int:
    try:
        with atomic():
            document = legal.find(kind, version)
            if document is None:
                raise click.ClickException(f"there is no {kind.value} version {version!r}")
            legal.request_notices(document, Actor.cli())
            return document.id
    except DomainError as exc:
        raise click.ClickException(str(exc)) from None


for _group, _kind in GROUPS:
    _what = legal.TITLES[_kind.value]
    _significant_help = ("Mark the version as a significant change (no one is asked to accept the refund policy)."
                         if _kind is LegalKind.REFUND_POLICY else
                         "Users must accept it again before using the portal (from --effective, if given).")

    @_group.command("publish", help=f"Publish a new version of the {_what} from a Markdown file.")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--version", required=True, help="Version label shown to users, e.g. 2026-11.")
    @click.option("--significant", is_flag=True, help=_significant_help)
    @click.option("--effective", metavar="ISO",
                  help="For a significant change: when it takes effect, e.g. 2026-12-15 (midnight UTC) or "
                       "2026-12-15T09:00:00+01:00. Everyone is mailed now and sees a banner until then.")
    @click.option("--reason", help="What changed (kept in the audit log).")
    @click.option("--lang", default=legal.ORIGINAL, show_default=True, metavar="CODE",
                  help="The text's language. A version is published in English first; --lang zh then adds its "
                       "Chinese text under the same --version (it takes the English version's dates).")
    def _publish_command(file, version, significant, effective, reason, lang, _kind=_kind):
        if lang == legal.ORIGINAL:
            _publish(_kind, file, version, significant, effective, reason)
        else:
            _publish_translation(_kind, file, version, lang, significant, effective, reason)

    @_group.command("status", help=f"Versions of the {_what}: when each took effect, who accepted and declined.")
    def _status_command(_kind=_kind):
        _status(_kind)

    @_group.command("notify", help=f"Mail the advance notice of a scheduled {_what} version to everyone not "
                                   "mailed yet (after a restart interrupted it, or for people who joined since).")
    @click.argument("version")
    def _notify_command(version, _kind=_kind):
        _notify(_request_notices(_kind, version))
