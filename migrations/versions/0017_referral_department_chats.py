"""referrals: the group chat a department or institution takes referral cards in (referral_chats)

One row per org node (unique): a registered existing group or a scene group the workbench created, with the
userids it put in (mini_apps/referral/chats.py). Cards of a referral whose receiving side has one go to that group
as one card instead of one card per person.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "referral_chats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("open_conversation_id", sa.String(length=100), nullable=True),
        sa.Column("chat_id", sa.String(length=100), nullable=True),
        sa.Column("owner_userid", sa.String(length=64), nullable=True),
        sa.Column(
            "member_userids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_by", sa.String(length=140), nullable=False),
        sa.Column("created_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_synced_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["org_nodes.id"], name=op.f("fk_referral_chats_node_id_org_nodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_chats")),
        sa.UniqueConstraint("node_id", name=op.f("uq_referral_chats_node_id")),
    )


def downgrade() -> None:
    op.drop_table("referral_chats")
