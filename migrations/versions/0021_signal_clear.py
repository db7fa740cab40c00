"""signal clear: when the operator last cleared a key's sharing flag

A key flagged as shared can be a false positive (a CI fleet, a mobile carrier's rotating
addresses). The operator clears the flag; `sharing_cleared_at` keeps when, so the addresses the
key had been used from that UTC day before the clear do not flag it again (signals.record).

Revision ID: 0021
Revises: 0020
"""
import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sharing_cleared_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("sharing_cleared_at")
