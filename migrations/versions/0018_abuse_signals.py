"""abuse signals: client addresses per key and day, key-sharing flags, card fingerprints

`key_address` holds each distinct client address a key was used from, per UTC day (erased
after IP_RETENTION_DAYS like every client address). API keys gain the moment they were flagged
as shared and the count of addresses then; payments gain Stripe's card fingerprint, so accounts
paying with one card can be shown together.

Revision ID: 0018
Revises: 0017
"""
import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "key_address",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("api_key_id", sa.Integer(), sa.ForeignKey("api_key.id"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_key_address", "key_address", ["api_key_id", "day", "ip"], unique=True)
    op.create_index("ix_key_address_ip", "key_address", ["ip", "day"])
    op.create_index("ix_key_address_day", "key_address", ["day"])
    op.add_column("api_key", sa.Column("sharing_flagged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_key", sa.Column("sharing_addresses", sa.Integer(), nullable=True))
    op.add_column("payment", sa.Column("card_fingerprint", sa.String(64), nullable=True))
    op.create_index("ix_payment_card_fingerprint", "payment", ["card_fingerprint"])


def downgrade():
    op.drop_index("ix_payment_card_fingerprint", table_name="payment")
    with op.batch_alter_table("payment") as batch_op:
        batch_op.drop_column("card_fingerprint")
    with op.batch_alter_table("api_key") as batch_op:
        batch_op.drop_column("sharing_addresses")
        batch_op.drop_column("sharing_flagged_at")
    op.drop_index("ix_key_address_day", table_name="key_address")
    op.drop_index("ix_key_address_ip", table_name="key_address")
    op.drop_index("uq_key_address", table_name="key_address")
    op.drop_table("key_address")
