"""bot outbox, daily sends, webhook robots and cards

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "bot_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("recipients", JSON, nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("delivered", JSON, nullable=False),
        sa.Column("inflight", JSON, nullable=True),
        sa.Column("receipts", JSON, nullable=False),
        sa.Column("send_result", JSON, nullable=True),
        sa.Column("process_query_key", sa.String(length=128), nullable=True),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("out_track_id", sa.String(length=64), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_bot_outbox_idempotency_key")),
        sa.UniqueConstraint("out_track_id", name=op.f("uq_bot_outbox_out_track_id")),
    )
    op.create_index("ix_bot_outbox_state_channel_target", "bot_outbox", ["state", "channel", "target"])
    op.create_index(op.f("ix_bot_outbox_task_id"), "bot_outbox", ["task_id"])
    op.create_index(op.f("ix_bot_outbox_instance_id"), "bot_outbox", ["instance_id"])
    op.create_table(
        "bot_daily_sends",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("userid", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("day", "content_digest", "userid", name=op.f("pk_bot_daily_sends")),
    )
    op.create_table(
        "bot_webhook_robots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=128), nullable=False),
        sa.Column("access_token", sa.String(length=128), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=True),
        sa.Column("created_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_webhook_robots")),
        sa.UniqueConstraint("name", name=op.f("uq_bot_webhook_robots_name")),
    )

    op.create_table(
        "bot_cards",
        sa.Column("out_track_id", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("acted_by", sa.String(length=64), nullable=True),
        sa.Column("action_id", sa.String(length=64), nullable=True),
        sa.Column("acted_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("out_track_id", name=op.f("pk_bot_cards")),
    )


def downgrade() -> None:
    op.drop_table("bot_cards")
    op.drop_table("bot_webhook_robots")
    op.drop_table("bot_daily_sends")
    op.drop_index(op.f("ix_bot_outbox_instance_id"), table_name="bot_outbox")
    op.drop_index(op.f("ix_bot_outbox_task_id"), table_name="bot_outbox")
    op.drop_index("ix_bot_outbox_state_channel_target", table_name="bot_outbox")
    op.drop_table("bot_outbox")
