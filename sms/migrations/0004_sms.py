"""The SMS channel: messages in and out, their parts, opt-outs, the agents' SMS work list.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

from hotline.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_work_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("reference", sa.String(24), nullable=False, unique=True),
        sa.Column("phone", sa.String(40), nullable=False, index=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("first_at", UTCDateTime(), nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False, index=True),
        sa.Column("placement", sa.JSON(), nullable=False),
        sa.Column("category_key", sa.String(5), nullable=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=True),
    )
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("dedupe_key", sa.String(160), nullable=False, unique=True),
        sa.Column("phone", sa.String(40), nullable=False, index=True),
        sa.Column("service_addr", sa.String(21), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=True, index=True),
        sa.Column("work_item_id", sa.Integer(), sa.ForeignKey("sms_work_items.id"), nullable=True, index=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("outbox_key", sa.String(160), nullable=True, index=True),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_table(
        "sms_parts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("sms_messages.id"), nullable=False, index=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("smsc_id", sa.String(65), nullable=True, index=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("error", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("message_id", "seq"),
    )
    op.create_table(
        "sms_opt_outs",
        sa.Column("phone", sa.String(40), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("via", sa.String(80), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sms_opt_outs")
    op.drop_table("sms_parts")
    op.drop_table("sms_messages")
    op.drop_table("sms_work_items")
