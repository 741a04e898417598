"""Sign-in state (rotating refresh tokens) and the roles administrators grant."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import orm

from workbench.db import Model, UTCDateTime, utcnow


class RefreshToken(Model):
    """One refresh token of a sign-in. Each refresh replaces it by a new one of the same family; presenting a
    replaced token again means it was stolen, so the whole family is revoked (OAuth 2.0 Security BCP §4.14)."""

    __tablename__ = "auth_refresh_tokens"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    token_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)  # sha256 hex; never the token
    family: orm.Mapped[str] = orm.mapped_column(sa.String(32), index=True)  # one sign-in
    member_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_members.id", ondelete="CASCADE"), index=True)
    issued_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    expires_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime())
    replaced_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())  # rotated: a new token exists
    revoked_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())  # logout or reuse detected
    client: orm.Mapped[str | None] = orm.mapped_column(sa.String(16))  # h5 (inside DingTalk) | browser


class RoleGrant(Model):
    """A role an administrator gave a member over a node's subtree (e.g. 转诊协调员 of a hospital's 转诊办)."""

    __tablename__ = "auth_role_grants"
    __table_args__ = (sa.Index("ix_auth_role_grants_member_live", "member_id", "revoked_at"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    member_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_members.id", ondelete="CASCADE"))
    role: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    note: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    granted_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))  # the granting actor ("corp:userid")
    granted_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    revoked_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(140))
    revoked_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
