"""precision control: drop the foreign keys of control_tasks that cannot fail (campaign, county, institution) and
of control_task_events.task_id (tasks are never deleted)

Their per-row checks were half of the foreign-key cost of dispatching a roster (bench/precision_control.py,
docs/BENCHMARKS.md): campaign_id is implied by person_id, org nodes are only ever soft-deleted, and every event is
written for an existing task. See the comments on ControlTask and ControlTaskEvent.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-24 09:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, referred table): names follow the metadata's naming convention, as migration 0018 created them.
DROPPED = (
    ("control_tasks", "campaign_id", "control_campaigns"),
    ("control_tasks", "county_id", "org_nodes"),
    ("control_tasks", "institution_id", "org_nodes"),
    ("control_task_events", "task_id", "control_tasks"),
)


def _name(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    for table in ("control_tasks", "control_task_events"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in [_name(*fk) for fk in DROPPED if fk[0] == table]:
                batch_op.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table in ("control_tasks", "control_task_events"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for t, column, referred in DROPPED:
                if t == table:
                    batch_op.create_foreign_key(_name(t, column, referred), referred, [column], ["id"])
