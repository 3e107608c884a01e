"""Who handled an SMS work item and when, and how many texts an agent sent back to it.

The SMS channel's Alembic branch (`sms`) starts here, from the common trunk.

Revision ID: sms01
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

from hotline.db import UTCDateTime

revision = "sms01"
down_revision = "0004"
branch_labels = ("sms",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_work_items") as batch:
        batch.add_column(sa.Column("handled_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("handled_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("replies", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sms_work_items") as batch:
        batch.drop_column("replies")
        batch.drop_column("handled_at")
        batch.drop_column("handled_by")
