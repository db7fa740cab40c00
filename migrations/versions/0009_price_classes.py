"""price classes: cache-write durations, audio, reasoning, fees, long-context and service tiers

Prices gain the token classes providers bill separately (the old cache-write price is the
5-minute one), fees per thousand units, a long-context threshold with its prices, and prices per
service tier. Usage records gain the same classes, the fee units, the tier and the flags of a
call. Upstreams gain the dialect their usage is read in, guessed here from the base URL's host;
models gain their context window and two policies (input by reference, unpriced tiers).

Revision ID: 0009
Revises: 0008
"""
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# A copy, not an import: a migration must keep doing what it did when it was written.
_HOSTS = {"api.openai.com": "openai", "api.deepseek.com": "deepseek",
          "dashscope.aliyuncs.com": "dashscope", "dashscope-intl.aliyuncs.com": "dashscope",
          "api.moonshot.cn": "moonshot", "api.moonshot.ai": "moonshot", "api.x.ai": "xai",
          "openrouter.ai": "openrouter"}

PRICE_COLUMNS = ("cache_write_1h", "input_audio", "output_audio", "reasoning")
RECORD_COLUMNS = ("cache_write_1h_tokens", "input_audio_tokens", "output_audio_tokens", "reasoning_tokens")
MODEL_COLUMNS = (
    ("context_window", sa.BigInteger(), True, None),
    ("input_by_reference", sa.String(16), False, "hold"),
    ("unpriced_tier", sa.String(16), False, "refuse"),
    ("tool_calls_ceiling", sa.Integer(), True, None),
)
CLASS_CHECK = ("(cache_write_1h IS NULL OR cache_write_1h >= 0) AND (input_audio IS NULL OR input_audio >= 0)"
               " AND (output_audio IS NULL OR output_audio >= 0) AND (reasoning IS NULL OR reasoning >= 0)"
               " AND (long_context_above IS NULL OR long_context_above > 0)")


def _dialect(protocol, base_url):
    if protocol in ("anthropic", "echo"):
        return protocol
    return _HOSTS.get((urlsplit(base_url or "").hostname or "").lower(), "generic-openai")


def upgrade():
    # Both backends rename in place and carry the column's CHECK constraint along.
    op.execute("ALTER TABLE model_price RENAME COLUMN cache_write TO cache_write_5m")
    op.execute("ALTER TABLE usage_record RENAME COLUMN cache_write_tokens TO cache_write_5m_tokens")
    with op.batch_alter_table("model_price") as batch_op:
        for name in PRICE_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("fees", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("long_context_above", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("long_context", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("service_tiers", sa.JSON(), nullable=True))
        batch_op.create_check_constraint("class_prices_not_negative", CLASS_CHECK)
    with op.batch_alter_table("usage_record") as batch_op:
        for name in RECORD_COLUMNS:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("units", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("service_tier", sa.String(32), nullable=True))
        batch_op.add_column(sa.Column("long_context", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("flags", sa.JSON(), nullable=True))
    for name, type_, nullable, default in MODEL_COLUMNS:
        op.add_column("model", sa.Column(name, type_, nullable=nullable, server_default=default))
    op.add_column("upstream", sa.Column("dialect", sa.String(32), nullable=False, server_default="generic-openai"))
    conn = op.get_bind()
    for upstream_id, protocol, base_url in conn.execute(sa.text("SELECT id, protocol, base_url FROM upstream")).all():
        conn.execute(sa.text("UPDATE upstream SET dialect = :d WHERE id = :id"),
                     {"d": _dialect(protocol, base_url), "id": upstream_id})


def downgrade():
    with op.batch_alter_table("upstream") as batch_op:
        batch_op.drop_column("dialect")
    with op.batch_alter_table("model") as batch_op:
        for name, *_ in reversed(MODEL_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("usage_record") as batch_op:
        for name in ("flags", "long_context", "service_tier", "units", *reversed(RECORD_COLUMNS)):
            batch_op.drop_column(name)
    with op.batch_alter_table("model_price") as batch_op:
        batch_op.drop_constraint("class_prices_not_negative", type_="check")
        for name in ("service_tiers", "long_context", "long_context_above", "fees", *reversed(PRICE_COLUMNS)):
            batch_op.drop_column(name)
    op.execute("ALTER TABLE usage_record RENAME COLUMN cache_write_5m_tokens TO cache_write_tokens")
    op.execute("ALTER TABLE model_price RENAME COLUMN cache_write_5m TO cache_write")
