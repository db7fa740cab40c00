"""known addresses: the networks each person signed in from, for new-address security notices

`known_address` holds one row per (person, network): IPv4 /24 or IPv6 /64, first and last seen.
A sign-in from a network not listed mails the person (portal/security_notices.py). The network is
personal data: the privacy job sets it to NULL after IP_RETENTION_DAYS without a sign-in from it
(the row stays, so a later sign-in is still known not to be the first), and erases the rows of a
closed account.

Revision ID: 0024
Revises: 0023
"""
import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "known_address",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("network", sa.String(64), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_known_address", "known_address", ["user_id", "network"], unique=True)
    op.create_index("ix_known_address_last_seen", "known_address", ["last_seen_at"])


def downgrade():
    op.drop_index("ix_known_address_last_seen", table_name="known_address")
    op.drop_index("uq_known_address", table_name="known_address")
    op.drop_table("known_address")
