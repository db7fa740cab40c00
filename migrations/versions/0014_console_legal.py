"""console: legal (reserved for issue 10's legal work; no change yet)

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
