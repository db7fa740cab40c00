"""console: inbox (reserved for issue 10's inbox work; no change yet)

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
