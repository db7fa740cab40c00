"""console: legal: effective dates for legal documents, recorded declines, acceptance counts

- `legal_document.effective_at`: when a significant change takes effect; NULL means at
  publication (every version before this migration, and every non-significant one).
- `legal_decline`: who declined which version (the consent page's decline path), one row per
  person and version, so the console can list decliners.
- an index on `terms_acceptance(document_id, id)`: the console counts and lists acceptances per version.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("legal_document") as batch:
        batch.add_column(sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_terms_acceptance_document", "terms_acceptance", ["document_id", "id"])
    op.create_table(
        "legal_decline",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user_account.id"), nullable=False),
        sa.Column("document_id", sa.Integer(), sa.ForeignKey("legal_document.id"), nullable=False),
        sa.Column("declined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(45), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.UniqueConstraint("user_id", "document_id", name="uq_legal_decline_user_document"),
    )
    op.create_index("ix_legal_decline_document", "legal_decline", ["document_id", "id"])


def downgrade():
    op.drop_index("ix_legal_decline_document", table_name="legal_decline")
    op.drop_table("legal_decline")
    op.drop_index("ix_terms_acceptance_document", table_name="terms_acceptance")
    with op.batch_alter_table("legal_document") as batch:
        batch.drop_column("effective_at")
