"""console: models: withdrawn price changes, cost prices, each call's upstream cost

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    # A future price change withdrawn before it took effect keeps its row (and the audit entry
    # says who withdrew it and why); the current-price lookup skips it.
    with op.batch_alter_table("model_price") as batch_op:
        batch_op.add_column(sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))
    # What the operator pays upstream, in the price file's shape (decimal strings of USD).
    with op.batch_alter_table("model") as batch_op:
        batch_op.add_column(sa.Column("cost_price", sa.JSON(), nullable=True))
    # Each call's cost at the model's cost price, in micro-dollars (NULL: no cost price then).
    with op.batch_alter_table("usage_record") as batch_op:
        batch_op.add_column(sa.Column("upstream_cost", sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table("usage_record") as batch_op:
        batch_op.drop_column("upstream_cost")
    with op.batch_alter_table("model") as batch_op:
        batch_op.drop_column("cost_price")
    with op.batch_alter_table("model_price") as batch_op:
        batch_op.drop_column("withdrawn_at")
