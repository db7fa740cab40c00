"""operations: what a hold was placed for, so a call that never settles gets its usage record

A serving process killed mid-call leaves its hold open and writes no usage record. The sweep
that releases such holds (calls.release_stale) writes one with status `abandoned`, from what
the hold recorded when it was placed: the model, upstream and price ids, the route and whether
it streamed. No client address: hold rows are kept for good, addresses only IP_RETENTION_DAYS.

Revision ID: 0020
Revises: 0019
"""
import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("hold", schema=None) as batch_op:
        batch_op.add_column(sa.Column("call_details", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("hold", schema=None) as batch_op:
        batch_op.drop_column("call_details")
