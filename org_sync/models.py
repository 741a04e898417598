"""The mirrored organisation tree (组织在线): nodes, members, memberships, the change log and sync runs.

Every row carries the DingTalk corpId it came from, so linked organisations (上下级组织) can be synced into one
tree. Nothing is hard-deleted by a sync: a node or member that disappears from DingTalk gets `deleted_at`.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import orm

from workbench.db import Model, UTCDateTime, utcnow

# Levels of the five-level tree, plus the departments inside an institution.
LEVELS = (
    "province_commission",  # 省卫健委
    "city_commission",  # 市卫健委
    "county_bureau",  # 区县卫健局
    "medical_community_lead",  # 医共体牵头单位
    "member_institution",  # 医共体成员单位
    "internal_department",  # 科室 / 处室 inside a unit
)
# 行政层 (commissions, bureaus), 运营层 (medical communities), 服务层 (institutions and their departments).
LAYERS = ("administrative", "operational", "service")


def path_ids(path: str) -> list[int]:
    """The node ids of a materialised path ("/1/5/42/"), root first: the node and its ancestors."""
    return [int(part) for part in path.strip("/").split("/") if part]


class OrgNode(Model):
    """A DingTalk department mirrored into the tree."""

    __tablename__ = "org_nodes"
    __table_args__ = (
        sa.UniqueConstraint("corp_id", "dept_id"),
        # "Everything under X" is a prefix match on the materialised path: one index range scan.
        sa.Index("ix_org_nodes_path", "path", postgresql_ops={"path": "varchar_pattern_ops"}),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    corp_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    dept_id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)
    parent_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    sort_order: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0)
    code: orm.Mapped[str | None] = orm.mapped_column(sa.String(64), index=True)  # 部门编码
    level: orm.Mapped[str] = orm.mapped_column(sa.String(32), index=True)
    layer: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    level_source: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # override | code | name | depth
    level_override: orm.Mapped[str | None] = orm.mapped_column(sa.String(32))  # set by an admin; sync never writes it
    path: orm.Mapped[str] = orm.mapped_column(sa.String(1000))  # "/<root id>/.../<own id>/" of node ids
    depth: orm.Mapped[int] = orm.mapped_column(default=0)
    deleted_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class OrgMember(Model):
    """A DingTalk user: one row however many departments they are in."""

    __tablename__ = "org_members"
    __table_args__ = (sa.UniqueConstraint("corp_id", "userid"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    corp_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    userid: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    unionid: orm.Mapped[str | None] = orm.mapped_column(sa.String(64), index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    title: orm.Mapped[str | None] = orm.mapped_column(sa.String(100))
    job_number: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    mobile_masked: orm.Mapped[str | None] = orm.mapped_column(sa.String(20))  # 138****5678; never the full number
    active: orm.Mapped[bool] = orm.mapped_column(default=True)
    is_admin: orm.Mapped[bool] = orm.mapped_column(default=False)
    is_boss: orm.Mapped[bool] = orm.mapped_column(default=False)
    deleted_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class OrgMembership(Model):
    """A member's position in one node."""

    __tablename__ = "org_memberships"

    member_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("org_members.id", ondelete="CASCADE"), primary_key=True
    )
    node_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("org_nodes.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    is_leader: orm.Mapped[bool] = orm.mapped_column(default=False)
    sort_order: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, default=0)


class OrgSyncRun(Model):
    """One full sync or reconciliation: what it did, what it cost, how it ended; its checkpoint to resume."""

    __tablename__ = "org_sync_runs"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    corp_id: orm.Mapped[str] = orm.mapped_column(sa.String(64), index=True)
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # full | reconcile
    # running → succeeded | refused (deletion guard) | failed; an interrupted run stays running until resumed
    state: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="running", index=True)
    started_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    finished_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    counts: orm.Mapped[dict] = orm.mapped_column(default=dict)  # created/updated/renamed/moved/deleted per entity
    api_calls: orm.Mapped[dict] = orm.mapped_column(default=dict)  # per API path; throttles and retries
    checkpoint: orm.Mapped[dict] = orm.mapped_column(default=dict)
    error: orm.Mapped[str | None] = orm.mapped_column(sa.String(1000))


class OrgChange(Model):
    """The change log: every create, update, rename, move, delete and restore, from what to what, and why."""

    __tablename__ = "org_changes"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    corp_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    entity: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # node | member | membership
    entity_key: orm.Mapped[str] = orm.mapped_column(sa.String(128), index=True)  # dept id, userid, "userid@dept"
    action: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # create | update | rename | move | delete | restore
    changes: orm.Mapped[dict] = orm.mapped_column(default=dict)  # {field: [old, new]}
    run_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_sync_runs.id"), index=True)
    event_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(128))  # the DingTalk event that caused it
    at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
