"""Confirmed placements the router learns from.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from hotline.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "address_evidence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=True),
        sa.Column("address_text", sa.String(300), nullable=False),
        sa.Column("district_code", sa.String(6), nullable=False),
        sa.Column("street_code", sa.String(9), nullable=True),
        sa.Column("community_code", sa.String(12), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("address_evidence")
