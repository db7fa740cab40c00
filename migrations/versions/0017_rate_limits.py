"""rate limits

Per-minute request and token limits (portal/apilimits.py): the operator's overrides per account
and per key (requests, tokens, calls in flight; NULL means the configured default), and the
key owner's own lower per-minute limits. `rate_counter` holds the fixed-window counters of
portal/ratelimit.py when several processes share them without Redis.

Revision ID: 0017
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

OVERRIDES = (("rpm_limit", sa.Integer()), ("tpm_limit", sa.BigInteger()), ("concurrency_limit", sa.Integer()))
OWN = (("max_rpm", sa.Integer()), ("max_tpm", sa.BigInteger()))


def upgrade():
    with op.batch_alter_table("account") as batch:
        for name, kind in OVERRIDES:
            batch.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table("api_key") as batch:
        for name, kind in OVERRIDES + OWN:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "rate_counter",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )


def downgrade():
    op.drop_table("rate_counter")
    with op.batch_alter_table("api_key") as batch:
        for name, _ in reversed(OVERRIDES + OWN):
            batch.drop_column(name)
    with op.batch_alter_table("account") as batch:
        for name, _ in reversed(OVERRIDES):
            batch.drop_column(name)
