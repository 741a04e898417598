"""The app catalog (应用在线): the workbench's sections and the apps registered in them, with visibility rules.

The catalog is small (the province's 10+ apps plus what regions add), so rules are kept as JSON lists on the app
row and evaluated in Python: one query loads every active app, which keeps `GET /api/workbench/apps` fast.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from workbench.db import Model, UTCDateTime, utcnow

# JSON lists (the shared type map only covers dicts): JSONB on PostgreSQL, JSON text on SQLite.
JSONList = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

OWNER_KINDS = ("province", "regional")  # 省级统建 | 地方自建
STATES = ("active", "withdrawn")


class AppGroup(Model):
    """A section of the workbench (行政办公, 医疗临床 …): apps are shown under it, sections in `sort_order`."""

    __tablename__ = "catalog_groups"

    code: orm.Mapped[str] = orm.mapped_column(sa.String(32), primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    sort_order: orm.Mapped[int] = orm.mapped_column(default=0)


class CatalogApp(Model):
    """One app a member may open from the workbench.

    Visibility: the app is active and some vantage point of the member matches every non-empty rule
    (`mini_apps.catalog.service.can_open`). `visible_subtrees` empty means the owner's subtree (the whole tree for
    a province-built app); each other list empty means no restriction on that dimension.
    """

    __tablename__ = "catalog_apps"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    code: orm.Mapped[str] = orm.mapped_column(sa.String(40), unique=True)  # slug, used in URLs and audit
    name: orm.Mapped[str] = orm.mapped_column(sa.String(50))
    icon: orm.Mapped[str] = orm.mapped_column(sa.String(500))  # an https URL or a built-in icon name
    entry_url: orm.Mapped[str] = orm.mapped_column(sa.String(1000))  # "/h5/apps/<code>/" or an external https URL
    group_code: orm.Mapped[str] = orm.mapped_column(sa.ForeignKey("catalog_groups.code"), index=True)
    sort_order: orm.Mapped[int] = orm.mapped_column(default=100)
    description: orm.Mapped[str] = orm.mapped_column(sa.String(500), default="")
    owner_kind: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # province | regional
    # The subtree that owns the app (its admins manage it); null for province-built apps (the whole tree).
    owner_node_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    visible_subtrees: orm.Mapped[list[int]] = orm.mapped_column(JSONList, default=list)  # node ids
    visible_levels: orm.Mapped[list[str]] = orm.mapped_column(JSONList, default=list)
    visible_layers: orm.Mapped[list[str]] = orm.mapped_column(JSONList, default=list)
    visible_roles: orm.Mapped[list[str]] = orm.mapped_column(JSONList, default=list)
    state: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="active", index=True)
    withdrawn_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    withdrawn_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(140))  # the actor ("corp:userid")
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    updated_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
