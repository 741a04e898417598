"""referrals: one index that answers every inbox count from the index alone

The inbox counts by state are a grouped count per disjoint arm of the receiving side (mini_apps/referral/service.py
`Sides.box_arms`). With the list's filters (direction, priority) or the arms of a township's clinicians (no target
department named, or one of theirs), `ix_referrals_target_state` (target institution, state, id) leaves PostgreSQL
to read every matching row from the heap: a hospital's inbox filtered by priority read 135,000 rows (~300 ms at
1,020,000 referrals, a Parallel Seq Scan). With the filter columns and the target department in one index each arm
is an index-only scan: ~9 ms for the filtered hospital inbox, ~0.5 ms for a township's (bench/referral.py,
docs/BENCHMARKS.md "Referral"). State comes second so an unfiltered count still aggregates in index order.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_referrals_target_lists",
            ["target_institution_id", "state", "direction", "priority", "target_department_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index("ix_referrals_target_lists")
