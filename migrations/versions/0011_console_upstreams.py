"""console: upstreams: credentials encrypted at rest, enable/disable, the private-host allowance

Upstreams gain `enabled` (a disabled upstream's models answer "unavailable") and
`allow_private_host` (portal/egress.py: without it a host on a private, loopback or link-local
address is refused). Existing credentials are encrypted with the app's key (UPSTREAM_KEYS_SECRET,
or the key derived from SECRET_KEY): this runs inside `flask db upgrade`, so the app's
configuration is at hand. Values that are already Fernet tokens are left alone, so running the
data step twice changes nothing. Upstreams that already point at a literal private address or
at localhost keep working: they get the allowance, with an audit entry saying why.
The downgrade decrypts the credentials again (and stops, changing nothing, if one cannot be).

Revision ID: 0011
Revises: 0010
"""
from datetime import datetime, timezone
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op
from flask import current_app

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

upstream = sa.table("upstream", sa.column("id", sa.Integer), sa.column("name", sa.String),
                    sa.column("base_url", sa.String), sa.column("api_key", sa.Text),
                    sa.column("allow_private_host", sa.Boolean))
audit_entry = sa.table("audit_entry", sa.column("at", sa.DateTime(timezone=True)), sa.column("actor", sa.String),
                       sa.column("action", sa.String), sa.column("target_type", sa.String),
                       sa.column("target_id", sa.String), sa.column("reason", sa.Text),
                       sa.column("before", sa.JSON), sa.column("after", sa.JSON))


def _private_literal(base_url):
    """The base URL's host is localhost or a literal address that is not public (no DNS here)."""
    from portal import egress

    host = (urlsplit(base_url or "").hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = egress.literal_address(host)
    return ip is not None and not egress.is_public(ip) and not egress.is_metadata(ip)


def upgrade():
    from portal import secretbox

    # Plain ALTER TABLE on both backends: SQLite's batch mode would copy the table, which models
    # refer to by foreign key.
    op.add_column("upstream", sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("upstream", sa.Column("allow_private_host", sa.Boolean(), nullable=False,
                                        server_default=sa.false()))
    conn = op.get_bind()
    box = secretbox.box(current_app.config)
    rows = conn.execute(sa.select(upstream.c.id, upstream.c.name, upstream.c.base_url, upstream.c.api_key)).all()
    for row_id, name, base_url, api_key in rows:
        if api_key and not secretbox.looks_encrypted(api_key):
            conn.execute(upstream.update().where(upstream.c.id == row_id)
                         .values(api_key=box.encrypt(api_key.encode()).decode()))
        if base_url and _private_literal(base_url):
            conn.execute(upstream.update().where(upstream.c.id == row_id).values(allow_private_host=True))
            conn.execute(audit_entry.insert().values(
                at=datetime.now(timezone.utc), actor="migration 0011", action="upstream.update",
                target_type="upstream", target_id=name[:128],
                reason="Kept working on upgrade: its base URL was already a private or loopback address.",
                before={"allow_private_host": False}, after={"allow_private_host": True}))


def downgrade():
    from portal import secretbox

    conn = op.get_bind()
    box = secretbox.box(current_app.config)
    plain = {}
    for row_id, name, api_key in conn.execute(sa.select(upstream.c.id, upstream.c.name, upstream.c.api_key)).all():
        if api_key and secretbox.looks_encrypted(api_key):
            try:
                plain[row_id] = box.decrypt(api_key.encode()).decode()
            except Exception:  # noqa: BLE001  (InvalidToken; nothing is changed before this check passes)
                raise RuntimeError(f"cannot downgrade: the credential of upstream {name!r} cannot be decrypted with "
                                   "UPSTREAM_KEYS_SECRET / SECRET_KEY; restore the setting it was saved under, or "
                                   "remove the credential first.") from None
    for row_id, value in plain.items():
        conn.execute(upstream.update().where(upstream.c.id == row_id).values(api_key=value))
    op.drop_column("upstream", "allow_private_host")  # SQLite 3.35+ drops a column in place
    op.drop_column("upstream", "enabled")
