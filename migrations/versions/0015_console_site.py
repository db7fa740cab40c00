"""console: site settings (branding, maintenance), incidents, and an index for the status page

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "site_setting",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "incident",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_incident_started", "incident", ["started_at"])
    # The status page reads each public model's calls of the last hour and day.
    op.create_index("ix_usage_model_time", "usage_record", ["model_id", "started_at"])


def downgrade():
    op.drop_index("ix_usage_model_time", table_name="usage_record")
    op.drop_index("ix_incident_started", table_name="incident")
    op.drop_table("incident")
    op.drop_table("site_setting")
