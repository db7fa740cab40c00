"""console: dashboards and privacy jobs

Daily rollups of usage for the console's dashboards (one row per UTC day and upstream/model,
per day and account, and per day, upstream and latency bucket), refreshed by the periodic job
for closed days; `rollup_day` says which days are in them. Indexes for the live parts of the
dashboards (today's calls, refunds and disputes in the ledger, paid payments, open holds) and
for the privacy job (usage records whose client address is still kept). Users gain
`personal_data_erased_at`: when the closed-account retention job cleared their personal data.

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

KEPT_IP = sa.text("client_ip IS NOT NULL")
OPEN = sa.text("status = 'open'")


def upgrade():
    op.create_table(
        "rollup_day",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("rolled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "usage_day",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("upstream_id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), primary_key=True),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("spend", sa.BigInteger(), nullable=False),
        sa.Column("costed_calls", sa.BigInteger(), nullable=False),
        sa.Column("costed_spend", sa.BigInteger(), nullable=False),
        sa.Column("upstream_cost", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "usage_account_day",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("account_id", sa.Integer(), primary_key=True),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("spend", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "usage_latency_day",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("upstream_id", sa.Integer(), primary_key=True),
        sa.Column("metric", sa.String(16), primary_key=True),
        sa.Column("bucket", sa.Integer(), primary_key=True),
        sa.Column("calls", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_usage_started", "usage_record", ["started_at"])
    op.create_index("ix_usage_ip_kept", "usage_record", ["started_at"], sqlite_where=KEPT_IP, postgresql_where=KEPT_IP)
    op.create_index("ix_ledger_entry_kind_time", "ledger_entry", ["kind", "created_at"])
    op.create_index("ix_payment_paid", "payment", ["status", "paid_at"])
    op.create_index("ix_hold_open_age", "hold", ["created_at"], sqlite_where=OPEN, postgresql_where=OPEN)
    op.add_column("user_account", sa.Column("personal_data_erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("user_account") as batch_op:
        batch_op.drop_column("personal_data_erased_at")
    op.drop_index("ix_hold_open_age", table_name="hold")
    op.drop_index("ix_payment_paid", table_name="payment")
    op.drop_index("ix_ledger_entry_kind_time", table_name="ledger_entry")
    op.drop_index("ix_usage_ip_kept", table_name="usage_record")
    op.drop_index("ix_usage_started", table_name="usage_record")
    op.drop_table("usage_latency_day")
    op.drop_table("usage_account_day")
    op.drop_table("usage_day")
    op.drop_table("rollup_day")
