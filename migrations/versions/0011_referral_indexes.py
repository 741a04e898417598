"""referrals: index the named target doctor

The inbox is one OR over the receiving side's arms (target institution, target department, the named target
doctor). PostgreSQL can only answer an OR from indexes (BitmapOr) when every arm has one; without an index on
`target_member_id` every inbox list and its counts read the whole table (bench/referral.py, docs/BENCHMARKS.md
"Referral").

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referrals_target_member_id"), ["target_member_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_target_member_id"))
