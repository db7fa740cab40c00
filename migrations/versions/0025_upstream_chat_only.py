"""upstream.chat_only: an OpenAI-compatible upstream that speaks chat completions only

Calls to /v1/responses for its models are translated to chat completions (proxy/translate/).
Upstreams of the dialects deepseek, moonshot, dashscope and xai are chat-only whatever this says;
the flag marks any other (`upstreams update NAME --chat-only`).

Revision ID: 0025
Revises: 0024
"""
import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade():
    # In place, not a batch copy: SQLite cannot drop a table other tables' foreign keys point at (as 0011).
    op.add_column("upstream", sa.Column("chat_only", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    op.drop_column("upstream", "chat_only")  # SQLite 3.35+ drops a column in place
