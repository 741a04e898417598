"""Manual indicator reports (手工填报): an institution or a county bureau reports the figures no system sends,
its administrators approve them through the bot's approval API, and only then do they count.

- A report is one `IndicatorSubmission` (kind "manual", source "manual:<unit id>") whose items wait in `payload`
  while it is `pending`. Items are checked as the statistics feed checks them (`supervision.feed.read_figures` and
  `check_figures`): every problem of every item is named (`items.N.field`) and nothing is stored on any error.
- Approval: `bot.approvals.request_approval` in the report's own transaction (cards to each approver when no OA
  process code is configured), mode "any", approvers the unit's administrators other than the submitter.
- `report_decided` (the approval's callback, in the bot's transaction): an agreement records the items through
  `values.record` (a manual value for a key replaces a feed or automatic one as a versioned correction) and queues
  the period's roll-up once the bot commits; a refusal, a withdrawal or a failed start leaves nothing counted.
- Evidence (佐证材料): PDF, PNG or JPEG up to 20 MB, recognised from its bytes, attached by the submitter while the
  report is pending. A qualitative item (an assessor's verdict) counts only with at least one document: an
  agreement on a report still missing one is recorded as refused with the reason, so a verdict never counts
  without its evidence.

The report's period is also the prefix of `batch_key` ("2026:<uuid>"): the submissions table has no period
column, and the prefix lets the list filter by period in SQL.

Plain functions: a session and a principal, no Flask request.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, orm

from bot.approvals import ApprovalOutcome, request_approval
from bot.models import BotApproval
from org_sync.models import OrgMember, OrgMembership, OrgNode
from supervision import feed, rollup, values
from supervision.models import (
    COLLECTIONS,
    SUBMISSION_STATES,
    Indicator,
    IndicatorEvidence,
    IndicatorSubmission,
)
from supervision.periods import Period, PeriodError, parse
from workbench import audit, uploads
from workbench.auth.models import RoleGrant
from workbench.auth.principal import INSTITUTION_LEVELS, Principal
from workbench.db import paginate, utcnow
from workbench.db import session as current_session
from workbench.errors import ApiError

log = logging.getLogger(__name__)

CALLBACK = "supervision.reports:report_decided"
REPORTABLE = ("manual", "mixed")  # collection modes a person may report; automatic ones come from the platform
UNIT_LEVELS = (*INSTITUTION_LEVELS, "county_bureau")
BODY_FIELDS = frozenset({"unit_id", "period", "items", "note"})
ITEM_FIELDS = frozenset({"indicator", "numerator", "denominator", "verdict"})
MAX_ITEMS = 200  # a unit reports a few dozen manual indicators at most
MAX_NOTE = 500
MAX_EVIDENCE = 20 * 1024 * 1024
EVIDENCE_TYPES = {"application/pdf": (".pdf",), "image/png": (".png",), "image/jpeg": (".jpg", ".jpeg")}
READER_ROLES = ("admin", "institution_admin", "supervisor")
_PENDING_RECOMPUTE = "supervision.reports.recompute"


def _source(unit_id: int) -> str:
    return f"manual:{unit_id}"


# -- who is who -------------------------------------------------------------------------------------------------


def _live_unit(session: orm.Session, unit_id: Any) -> OrgNode | None:
    if not isinstance(unit_id, int) or isinstance(unit_id, bool) or unit_id <= 0:
        return None
    node = session.get(OrgNode, unit_id)
    return node if node is not None and node.deleted_at is None else None


def works_in(principal: Principal, unit: OrgNode) -> bool:
    """Whether the principal reports for `unit`: an institution they work in, or a county bureau they are an
    administrator of by position."""
    if unit.level in INSTITUTION_LEVELS:
        return unit.id in principal.institution_ids()
    return any(p.unit_id == unit.id for p in principal.positions) or any(
        role.code == "admin" and role.node_id == unit.id for role in principal.roles
    )


def approvers_of(session: orm.Session, unit: OrgNode) -> list[str]:
    """The userids of the unit's administrators, in a stable order: an institution's leaders and members granted
    `institution_admin` on it; a county bureau's members positioned in the bureau itself (not in an institution
    below it), who are its `admin`s."""
    live_member = sa.and_(OrgMember.deleted_at.is_(None), OrgMember.active.is_(True))
    if unit.level in INSTITUTION_LEVELS:
        leaders = session.scalars(
            sa.select(OrgMember.userid)
            .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
            .where(OrgMembership.node_id == unit.id, OrgMembership.is_leader, live_member)
            .order_by(OrgMember.id)
        ).all()
        granted = session.scalars(
            sa.select(OrgMember.userid)
            .join(RoleGrant, RoleGrant.member_id == OrgMember.id)
            .where(
                RoleGrant.node_id == unit.id,
                RoleGrant.role == "institution_admin",
                RoleGrant.revoked_at.is_(None),
                live_member,
            )
            .order_by(RoleGrant.id)
        ).all()
        return list(dict.fromkeys([*leaders, *granted]))
    # A county bureau: members of nodes in its subtree whose nearest unit is the bureau itself.
    inner_units = set(
        session.scalars(
            sa.select(OrgNode.id).where(
                OrgNode.path.startswith(unit.path, autoescape=True),
                OrgNode.id != unit.id,
                OrgNode.level.in_((*UNIT_LEVELS, "city_commission", "province_commission")),
            )
        )
    )
    rows = session.execute(
        sa.select(OrgMember.userid, OrgNode.path)
        .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
        .join(OrgNode, OrgNode.id == OrgMembership.node_id)
        .where(OrgNode.path.startswith(unit.path, autoescape=True), OrgNode.deleted_at.is_(None), live_member)
        .order_by(OrgMember.id)
    ).all()
    found = []
    for userid, path in rows:
        below = [int(part) for part in path.removeprefix(unit.path).strip("/").split("/") if part]
        if not any(node_id in inner_units for node_id in below):
            found.append(userid)
    return list(dict.fromkeys(found))


def _may_read(session: orm.Session, principal: Principal, submission: IndicatorSubmission, unit: OrgNode) -> bool:
    """The unit's members, the report's approvers and administrators (and supervisors) whose scope covers it."""
    if works_in(principal, unit) or principal.scope(*READER_ROLES).covers_path(unit.path):
        return True
    if submission.approval_id is not None and principal.userid:
        approval = session.get(BotApproval, submission.approval_id)
        return approval is not None and principal.userid in (approval.approvers or [])
    return False


def _report(session: orm.Session, principal: Principal, report_id: int, *, lock: bool = False):
    submission = session.get(IndicatorSubmission, report_id, with_for_update=lock or None)
    unit = session.get(OrgNode, submission.unit_id) if submission and submission.unit_id else None
    if submission is None or submission.kind != "manual" or unit is None:
        raise ApiError("not_found", f"填报 {report_id} 不存在", status=404)
    if not _may_read(session, principal, submission, unit):
        raise ApiError("not_found", f"填报 {report_id} 不存在", status=404)
    return submission, unit


# -- creating ---------------------------------------------------------------------------------------------------


def _rejected(errors: list[dict]) -> ApiError:
    # In item order (the report's own fields first): the shapes are checked before the indicators, but a person
    # correcting a form reads it top to bottom.
    errors = sorted(errors, key=lambda error: -1 if error["index"] is None else error["index"])
    first = errors[0]
    return ApiError(
        "validation_error",
        f"填报未通过校验（{len(errors)} 处问题），未保存任何数据。首个问题：{first['message']}",
        status=422,
        field=first["field"],
        errors=errors,
    )


def _amount_text(amount: Decimal | None) -> str | None:
    """Decimals as exact strings in the JSON payload (a float would round them)."""
    return None if amount is None else format(Decimal(amount).normalize(), "f")


def _validate(
    session: orm.Session, principal: Principal, body: Any, today: date
) -> tuple[OrgNode, Period, list[dict], dict[int, Indicator], str | None]:
    """The unit, period, payload items and their indicators, and the note; 422 naming every problem, 404/403 for
    a unit that is not the caller's."""
    errors = feed.ItemErrors()
    if not isinstance(body, dict):
        raise _rejected([{"index": None, "field": "body", "message": "请求体应为 JSON 对象"}])
    for key in sorted(set(body) - BODY_FIELDS, key=str):
        errors.add(None, str(key), "未知字段")
    unit = _live_unit(session, body.get("unit_id"))
    if unit is None:
        if "unit_id" not in body or not isinstance(body.get("unit_id"), int) or isinstance(body["unit_id"], bool):
            errors.add(None, "unit_id", "unit_id 必填，应为单位的节点 ID（整数）")
        else:
            raise ApiError("not_found", "单位不存在", status=404, field="unit_id")
    elif not works_in(principal, unit):
        if principal.scope().covers_path(unit.path):
            raise ApiError("forbidden", "只有本单位人员可以填报本单位的指标", status=403, field="unit_id")
        raise ApiError("not_found", "单位不存在", status=404, field="unit_id")
    elif unit.level not in UNIT_LEVELS:
        errors.add(None, "unit_id", "填报单位应为医疗卫生机构或区县卫健局")
    period: Period | None = None
    if not isinstance(body.get("period"), str):
        errors.add(None, "period", "统计期必填，应为字符串（如 2026-10、2026-Q3、2026）")
    else:
        try:
            period = parse(body["period"])
        except PeriodError as error:
            errors.add(None, "period", str(error))
        else:
            if period.start > today:
                errors.add(None, "period", "统计期尚未开始，不能上报未来的统计期")
                period = None
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note.strip()) > MAX_NOTE):
        errors.add(None, "note", f"说明应为不超过 {MAX_NOTE} 个字符的字符串")
        note = None
    note = note.strip() or None if isinstance(note, str) else None
    raw_items = body.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        errors.add(None, "items", "items 必填，应为非空数组")
        raw_items = []
    elif len(raw_items) > MAX_ITEMS:
        errors.add(None, "items", f"每份填报最多 {MAX_ITEMS} 项")
        raw_items = []
    items: list[tuple[feed.Item, dict]] = []
    for index, raw in enumerate(raw_items):
        item = feed.Item(index)
        if not isinstance(raw, dict):
            errors.add(index, "", "每一项应为 JSON 对象")
            continue
        for key in sorted(set(raw) - ITEM_FIELDS, key=str):
            errors.add(index, str(key), "未知字段")
        code = raw.get("indicator")
        if isinstance(code, str) and code.strip():
            item.indicator = code.strip()
        else:
            errors.add(index, "indicator", "指标编码必填，应为字符串（如 NCM-01）")
        feed.read_figures(raw, item, errors)
        items.append((item, raw))
    codes = {item.indicator for item, _ in items if item.indicator}
    indicators = (
        {row.code: row for row in session.scalars(sa.select(Indicator).where(Indicator.code.in_(codes)))}
        if codes
        else {}
    )
    payload: list[dict] = []
    seen: dict[int, int] = {}
    for item, _raw in items:
        indicator = indicators.get(item.indicator) if item.indicator else None
        if item.indicator and indicator is None:
            errors.add(item.index, "indicator", f"未知的指标编码 {item.indicator}")
            continue
        if indicator is None:
            continue
        if not indicator.active:
            errors.add(item.index, "indicator", f"指标 {indicator.code} 已停用")
            continue
        if indicator.collection not in REPORTABLE:
            errors.add(
                item.index,
                "indicator",
                f"指标 {indicator.code} 为{COLLECTIONS.get(indicator.collection, '自动采集')}，不接受手工填报",
            )
            continue
        if unit is not None and unit.level not in feed.REPORTING_UNITS.get(indicator.reporting_level, ()):
            errors.add(
                item.index,
                "indicator",
                f"指标 {indicator.code} 应由{feed.REPORTING_NAMES.get(indicator.reporting_level, '其他单位')}填报，"
                f"不能报在{unit.name}",
            )
        if period is not None and period.kind != indicator.period:
            try:
                parse(period.code, indicator.period)
            except PeriodError as error:
                errors.add(item.index, "indicator", f"指标 {indicator.code}：{error}")
        feed.check_figures(indicator, item, errors)
        if indicator.id in seen:
            errors.add(item.index, "indicator", f"与 items.{seen[indicator.id]} 重复：同一指标只能报一次")
            continue
        seen[indicator.id] = item.index
        payload.append(
            {
                "indicator_id": indicator.id,
                "indicator": indicator.code,
                "period": period.code if period else None,
                "numerator": _amount_text(item.numerator),
                "denominator": _amount_text(item.denominator),
                "verdict": item.verdict,
            }
        )
    if errors.items:
        raise _rejected(errors.items)
    assert unit is not None and period is not None  # every path that leaves them None added an error
    return unit, period, payload, {row.id: row for row in indicators.values()}, note


def _value_text(indicator: Indicator, item: Mapping[str, Any]) -> str:
    """An item as the approver reads it on the card."""
    if indicator.kind == "qualitative":
        met = "达标" if Decimal(item["numerator"]) == 1 else "未达标"
        return f"{met}（{item['verdict']}）"
    if indicator.kind == "count":
        return f"{item['numerator']} {indicator.unit}"
    value = feed._display(indicator, Decimal(item["numerator"]), Decimal(item["denominator"]))
    shown = "—" if value is None else f"{value:.2f}{indicator.unit}"
    return f"{shown}（分子 {item['numerator']} / 分母 {item['denominator']}）"


def _pending_conflicts(session: orm.Session, unit: OrgNode, period: Period, indicator_ids: set[int]) -> list[int]:
    """The pending reports of the unit and period that carry one of these indicators."""
    pending = session.scalars(
        sa.select(IndicatorSubmission).where(
            IndicatorSubmission.source == _source(unit.id),
            IndicatorSubmission.state == "pending",
            IndicatorSubmission.batch_key.startswith(f"{period.code}:", autoescape=True),
        )
    )
    return [row.id for row in pending if indicator_ids & {item["indicator_id"] for item in (row.payload or [])}]


def create_report(
    session: orm.Session, principal: Principal, body: Any, *, today: date | None = None
) -> dict[str, Any]:
    """Check a report whole, store it pending and ask the unit's administrators to approve it (committed)."""
    unit, period, payload, indicators, note = _validate(session, principal, body, today or feed.today_china())
    try:
        return _store(session, principal, unit, period, payload, indicators, note)
    except ApiError:
        session.rollback()  # releases the unit's lock at once
        raise


def _store(
    session: orm.Session,
    principal: Principal,
    unit: OrgNode,
    period: Period,
    payload: list[dict],
    indicators: dict[int, Indicator],
    note: str | None,
) -> dict[str, Any]:
    if not principal.userid or principal.member_id is None:
        raise ApiError("forbidden", "只有本单位人员可以填报本单位的指标", status=403)
    if session.get_bind().dialect.name == "postgresql":
        # One report of a unit at a time from the duplicate check to the commit, so two taps of 提交 cannot both
        # pass the check (SQLite serialises writers by itself).
        lock = sa.func.hashtext(f"supervision-report:{unit.id}")
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
    conflicts = _pending_conflicts(session, unit, period, {item["indicator_id"] for item in payload})
    if conflicts:
        raise ApiError(
            "conflict",
            "本单位该统计期已有同一指标的填报在审批中，请等待审批结束",
            status=409,
            field="items",
            report_id=conflicts[0],
        )
    admins = approvers_of(session, unit)
    others = [userid for userid in admins if userid != principal.userid]
    approvers = others or admins
    if not approvers:
        raise ApiError(
            "no_approver",
            f"{unit.name}尚无可审批填报的管理员（机构负责人或机构管理员），请先联系上级设置",
            status=409,
            field="unit_id",
        )
    submission = IndicatorSubmission(
        kind="manual",
        source=_source(unit.id),
        batch_key=f"{period.code}:{uuid.uuid4().hex}",
        unit_id=unit.id,
        state="pending",
        items=0,
        changed=0,
        submitted_by=principal.actor,
        received_at=utcnow(),
        payload=payload,
        decision_reason=None,
    )
    session.add(submission)
    session.flush()
    form = [("单位", unit.name), ("统计期", period.code)]
    form += [
        (
            f"{item['indicator']} {indicators[item['indicator_id']].name}"[:100],
            _value_text(indicators[item["indicator_id"]], item),
        )
        for item in payload
    ]
    if note:
        form.append(("说明", note))
    form.append(("填报人", principal.name))
    approval = request_approval(
        key=f"supervision-report:{submission.id}",
        title=f"{unit.name} {period.code} 指标填报"[:200],
        originator_userid=principal.userid,
        approvers=approvers,
        mode="any",
        form=form,
        callback=CALLBACK,
        context={"submission_id": submission.id},
        cards_only=True,  # one form line per indicator: no OA template's fixed labels fit
    )
    submission.approval_id = approval.id
    audit.record(
        principal,
        "supervision.report.create",
        resource_type="indicator_submission",
        resource_id=submission.id,
        node_id=unit.id,
        detail={
            "period": period.code,
            "indicators": [item["indicator"] for item in payload],
            "approval_id": approval.id,
            "note": note,
        },
        session=session,
    )
    session.commit()
    return report_view(session, submission, unit)


# -- the decision -----------------------------------------------------------------------------------------------


def _missing_evidence(session: orm.Session, submission: IndicatorSubmission) -> list[str]:
    """Codes of the report's qualitative items without a document."""
    ids = {item["indicator_id"] for item in submission.payload or []}
    if not ids:
        return []
    qualitative = dict(
        session.execute(
            sa.select(Indicator.id, Indicator.code).where(Indicator.id.in_(ids), Indicator.kind == "qualitative")
        ).all()
    )
    if not qualitative:
        return []
    backed = set(
        session.scalars(
            sa.select(IndicatorEvidence.indicator_id).where(
                IndicatorEvidence.submission_id == submission.id, IndicatorEvidence.indicator_id.in_(qualitative)
            )
        )
    )
    return sorted(code for indicator_id, code in qualitative.items() if indicator_id not in backed)


def _refusal_reason(outcome: ApprovalOutcome) -> str:
    if outcome.result == "refuse":
        refusal = next((d for d in outcome.decisions if d.get("result") == "refuse"), {})
        remark = str(refusal.get("remark") or refusal.get("comment") or "").strip()
        who = refusal.get("userid") or "审批人"
        return (f"{who} 拒绝" + (f"：{remark}" if remark else ""))[:500]
    if outcome.result == "terminated":
        return "审批已撤销"
    return f"审批未能完成：{outcome.error or '发起失败'}"[:500]


def report_decided(outcome: ApprovalOutcome) -> None:
    """The approval's callback (in the bot's transaction; it commits): count the report or record why not."""
    session = current_session()
    submission = session.get(IndicatorSubmission, outcome.context.get("submission_id"), with_for_update=True)
    if submission is None or submission.kind != "manual" or submission.state != "pending":
        # Decided already (the bot calls back once; this guards a hand-run callback).
        return
    now = utcnow()
    missing = _missing_evidence(session, submission) if outcome.result == "agree" else []
    if outcome.result != "agree" or missing:
        submission.state = "refused"
        submission.decided_at = now
        submission.decision_reason = (
            f"定性指标 {'、'.join(missing)} 缺少佐证材料，审批同意但未计入" if missing else _refusal_reason(outcome)
        )
        audit.record(
            None,
            "supervision.report.refused",
            resource_type="indicator_submission",
            resource_id=submission.id,
            node_id=submission.unit_id,
            detail={"approval_id": outcome.approval_id, "result": outcome.result, "reason": submission.decision_reason},
            session=session,
        )
        log.info("manual report refused", extra={"approval": outcome.approval_id, "result": outcome.result})
        return
    rows = [
        values.ValueRow(
            indicator_id=item["indicator_id"],
            unit_id=submission.unit_id,
            period=parse(item["period"]),
            numerator=Decimal(item["numerator"]),
            denominator=None if item["denominator"] is None else Decimal(item["denominator"]),
            verdict=item.get("verdict"),
        )
        for item in submission.payload or []
    ]
    recorded = values.record(session, submission, rows)
    submission.state = "accepted"
    submission.decided_at = now
    submission.decision_reason = None
    audit.record(
        None,
        "supervision.report.accepted",
        resource_type="indicator_submission",
        resource_id=submission.id,
        node_id=submission.unit_id,
        detail={
            "approval_id": outcome.approval_id,
            "approved_by": [d.get("userid") for d in outcome.decisions if d.get("result") == "agree"],
            "new": recorded.new,
            "corrected": recorded.corrected,
            "unchanged": recorded.unchanged,
        },
        session=session,
    )
    # The roll-up job reads committed values: queued only once the bot's transaction commits (an in-process
    # worker or an RQ worker would otherwise recompute from the old values, or from none).
    session.info.setdefault(_PENDING_RECOMPUTE, set()).update(row.period.code for row in rows)
    log.info("manual report accepted", extra={"approval": outcome.approval_id, "rows": len(rows)})


@event.listens_for(orm.Session, "after_commit")
def _queue_recompute(session: orm.Session) -> None:
    periods = session.info.pop(_PENDING_RECOMPUTE, None)
    if not periods:
        return
    try:
        rollup.schedule_recompute(sorted(periods))
    except Exception:
        # The values are committed and the report accepted; the periodic recomputation (or an administrator's
        # request) catches up. Logged for the operators.
        log.exception("recomputation not queued after a manual report", extra={"rows": len(periods)})


@event.listens_for(orm.Session, "after_rollback")
def _forget_recompute(session: orm.Session) -> None:
    session.info.pop(_PENDING_RECOMPUTE, None)


# -- evidence ---------------------------------------------------------------------------------------------------


def evidence_view(row: IndicatorEvidence, code: str | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "indicator_id": row.indicator_id,
        "indicator": code,
        "filename": row.filename,
        "content_type": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "uploaded_by": row.uploaded_by,
        "uploaded_at": row.uploaded_at,
    }


def add_evidence(
    session: orm.Session, principal: Principal, report_id: int, indicator_code: Any, filename: str, content: bytes
) -> dict[str, Any]:
    """Attach a document to one item of a pending report: by its submitter; PDF, PNG or JPEG ≤ 20 MB recognised
    from the bytes (the extension must agree); its SHA-256 kept."""
    submission, unit = _report(session, principal, report_id, lock=True)
    if submission.submitted_by != principal.actor:
        raise ApiError("forbidden", "只有填报人可以上传佐证材料", status=403)
    if submission.state != "pending":
        raise ApiError("invalid_state", "填报已审批结束，不能再上传佐证材料", status=409)
    code = indicator_code.strip() if isinstance(indicator_code, str) else ""
    item = next((i for i in submission.payload or [] if i["indicator"] == code), None)
    if item is None:
        raise ApiError("validation_error", "indicator 应为本次填报中的指标编码", status=422, field="indicator")
    if len(content) > MAX_EVIDENCE:
        raise ApiError("payload_too_large", "文件不能超过 20 MB", status=413, field="file")
    if not content:
        raise ApiError("validation_error", "文件为空", status=422, field="file")
    if uploads.is_executable(content):
        raise ApiError("unsupported_media_type", "不接受可执行文件或脚本", status=415, field="file")
    content_type = uploads.sniff(content)
    if content_type not in EVIDENCE_TYPES:
        raise ApiError("unsupported_media_type", "只接受 PDF、PNG 或 JPEG 文件", status=415, field="file")
    name = (filename or "").strip().replace("\\", "/").rsplit("/", 1)[-1][:200]
    if not name.lower().endswith(EVIDENCE_TYPES[content_type]):
        raise ApiError(
            "unsupported_media_type", f"文件扩展名与内容不符（内容为 {content_type}）", status=415, field="file"
        )
    row = IndicatorEvidence(
        submission_id=submission.id,
        indicator_id=item["indicator_id"],
        filename=name,
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        uploaded_by=principal.actor,
        uploaded_at=utcnow(),
    )
    session.add(row)
    session.flush()
    audit.record(
        principal,
        "supervision.report.evidence.add",
        resource_type="indicator_submission",
        resource_id=submission.id,
        node_id=unit.id,
        detail={"evidence_id": row.id, "indicator": code, "size": row.size, "sha256": row.sha256},
        session=session,
    )
    session.commit()
    return evidence_view(row, code)


def get_evidence(
    session: orm.Session, principal: Principal, report_id: int, evidence_id: int
) -> tuple[IndicatorEvidence, bytes]:
    """A document and its bytes, for the submitter, the approvers and administrators in scope; audited."""
    submission, unit = _report(session, principal, report_id)
    row = session.get(IndicatorEvidence, evidence_id)
    if row is None or row.submission_id != submission.id:
        raise ApiError("not_found", f"佐证材料 {evidence_id} 不存在", status=404)
    allowed = submission.submitted_by == principal.actor or principal.scope(*READER_ROLES).covers_path(unit.path)
    if not allowed and submission.approval_id is not None and principal.userid:
        approval = session.get(BotApproval, submission.approval_id)
        allowed = approval is not None and principal.userid in (approval.approvers or [])
    if not allowed:
        raise ApiError("not_found", f"佐证材料 {evidence_id} 不存在", status=404)
    audit.record(
        principal,
        "supervision.report.evidence.read",
        resource_type="indicator_submission",
        resource_id=submission.id,
        node_id=unit.id,
        detail={"evidence_id": row.id},
    )
    return row, bytes(row.content)


# -- reading ----------------------------------------------------------------------------------------------------


def _number(text: str | None) -> float | int | None:
    return feed._number(None if text is None else Decimal(text))


def report_view(session: orm.Session, submission: IndicatorSubmission, unit: OrgNode) -> dict[str, Any]:
    """A report with its items, evidence list and approval state."""
    ids = {item["indicator_id"] for item in submission.payload or []}
    indicators = (
        {row.id: row for row in session.scalars(sa.select(Indicator).where(Indicator.id.in_(ids)))} if ids else {}
    )
    evidence = session.scalars(
        sa.select(IndicatorEvidence)
        .where(IndicatorEvidence.submission_id == submission.id)
        .order_by(IndicatorEvidence.id)
    ).all()
    approval = session.get(BotApproval, submission.approval_id) if submission.approval_id else None
    period = (submission.batch_key or "").split(":", 1)[0]
    backed = {row.indicator_id for row in evidence}
    return {
        "id": submission.id,
        "unit": {"id": unit.id, "name": unit.name, "level": unit.level},
        "period": period,
        "state": submission.state,
        "state_name": SUBMISSION_STATES.get(submission.state),
        "submitted_by": submission.submitted_by,
        "received_at": submission.received_at,
        "decided_at": submission.decided_at,
        "decision_reason": submission.decision_reason,
        "items": [
            {
                "indicator": item["indicator"],
                "name": indicators[item["indicator_id"]].name if item["indicator_id"] in indicators else None,
                "kind": indicators[item["indicator_id"]].kind if item["indicator_id"] in indicators else None,
                "numerator": _number(item["numerator"]),
                "denominator": _number(item["denominator"]),
                "verdict": item.get("verdict"),
                "evidence_required": item["indicator_id"] in indicators
                and indicators[item["indicator_id"]].kind == "qualitative",
                "evidence_count": sum(1 for row in evidence if row.indicator_id == item["indicator_id"]),
            }
            for item in submission.payload or []
        ],
        "evidence_missing": [
            item["indicator"]
            for item in submission.payload or []
            if item["indicator_id"] in indicators
            and indicators[item["indicator_id"]].kind == "qualitative"
            and item["indicator_id"] not in backed
        ],
        "evidence": [
            evidence_view(row, indicators[row.indicator_id].code if row.indicator_id in indicators else None)
            for row in evidence
        ],
        "approval": None
        if approval is None
        else {
            "id": approval.id,
            "state": approval.state,
            "result": approval.result,
            "channel": approval.channel,
            "approvers": list(approval.approvers or []),
            "decisions": [dict(d) for d in approval.decisions or []],
        },
    }


def get_report(session: orm.Session, principal: Principal, report_id: int) -> dict[str, Any]:
    submission, unit = _report(session, principal, report_id)
    return report_view(session, submission, unit)


def list_reports(
    session: orm.Session,
    principal: Principal,
    *,
    unit_id: int | None = None,
    state: str | None = None,
    period: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> dict[str, Any]:
    """Reports of the caller's own units and of units inside their administration, newest first."""
    query = (
        sa.select(IndicatorSubmission, OrgNode)
        .join(OrgNode, OrgNode.id == IndicatorSubmission.unit_id)
        .where(IndicatorSubmission.kind == "manual")
    )
    own = {p.unit_id for p in principal.positions if p.unit_id is not None}
    visible = principal.scope(*READER_ROLES).subtree(OrgNode.path)
    if unit_id is not None:
        unit = session.get(OrgNode, unit_id)
        if unit is None or not (works_in(principal, unit) or principal.scope(*READER_ROLES).covers_path(unit.path)):
            raise ApiError("not_found", "单位不存在", status=404, field="unit_id")
        query = query.where(IndicatorSubmission.unit_id == unit.id)
    else:
        query = query.where(sa.or_(IndicatorSubmission.unit_id.in_(own), visible) if own else visible)
    if state is not None:
        query = query.where(IndicatorSubmission.state == state)
    if period is not None:
        try:
            code = parse(period).code
        except PeriodError as error:
            raise ApiError("validation_error", str(error), status=422, field="period") from None
        query = query.where(IndicatorSubmission.batch_key.startswith(f"{code}:", autoescape=True))
    rows, total = paginate(
        query.order_by(IndicatorSubmission.id.desc()), page, page_size, rows=True, db_session=session
    )
    return {
        "items": [report_view(session, submission, unit) for submission, unit in rows],
        "total": total,
        "page": page,
        "page_size": page_size,
    }
