"""payments: Stripe payments and events, refund payouts, gift codes, notices, the hash chain

Ledger entries gain `entry_hash` and accounts `chain_head`; existing entries are chained here,
account by account in id order, with the same rule as portal/ledger.py's chain_hash (copied, so
this migration means the same thing whatever the code later becomes). Doing it needs the
append-only triggers lifted for the length of the migration's transaction.

Revision ID: 0007
Revises: 0006
"""
import hashlib
import json
from datetime import timezone

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "ledger entries are append-only; record a correcting entry instead"
OLD_KINDS = ("grant", "topup", "charge", "refund", "expiry", "adjustment")
NEW_KINDS = OLD_KINDS + ("dispute",)


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _drop_append_only_guard():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER ledger_entry_append_only ON ledger_entry")
    else:
        op.execute("DROP TRIGGER ledger_entry_no_update")
        op.execute("DROP TRIGGER ledger_entry_no_delete")


def _create_append_only_guard():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry
            FOR EACH ROW EXECUTE FUNCTION ledger_entry_append_only()
        """)
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER ledger_entry_no_{event.lower()} BEFORE {event} ON ledger_entry
                BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END
            """)


def _chain_hash(previous, account_id, kind, amount, balance_after, reference, memo, created_at):
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=timezone.utc)
    moment = created_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    content = json.dumps([previous, account_id, kind, amount, balance_after, reference, memo, moment],
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _replace_check(table, name, condition):
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(name, table, type_="check")
        op.create_check_constraint(name, table, condition)
    else:
        with op.batch_alter_table(table, recreate="always") as batch_op:
            batch_op.drop_constraint(name, type_="check")
            batch_op.create_check_constraint(name, condition)


def _chain_existing_entries():
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, account_id, kind, amount, balance_after, reference, memo, created_at "
        "FROM ledger_entry ORDER BY account_id, id")).fetchall()
    heads = {}
    for row in rows:
        created_at = row.created_at
        if isinstance(created_at, str):  # SQLite through a plain text() query
            from datetime import datetime
            created_at = datetime.fromisoformat(created_at)
        digest = _chain_hash(heads.get(row.account_id, ""), row.account_id, row.kind, row.amount,
                             row.balance_after, row.reference, row.memo, created_at)
        bind.execute(sa.text("UPDATE ledger_entry SET entry_hash = :h WHERE id = :id"), {"h": digest, "id": row.id})
        heads[row.account_id] = digest
    for account_id, head in heads.items():
        bind.execute(sa.text("UPDATE account SET chain_head = :h WHERE id = :id"), {"h": head, "id": account_id})


def upgrade():
    _drop_append_only_guard()
    op.add_column("ledger_entry", sa.Column("entry_hash", sa.String(64), nullable=False, server_default=""))
    _replace_check("ledger_entry", "kind_valid", _in("kind", NEW_KINDS))
    op.add_column("account", sa.Column("chain_head", sa.String(64), nullable=False, server_default=""))
    op.add_column("account", sa.Column("low_balance_threshold", sa.BigInteger(), nullable=False,
                                       server_default="1000000"))
    op.add_column("account", sa.Column("low_balance_armed", sa.Boolean(), nullable=False, server_default=sa.true()))
    _chain_existing_entries()
    _create_append_only_guard()

    _replace_check("legal_document", "kind_valid", _in("kind", ("terms", "privacy", "refunds")))
    op.add_column("refund_request", sa.Column("close_account", sa.Boolean(), nullable=False,
                                              server_default=sa.false()))
    op.add_column("refund_request", sa.Column("amount_refunded", sa.BigInteger(), nullable=False,
                                              server_default="0"))
    op.add_column("refund_request", sa.Column("decision_reason", sa.Text(), nullable=True))

    op.create_table(
        "payment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("checkout_session_id", sa.String(255), nullable=True),
        sa.Column("payment_intent_id", sa.String(255), nullable=True),
        sa.Column("charge_id", sa.String(255), nullable=True),
        sa.Column("reference", sa.String(255), nullable=True),
        sa.Column("method", sa.String(32), nullable=True),
        sa.Column("receipt_url", sa.Text(), nullable=True),
        sa.Column("invoice_url", sa.Text(), nullable=True),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("disputed", sa.BigInteger(), nullable=False),
        sa.Column("dispute_status", sa.String(32), nullable=True),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(_in("status", ("pending", "paid", "failed")), name="status_valid"),
        sa.CheckConstraint(_in("source", ("stripe", "manual")), name="source_valid"),
        sa.CheckConstraint("amount > 0 AND refunded >= 0 AND disputed >= 0", name="payment_amounts_valid"),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("checkout_session_id"),
        sa.UniqueConstraint("payment_intent_id"),
        sa.UniqueConstraint("reference"),
    )
    op.create_index("ix_payment_account", "payment", ["account_id", "id"])
    op.create_index("ix_payment_charge_id", "payment", ["charge_id"])

    op.create_table(
        "stripe_event",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_stripe_event_account_id", "stripe_event", ["account_id"])

    op.create_table(
        "refund_payout",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("refund_request_id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("stripe_refund_id", sa.String(255), nullable=True),
        sa.Column("by_hand", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["refund_request_id"], ["refund_request.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payment.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_refund_id"),
    )
    op.create_index("ix_refund_payout_refund_request_id", "refund_payout", ["refund_request_id"])

    op.create_table(
        "gift_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("counts_as_topup", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeemed_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("amount > 0", name="gift_code_amount_positive"),
        sa.ForeignKeyConstraint(["redeemed_by"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_hash"),
    )

    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )

    op.create_table(
        "job_run",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade():
    for table in ("job_run", "notice", "gift_code", "refund_payout", "stripe_event", "payment"):
        op.drop_table(table)
    for column in ("decision_reason", "amount_refunded", "close_account"):
        with op.batch_alter_table("refund_request") as batch_op:
            batch_op.drop_column(column)
    _replace_check("legal_document", "kind_valid", _in("kind", ("terms", "privacy")))
    _drop_append_only_guard()
    for column in ("low_balance_armed", "low_balance_threshold", "chain_head"):
        with op.batch_alter_table("account") as batch_op:
            batch_op.drop_column(column)
    _replace_check("ledger_entry", "kind_valid", _in("kind", OLD_KINDS))
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column("ledger_entry", "entry_hash")
    else:
        with op.batch_alter_table("ledger_entry", recreate="always") as batch_op:
            batch_op.drop_column("entry_hash")
    _create_append_only_guard()
