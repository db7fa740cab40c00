"""call limits: a key's own concurrency limit, and usage records marked clamped

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=True))
    with op.batch_alter_table("usage_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("usage_clamped", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table("usage_record", schema=None) as batch_op:
        batch_op.drop_column("usage_clamped")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_column("max_concurrency")
