"""usage record: hold amount, route, streamed

The hold amount lets a receipt show when a call cost more than it reserved (the input
estimate was low); existing rows get neutral defaults.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("usage_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hold_amount", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("route", sa.String(length=32), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("streamed", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table("usage_record", schema=None) as batch_op:
        batch_op.drop_column("streamed")
        batch_op.drop_column("route")
        batch_op.drop_column("hold_amount")
