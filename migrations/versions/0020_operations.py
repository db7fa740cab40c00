"""operations

(stub: filled in by the issue-11 work)

Revision ID: 0020
Revises: 0019
"""
revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
