"""The audit log: every read of patient data and every permission-relevant action (who, what, when, from where).

Kept at least 180 days (`AUDIT_RETENTION_DAYS`, default 365); administrators query it within their subtree.
`record()` is a plain function: services call it with the acting principal; the request's address, client and
request id are added when there is a request.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import orm

from workbench import db
from workbench.db import Model, UTCDateTime, utcnow

if TYPE_CHECKING:
    from workbench.auth.principal import Principal, Scope

log = logging.getLogger(__name__)


class AuditRecord(Model):
    __tablename__ = "audit_records"
    __table_args__ = (sa.Index("ix_audit_records_node_at", "node_id", "at"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: orm.Mapped[str] = orm.mapped_column(sa.String(140), index=True)  # "corp:userid", "operator", "system"
    actor_member_id: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)  # no FK: the log outlives members
    action: orm.Mapped[str] = orm.mapped_column(sa.String(64), index=True)  # e.g. auth.login, patient.read
    resource_type: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    resource_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(128))
    node_id: orm.Mapped[int | None] = orm.mapped_column(sa.Integer)  # where in the tree the resource lives
    outcome: orm.Mapped[str] = orm.mapped_column(sa.String(16), default="ok")  # ok | denied | failed
    ip: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    user_agent: orm.Mapped[str | None] = orm.mapped_column(sa.String(300))
    request_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
    detail: orm.Mapped[dict] = orm.mapped_column(default=dict)  # ids and counts only: never patient data


def record(
    principal: Principal | None,
    action: str,
    *,
    resource_type: str | None = None,
    resource_id: Any = None,
    node_id: int | None = None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    session: orm.Session | None = None,
) -> AuditRecord:
    """Record one action. With `session`, the record commits (or rolls back) with the change it describes;
    without, it is written at once in its own transaction, so a read is on record even if the request fails."""
    row = AuditRecord(
        at=utcnow(),
        # No principal: someone not signed in (a refused sign-in) in a request, the platform itself in a job.
        actor=principal.actor if principal else ("anonymous" if has_request_context() else "system"),
        actor_member_id=principal.member_id if principal else None,
        action=action,
        resource_type=resource_type,
        resource_id=None if resource_id is None else str(resource_id),
        node_id=node_id,
        outcome=outcome,
        detail=detail or {},
    )
    if has_request_context():
        row.ip = (request.access_route[0] if request.access_route else request.remote_addr) or None
        row.user_agent = (request.user_agent.string or "")[:300] or None
        row.request_id = getattr(g, "request_id", None)
    if session is not None:
        session.add(row)
        return row
    with orm.Session(db.get_db().engine, expire_on_commit=False) as own:
        own.add(row)
        own.commit()
    return row


def query(
    scope: Scope,
    *,
    actor: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> sa.Select:
    """Audit records an administrator may see: those about nodes in their subtree, and their own actions."""
    stmt = sa.select(AuditRecord).where(scope.records(AuditRecord.node_id, AuditRecord.actor_member_id))
    for column, value in (
        (AuditRecord.actor, actor),
        (AuditRecord.action, action),
        (AuditRecord.resource_type, resource_type),
        (AuditRecord.resource_id, resource_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditRecord.at >= since)
    if until is not None:
        stmt = stmt.where(AuditRecord.at < until)
    return stmt.order_by(AuditRecord.at.desc(), AuditRecord.id.desc())


def prune() -> int:
    """Delete records older than the retention period; returns how many went."""
    days = current_app.config["SETTINGS"].audit_retention_days
    cutoff = utcnow() - timedelta(days=days)
    with db.get_db().engine.begin() as conn:
        deleted = conn.execute(sa.delete(AuditRecord).where(AuditRecord.at < cutoff)).rowcount
    if deleted:
        log.info("audit records pruned", extra={"deleted": deleted, "retention_days": days})
    return deleted


def init_app(app: Flask) -> None:
    # Daily at 03:20 Asia/Shanghai (19:20 UTC), away from the 02:10 org reconciliation.
    app.extensions["workbench.queue"].every(86400, prune, name="audit.prune", offset=19 * 3600 + 20 * 60)
