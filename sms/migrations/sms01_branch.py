"""The SMS channel's Alembic branch (`sms`) starts here.

Its tables (sms_messages, sms_parts, sms_opt_outs, sms_work_items) were made by 0004, before
each part had a branch of its own; this revision changes nothing and is where the channel's
next migrations follow (`--head sms@head`).

Revision ID: sms01
Revises: 0004
"""
revision = "sms01"
down_revision = "0004"
branch_labels = ("sms",)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
