"""Calls and their recordings.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

from hotline.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uniqueid", sa.String(64), nullable=False, unique=True),
        sa.Column("linkedid", sa.String(64), nullable=True, index=True),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("channel", sa.String(128), nullable=True),
        sa.Column("caller", sa.String(40), nullable=True, index=True),
        sa.Column("caller_name", sa.String(80), nullable=True),
        sa.Column("dialled", sa.String(40), nullable=True),
        sa.Column("intent", sa.String(12), nullable=True),
        sa.Column("asked_case", sa.String(24), nullable=True),
        sa.Column("district_code", sa.String(16), nullable=True),
        sa.Column("queue", sa.String(64), nullable=True),
        sa.Column("agent", sa.String(64), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("queued_at", UTCDateTime(), nullable=True),
        sa.Column("answered_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("wait_seconds", sa.Double(), nullable=True),
        sa.Column("talk_seconds", sa.Double(), nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("recording_path", sa.String(300), nullable=True),
        sa.Column("recording_bytes", sa.Integer(), nullable=True),
        sa.Column("recording_seconds", sa.Double(), nullable=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=True, index=True),
        sa.Column("ivr", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("calls")
