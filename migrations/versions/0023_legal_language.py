"""legal language: a terms, privacy or refund-policy version may be published in several languages

`legal_document.lang` ("en" or "zh"; existing rows are English). The English row of a version
is the version itself: what people accept, what takes effect, what notices are mailed about. A
row in another language is a translation of it, published later under the same version label,
and shown to readers of that language. One row per (kind, version, lang).

Revision ID: 0023
Revises: 0022
"""
import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("legal_document", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lang", sa.String(length=8), nullable=False, server_default="en"))
        batch_op.drop_constraint("uq_legal_document_version", type_="unique")
        batch_op.create_unique_constraint("uq_legal_document_version", ["kind", "version", "lang"])


def downgrade():
    op.execute("DELETE FROM legal_document WHERE lang <> 'en'")  # translations: nothing points at them
    with op.batch_alter_table("legal_document", schema=None) as batch_op:
        batch_op.drop_constraint("uq_legal_document_version", type_="unique")
        batch_op.create_unique_constraint("uq_legal_document_version", ["kind", "version"])
        batch_op.drop_column("lang")
