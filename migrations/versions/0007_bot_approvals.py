"""bot approvals: "ask these people to approve, call me back" requests, as OA instances or approval cards

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "bot_approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("originator_userid", sa.String(length=64), nullable=False),
        sa.Column("approvers", JSON, nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("form", JSON, nullable=False),
        sa.Column("callback", sa.String(length=200), nullable=False),
        sa.Column("context", JSON, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("process_code", sa.String(length=64), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("decisions", JSON, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("start_claimed_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("checked_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("callback_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_approvals")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_bot_approvals_idempotency_key")),
        sa.UniqueConstraint("instance_id", name=op.f("uq_bot_approvals_instance_id")),
    )
    op.create_index("ix_bot_approvals_state", "bot_approvals", ["state"])


def downgrade() -> None:
    op.drop_index("ix_bot_approvals_state", table_name="bot_approvals")
    op.drop_table("bot_approvals")
