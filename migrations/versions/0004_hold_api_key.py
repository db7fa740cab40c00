"""hold: the API key it counts against

So `flask ledger release-stale` can undo a hold left open by a crashed process whole: the
account's held amount and the key's spend-cap reservation.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("hold", schema=None) as batch_op:
        batch_op.add_column(sa.Column("api_key_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_hold_api_key_id", "api_key", ["api_key_id"], ["id"])


def downgrade():
    with op.batch_alter_table("hold", schema=None) as batch_op:
        batch_op.drop_constraint("fk_hold_api_key_id", type_="foreignkey")
        batch_op.drop_column("api_key_id")
