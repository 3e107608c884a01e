"""Voicemails as work items; the calls a case was reported on.

Telephony's Alembic branch (`ivr`) starts here; its `calls` table was made by 0003, before
each part had a branch of its own.

- calls.message_*: a voicemail left after hours or after a queue timeout waits in the agents'
  work list (open → converted | merged | dismissed). Messages left before this revision are open.
- The phone cases made before 0005 named their call by idempotency key: they get cases.call_uniqueid.

A database upgraded by the first cut of 0005 (which also held these columns) already has them:
they are added only where missing.

Revision ID: ivr01
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

from hotline.db import UTCDateTime

revision = "ivr01"
down_revision = "0004"
branch_labels = ("ivr",)
depends_on = "0005"   # cases.call_uniqueid

COLUMNS = (("message_state", sa.String(10)), ("message_note", sa.String(200)), ("message_handled_by", sa.String(64)),
           ("message_handled_at", UTCDateTime()))


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("calls")}
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("calls")}
    with op.batch_alter_table("calls") as batch:
        for name, type_ in COLUMNS:
            if name not in present:
                batch.add_column(sa.Column(name, type_, nullable=True))
        if "ix_calls_message_state" not in indexes:
            batch.create_index("ix_calls_message_state", ["message_state"])
    op.execute("UPDATE cases SET call_uniqueid = idempotency_key WHERE channel = 'phone' AND call_uniqueid IS NULL "
               "AND idempotency_key IN (SELECT uniqueid FROM calls)")
    op.execute("UPDATE calls SET message_state = 'open' WHERE outcome = 'voicemail' AND case_id IS NULL "
               "AND message_state IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_message_state")
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
