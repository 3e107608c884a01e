"""The shared kernel's Alembic branch (`hotline`) starts here.

Its tables (users, api_keys) were made by 0001 with the first case tables, before each part
had a branch of its own; this revision changes nothing and is where the kernel's next
migrations follow (`--head hotline@head`).

Revision ID: hotline01
Revises: 0004
"""
revision = "hotline01"
down_revision = "0004"
branch_labels = ("hotline",)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
