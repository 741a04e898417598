"""org sync staging tables (per-run checkpoint) and the database lock

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import workbench.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["org_sync_runs.id"], name=op.f(f"fk_{table}_run_id_org_sync_runs"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "org_stage_depts",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("dept_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_dept_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sort_order", sa.BigInteger(), nullable=False),
        sa.Column("has_order", sa.Boolean(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("wants_detail", sa.Boolean(), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("paged", sa.Boolean(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        _run_fk("org_stage_depts"),
        sa.PrimaryKeyConstraint("run_id", "dept_id", name=op.f("pk_org_stage_depts")),
    )
    op.create_table(
        "org_stage_users",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("userid", sa.String(length=64), nullable=False),
        sa.Column("unionid", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=True),
        sa.Column("job_number", sa.String(length=64), nullable=True),
        sa.Column("mobile_masked", sa.String(length=20), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("is_boss", sa.Boolean(), nullable=False),
        _run_fk("org_stage_users"),
        sa.PrimaryKeyConstraint("run_id", "userid", name=op.f("pk_org_stage_users")),
    )
    op.create_table(
        "org_stage_memberships",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("userid", sa.String(length=64), nullable=False),
        sa.Column("dept_id", sa.BigInteger(), nullable=False),
        sa.Column("is_leader", sa.Boolean(), nullable=False),
        sa.Column("sort_order", sa.BigInteger(), nullable=False),
        _run_fk("org_stage_memberships"),
        sa.PrimaryKeyConstraint("run_id", "userid", "dept_id", name=op.f("pk_org_stage_memberships")),
    )
    op.create_table(
        "org_sync_locks",
        sa.Column("corp_id", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("corp_id", name=op.f("pk_org_sync_locks")),
    )


def downgrade() -> None:
    op.drop_table("org_sync_locks")
    op.drop_table("org_stage_memberships")
    op.drop_table("org_stage_users")
    op.drop_table("org_stage_depts")
