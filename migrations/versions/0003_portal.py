"""portal: legal documents and consent, email tokens, 2FA, key limits, refunds, contact

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 01:59:03.981499

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():

    op.create_table('legal_document',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('version', sa.String(length=40), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('significant', sa.Boolean(), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('terms', 'privacy')", name='kind_valid'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'version', name='uq_legal_document_version')
    )
    op.create_table('contact_message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('email_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('new_email', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("purpose IN ('verify', 'reset', 'change_email')", name='purpose_valid'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('email_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_token_user_id'), ['user_id'], unique=False)

    op.create_table('recovery_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('recovery_code', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recovery_code_user_id'), ['user_id'], unique=False)

    op.create_table('refund_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('balance_at_request', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('refund_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refund_request_user_id'), ['user_id'], unique=False)

    op.create_table('terms_acceptance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('document_id', sa.Integer(), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.ForeignKeyConstraint(['document_id'], ['legal_document.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('terms_acceptance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_terms_acceptance_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allowed_models', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('ip_allowlist', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('spend_cap_total', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('spend_cap_monthly', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('spent_total', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('spent_month', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('spent_month_key', sa.String(length=7), server_default='', nullable=False))
        batch_op.add_column(sa.Column('held', sa.BigInteger(), server_default='0', nullable=False))

    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('totp_enabled_at', sa.DateTime(timezone=True), nullable=True))




def downgrade():

    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_column('totp_enabled_at')
        batch_op.drop_column('totp_secret')
        batch_op.drop_column('session_epoch')

    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.drop_column('held')
        batch_op.drop_column('spent_month_key')
        batch_op.drop_column('spent_month')
        batch_op.drop_column('spent_total')
        batch_op.drop_column('spend_cap_monthly')
        batch_op.drop_column('spend_cap_total')
        batch_op.drop_column('ip_allowlist')
        batch_op.drop_column('allowed_models')

    with op.batch_alter_table('terms_acceptance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_terms_acceptance_user_id'))

    op.drop_table('terms_acceptance')
    with op.batch_alter_table('refund_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refund_request_user_id'))

    op.drop_table('refund_request')
    with op.batch_alter_table('recovery_code', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recovery_code_user_id'))

    op.drop_table('recovery_code')
    with op.batch_alter_table('email_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_token_user_id'))

    op.drop_table('email_token')
    op.drop_table('contact_message')
    op.drop_table('legal_document')

