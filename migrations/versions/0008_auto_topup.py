"""auto top-up: a saved card charged off-session when the balance runs low

Accounts gain the Stripe customer and saved payment method, the person's settings (on/off,
threshold, amount, monthly ceiling) and the time of the last attempt (claimed by a conditional
UPDATE: at most one charge an hour). Payments gain `auto_topup`, which tells those charges
apart from Checkout top-ups.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ACCOUNT_COLUMNS = (
    ("stripe_customer_id", sa.String(255), True, None),
    ("auto_topup_payment_method", sa.String(255), True, None),
    ("auto_topup_card", sa.String(64), True, None),
    ("auto_topup_enabled", sa.Boolean(), False, sa.false()),
    ("auto_topup_threshold", sa.BigInteger(), False, "5000000"),
    ("auto_topup_amount", sa.BigInteger(), False, "20000000"),
    ("auto_topup_monthly_limit", sa.BigInteger(), False, "100000000"),
    ("auto_topup_last_attempt_at", sa.DateTime(timezone=True), True, None),
)


def upgrade():
    for name, type_, nullable, default in ACCOUNT_COLUMNS:
        op.add_column("account", sa.Column(name, type_, nullable=nullable, server_default=default))
    op.add_column("payment", sa.Column("auto_topup", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table("payment") as batch_op:
        batch_op.drop_column("auto_topup")
    with op.batch_alter_table("account") as batch_op:
        for name, *_ in reversed(ACCOUNT_COLUMNS):
            batch_op.drop_column(name)
