"""Legal documents: terms|privacy|refund-policy publish."""
from pathlib import Path

import click

from .. import legal
from ..models import LegalKind
from . import domain_command, privacy_cli, refund_policy_cli, terms_cli


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


@domain_command(refund_policy_cli, "publish")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--version", required=True, help="Version label shown to users, e.g. 2026-11.")
@click.option("--significant", is_flag=True, help="Mark the version as a significant change.")
def refund_policy_publish(file, version, significant):
    """Publish a new version of the refund policy from a Markdown file (shown at /legal/refunds)."""
    _publish(LegalKind.REFUND_POLICY, file, version, significant)
