"""user locale: the portal language a person chose

The portal speaks English and Simplified Chinese (portal/i18n.py). A person's choice in the
footer is kept on the account, so the portal and the mail sent to them follow it on every
device; None means "follow the browser's Accept-Language".

Revision ID: 0022
Revises: 0021
"""
import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("locale")
