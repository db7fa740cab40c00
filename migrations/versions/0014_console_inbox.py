"""console: inbox: contact categories, handled state and replies; announcements

Contact messages gain a category (question, billing, abuse), an abuse report's key hint or
request id and the key it names exactly, and the moment (and operator) that handled them;
replies are rows of their own. Announcements keep their recipients as rows so that sending
survives a restart: `sent_at` is set by a conditional UPDATE before each mail goes.

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("contact_message") as batch_op:
        batch_op.add_column(sa.Column("category", sa.String(16), nullable=False, server_default="question"))
        batch_op.add_column(sa.Column("reference", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("api_key_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("handled_by", sa.String(254), nullable=True))
        batch_op.create_foreign_key("fk_contact_message_api_key_id", "api_key", ["api_key_id"], ["id"])
        batch_op.create_check_constraint("category_valid", "category IN ('question', 'billing', 'abuse')")
        batch_op.create_index("ix_contact_message_queue", ["handled_at", "id"])

    op.create_table(
        "contact_reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(254), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["contact_message.id"]),
        sa.ForeignKeyConstraint(["author_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contact_reply_message_id", "contact_reply", ["message_id"])

    op.create_table(
        "announcement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("audience", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(254), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("audience IN ('all', 'active')", name="audience_valid"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "announcement_recipient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("announcement_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("skipped", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["announcement_id"], ["announcement.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_announcement_recipient", "announcement_recipient", ["announcement_id", "user_id"],
                    unique=True)
    op.create_index("ix_announcement_recipient_due", "announcement_recipient", ["announcement_id", "sent_at", "id"])


def downgrade():
    op.drop_index("ix_announcement_recipient_due", table_name="announcement_recipient")
    op.drop_index("uq_announcement_recipient", table_name="announcement_recipient")
    op.drop_table("announcement_recipient")
    op.drop_table("announcement")
    op.drop_index("ix_contact_reply_message_id", table_name="contact_reply")
    op.drop_table("contact_reply")
    with op.batch_alter_table("contact_message") as batch_op:
        batch_op.drop_index("ix_contact_message_queue")
        batch_op.drop_constraint("category_valid", type_="check")
        batch_op.drop_constraint("fk_contact_message_api_key_id", type_="foreignkey")
        batch_op.drop_column("handled_by")
        batch_op.drop_column("handled_at")
        batch_op.drop_column("api_key_id")
        batch_op.drop_column("reference")
        batch_op.drop_column("category")
