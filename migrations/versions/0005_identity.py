"""identity hardening: server-side sessions, single-use TOTP steps, refund requests with a lifecycle

- user_session: one row per logged-in browser session, so logging out ends it on the server.
- user_account.totp_last_step: the time step of the last accepted TOTP code (a code works once).
- refund_request: the person's real contact address, a status check, when it was resolved, and
  at most one open ("requested") request per account.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OPEN = sa.text("status = 'requested'")


def upgrade():
    op.create_table(
        "user_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("user_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_session_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))

    with op.batch_alter_table("refund_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("contact_email", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    # Requests filed before this revision: the account's address is the best contact there is
    # (for a closed account it is already anonymised; the operator finds the person by user id).
    op.execute("UPDATE refund_request SET contact_email = (SELECT email FROM user_account "
               "WHERE user_account.id = refund_request.user_id)")
    # Earlier code filed a new request on every decline; keep the newest open one per account.
    op.execute("UPDATE refund_request SET status = 'cancelled' WHERE status = 'requested' AND id < "
               "(SELECT MAX(r.id) FROM refund_request r WHERE r.user_id = refund_request.user_id "
               "AND r.status = 'requested')")
    with op.batch_alter_table("refund_request", schema=None) as batch_op:
        batch_op.alter_column("contact_email", existing_type=sa.String(length=254), nullable=False)
        batch_op.create_check_constraint("status_valid",
                                         "status IN ('requested', 'cancelled', 'paid', 'refused')")
        batch_op.create_index("uq_refund_request_open", ["user_id"], unique=True,
                              sqlite_where=OPEN, postgresql_where=OPEN)


def downgrade():
    with op.batch_alter_table("refund_request", schema=None) as batch_op:
        batch_op.drop_index("uq_refund_request_open")
        batch_op.drop_constraint("status_valid", type_="check")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("contact_email")

    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_column("totp_last_step")

    with op.batch_alter_table("user_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_session_user_id"))
    op.drop_table("user_session")
