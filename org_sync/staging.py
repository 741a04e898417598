"""Staging tables of a full sync: what DingTalk returned, keyed by run, plus the per-department checkpoint.

A run streams every listing and user page here as it arrives, so nothing large is held in memory and an
interrupted run resumes from the departments not yet listed or paged (org_sync/walk.py). The live tables are
touched only once, when the whole tree has been fetched (org_sync/diff.py). Rows are deleted when the run finishes.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import orm

from workbench.db import Model, UTCDateTime


class OrgStageDept(Model):
    """A department seen by run `run_id`, with its checkpoint: children listed? members fully paged?"""

    __tablename__ = "org_stage_depts"

    run_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_sync_runs.id", ondelete="CASCADE"), primary_key=True)
    dept_id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, primary_key=True)
    parent_dept_id: orm.Mapped[int | None] = orm.mapped_column(sa.BigInteger)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    sort_order: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0)  # DingTalk order, else position
    has_order: orm.Mapped[bool] = orm.mapped_column(default=False)  # sort_order is DingTalk's (department/get)
    depth: orm.Mapped[int] = orm.mapped_column(default=0)
    code: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))  # from department/get, units only
    wants_detail: orm.Mapped[bool] = orm.mapped_column(default=False)  # department/get still to be fetched
    listed: orm.Mapped[bool] = orm.mapped_column(default=False)  # children staged
    paged: orm.Mapped[bool] = orm.mapped_column(default=False)  # every member page staged
    cursor: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0)  # next user page to fetch


class OrgStageUser(Model):
    """A user seen by the run: one row however many departments list them."""

    __tablename__ = "org_stage_users"

    run_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_sync_runs.id", ondelete="CASCADE"), primary_key=True)
    userid: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    unionid: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    title: orm.Mapped[str | None] = orm.mapped_column(sa.String(100))
    job_number: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    mobile_masked: orm.Mapped[str | None] = orm.mapped_column(sa.String(20))
    active: orm.Mapped[bool] = orm.mapped_column(default=True)
    is_admin: orm.Mapped[bool] = orm.mapped_column(default=False)
    is_boss: orm.Mapped[bool] = orm.mapped_column(default=False)


class OrgStageMembership(Model):
    """A (user, department) pair seen by the run, from that department's user pages."""

    __tablename__ = "org_stage_memberships"

    run_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_sync_runs.id", ondelete="CASCADE"), primary_key=True)
    userid: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    dept_id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, primary_key=True)
    is_leader: orm.Mapped[bool] = orm.mapped_column(default=False)
    sort_order: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0)


class OrgSyncLock(Model):
    """The one-full-sync-per-corp lock when Redis is not configured (SQLite embedded mode)."""

    __tablename__ = "org_sync_locks"

    corp_id: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    holder: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    expires_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime())
