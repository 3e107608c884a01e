"""Several cases per call, idempotency keys bound to their request.

The case core's Alembic branch (`case_bridge`) starts here; 0001–0004 are the history from
before each part had a branch of its own.

- cases.call_uniqueid: the call a case was reported on (a caller may report two problems in
  one call); until now the call's uniqueid was the case's idempotency key, so a second case
  from the same call came back as the first. (Existing phone cases keep their link: ivr01.)
- cases.request_hash: SHA-256 of the request that created the case; a retry with the same key
  and another body is refused instead of answered with the first case.
- cases.idempotency_key widened: API keys are now prefixed with their user.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = ("case_bridge",)
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("call_uniqueid", sa.String(64), nullable=True))
        batch.add_column(sa.Column("request_hash", sa.String(64), nullable=True))
        batch.alter_column("idempotency_key", type_=sa.String(200), existing_type=sa.String(128),
                           existing_nullable=True)
        batch.create_index("ix_cases_call_uniqueid", ["call_uniqueid"])


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_call_uniqueid")
        batch.alter_column("idempotency_key", type_=sa.String(128), existing_type=sa.String(200),
                           existing_nullable=True)
        batch.drop_column("request_hash")
        batch.drop_column("call_uniqueid")
