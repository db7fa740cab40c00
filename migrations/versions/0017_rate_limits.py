"""rate limits

(stub: filled in by the issue-11 work)

Revision ID: 0017
Revises: 0016
"""
revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
