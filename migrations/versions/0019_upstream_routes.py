"""upstream routes: several upstreams per public model, and each call's attempts

Revision ID: 0019
Revises: 0018
"""
import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "model_route",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("upstream_id", sa.Integer(), nullable=False),
        sa.Column("upstream_model", sa.String(length=128), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="1", nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("weight > 0 AND priority >= 0", name="model_route_weight_priority"),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"]),
        sa.ForeignKeyConstraint(["upstream_id"], ["upstream.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_model_route_model_upstream", "model_route", ["model_id", "upstream_id"], unique=True)
    # Each existing model keeps serving from its one upstream, now its one route.
    op.execute("INSERT INTO model_route (model_id, upstream_id, upstream_model, priority, weight, created_at) "
               "SELECT id, upstream_id, upstream_model, 1, 1, created_at FROM model")
    with op.batch_alter_table("usage_record") as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("usage_record") as batch_op:
        batch_op.drop_column("attempts")
    op.drop_index("ix_model_route_model_upstream", table_name="model_route")
    op.drop_table("model_route")
