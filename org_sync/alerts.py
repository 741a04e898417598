"""Alerts of org sync to people: a run refused by the deletion guard tells the corp's DingTalk administrators.

The alert goes through the bot's outbox (`bot.outbox.enqueue_message`) as a work notification, in the caller's
session, so it is queued in the same transaction that records the refusal and delivered after it commits.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy import orm

from bot import messages
from bot.outbox import enqueue_message
from org_sync.diff import Refusal
from org_sync.models import OrgMember, OrgNode

log = logging.getLogger(__name__)

KIND_NAMES = {"full": "全量同步", "reconcile": "定期对账"}


def refused_key(run_id: int) -> str:
    """The outbox idempotency key of a run's refusal alert: one alert per run, however often it is recorded."""
    return f"org_sync:refused:{run_id}"


def corp_admins(db: orm.Session, corp_id: str) -> list[str]:
    """Userids of the corp's DingTalk administrators as last synced (live, activated members with `is_admin`)."""
    return list(
        db.scalars(
            sa.select(OrgMember.userid)
            .where(
                OrgMember.corp_id == corp_id,
                OrgMember.is_admin.is_(True),
                OrgMember.active.is_(True),
                OrgMember.deleted_at.is_(None),
            )
            .order_by(OrgMember.userid)
        )
    )


def refused_message(run_id: int, kind: str, org_name: str, refusal: Refusal) -> dict:
    """The work notification of a refused run: what would have been removed, the limit, and how to proceed."""
    summary = "\n".join(
        [
            f"第 {run_id} 次组织架构{KIND_NAMES.get(kind, kind)}将删除的人员或部门超过允许比例，已被删除保护拦截，"
            "**未做任何更改**。",
            "",
            f"- 将删除人员：{refusal.members_gone} / {refusal.members_live}（{refusal.members_share:.1%}）",
            f"- 将删除部门：{refusal.nodes_gone} / {refusal.nodes_live}（{refusal.nodes_share:.1%}）",
            f"- 允许上限：{refusal.max_share:.1%}",
            "",
            "请先在钉钉通讯录核实这些人员和部门是否确已调离或删除（也可能是应用的通讯录权限范围被缩小）。",
            f"确认属实后，请运维人员执行 `flask --app wsgi org-sync {kind} --force` 强制应用；"
            "否则请修正通讯录或权限范围后重新同步。运行记录可用 `flask --app wsgi org-sync status` 查看。",
        ]
    )
    return messages.alert(level="critical", indicator="组织架构同步被删除保护拦截", org_name=org_name, summary=summary)


def alert_refused(db: orm.Session, run_id: int, corp_id: str, kind: str, reason: str, refusal: Refusal) -> None:
    """Log the refusal and queue its alert to the corp's administrators in `db`'s transaction (the caller
    commits). With no administrator on record the log line is the only alert."""
    log.error("org sync run %s of %s refused: %s", run_id, corp_id, reason, extra={"run_id": run_id})
    admins = corp_admins(db, corp_id)
    if not admins:
        log.warning("org sync run %s of %s: no administrator to alert", run_id, corp_id, extra={"run_id": run_id})
        return
    root = db.scalar(
        sa.select(OrgNode.name)
        .where(OrgNode.corp_id == corp_id, OrgNode.parent_id.is_(None), OrgNode.deleted_at.is_(None))
        .order_by(OrgNode.dept_id)
        .limit(1)
    )
    message = refused_message(run_id, kind, root or corp_id, refusal)
    enqueue_message("work_notice", message, idempotency_key=refused_key(run_id), to=admins, priority="high", db=db)
