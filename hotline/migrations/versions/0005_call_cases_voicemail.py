"""Several cases per call, idempotency keys bound to their request, voicemails as work items.

- cases.call_uniqueid: the call a case was reported on (a caller may report two problems in
  one call); until now the call's uniqueid was the case's idempotency key, so a second case
  from the same call came back as the first. Existing phone cases keep their link.
- cases.request_hash: SHA-256 of the request that created the case; a retry with the same key
  and another body is refused instead of answered with the first case.
- cases.idempotency_key widened: API keys are now prefixed with their user.
- calls.message_*: a voicemail left after hours or after a queue timeout waits in the agents'
  work list (open → converted | merged | dismissed). Messages left before this revision are open.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

from hotline.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("call_uniqueid", sa.String(64), nullable=True))
        batch.add_column(sa.Column("request_hash", sa.String(64), nullable=True))
        batch.alter_column("idempotency_key", type_=sa.String(200), existing_type=sa.String(128),
                           existing_nullable=True)
        batch.create_index("ix_cases_call_uniqueid", ["call_uniqueid"])
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("message_state", sa.String(10), nullable=True))
        batch.add_column(sa.Column("message_note", sa.String(200), nullable=True))
        batch.add_column(sa.Column("message_handled_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("message_handled_at", UTCDateTime(), nullable=True))
        batch.create_index("ix_calls_message_state", ["message_state"])
    op.execute("UPDATE cases SET call_uniqueid = idempotency_key WHERE channel = 'phone' AND idempotency_key IN "
               "(SELECT uniqueid FROM calls)")
    op.execute("UPDATE calls SET message_state = 'open' WHERE outcome = 'voicemail' AND case_id IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_message_state")
        for column in ("message_handled_at", "message_handled_by", "message_note", "message_state"):
            batch.drop_column(column)
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_call_uniqueid")
        batch.alter_column("idempotency_key", type_=sa.String(128), existing_type=sa.String(200),
                           existing_nullable=True)
        batch.drop_column("request_hash")
        batch.drop_column("call_uniqueid")
