"""Workload intake (工作量采集): verified quantities per institution (and doctor), month and service item, from
system feeds and from manual entry approved by the county (reference/domain.md §2.3 item 2, Q_ij).

- **Feed** (`post_batch`): an external system (HIS, the public-health system) posts a batch with its API key — the
  supervision feed's systems and key check (`supervision.feed.authenticate`), so one registry serves both. An item
  without a quality gate comes as a count; an item with one comes as records, one per unit, so every unit the gate
  keeps out is stored with its reason (`WorkloadExclusion`).
- **Manual entry** (`submit_manual`): an institution's administrator (or the county's) enters counts; they wait in
  the batch's payload until one of the county bureau's administrators approves the card (`bot.approvals`), and
  only then are they recorded (`manual_decided`).
- Both are checked whole before anything is stored: every problem is named by its JSON path (`items.3.quantity`,
  `lines.0.item`) and one problem rejects everything (a half-stored batch leaves the sender unable to tell which
  half to resend). The checks are one function for both (`_check`), and so is the recording (`_record`).
- **Versions**: a later quantity for the same (institution, doctor, month, item) is a correction — a new row with
  version + 1 and `supersedes_id`, the old one kept with `is_current` cleared. Recorded in one set-based pass per
  batch (a few statements whatever its size). A quantity equal to the current one (same counts, same excluded
  units) is left alone: systems resend whole months daily, and a version per resend would bury real corrections.
- **Idempotent** by (system, batch_id): the SHA-256 of the canonical body decides replay (200, the first result,
  nothing new) or conflict (409).

Quantities are `Decimal` with at most 2 places (the column is NUMERIC(14, 2); a half contract-year exists), never
rounded: more places are refused, not quantised, so what is stored is what was sent.

Plain functions: a session and a principal (or the authenticated feed system), no Flask request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from bot.approvals import ApprovalOutcome, request_approval
from bot.models import BotApproval
from mini_apps.compensation.models import (
    ServiceItem,
    WorkloadBatch,
    WorkloadExclusion,
    WorkloadQuantity,
)
from org_sync.models import OrgMember, OrgMembership, OrgNode
from supervision import feed
from supervision.models import FeedSystem
from supervision.reports import approvers_of
from workbench import audit
from workbench.auth.principal import INSTITUTION_LEVELS, Principal
from workbench.db import paginate, utcnow
from workbench.db import session as current_session
from workbench.errors import ApiError

log = logging.getLogger(__name__)

MAX_ITEMS = feed.MAX_ITEMS  # 5,000 per batch, as the supervision feed
MAX_RECORDS = 100_000  # records over all items of one batch (the 8 MB body limit bounds them too)
MAX_LINES = 140  # a manual entry: one approval-card line each, and a card takes at most 150 lines
MAX_NOTE = 500
MAX_QUANTITY = Decimal(10) ** 12  # NUMERIC(14, 2)
PLACES = Decimal("0.01")
MAX_RECORD_REF = 64  # comp_workload_exclusions.record_ref
PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
ITEM_FIELDS = frozenset({"institution", "doctor", "period", "item", "quantity", "records"})
LINE_FIELDS = frozenset({"item", "quantity", "doctor"})
MANUAL_FIELDS = frozenset({"institution_id", "period", "lines", "note"})
RECORD_FIELDS = frozenset({"id", "fields"})
READER_ROLES = ("admin", "institution_admin", "finance_officer")
ENTRY_ROLES = ("admin", "institution_admin")
CALLBACK = "mini_apps.compensation.workload:manual_decided"
RULE_REQUIRED = "required_fields"


# -- errors -------------------------------------------------------------------------------------------------------


class Problems:
    """Every problem of a body, by JSON path under `prefix` (`items` for the feed, `lines` for manual entry)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.items: list[dict] = []

    def add(self, index: int | None, name: str, message: str) -> None:
        path = name if index is None else f"{self.prefix}.{index}" + (f".{name}" if name else "")
        self.items.append({"index": index, "field": path, "message": message})


def _manual_rejected(errors: list[dict]) -> ApiError:
    first = errors[0]
    return ApiError(
        "validation_error",
        f"填报未通过校验（{len(errors)} 处问题），未保存任何数据。首个问题：{first['message']}",
        status=422,
        field=first["field"],
        errors=errors,
    )


# -- shapes ---------------------------------------------------------------------------------------------------------


@dataclass
class Raw:
    """One item or line as sent, its types checked; `institution` is filled in by the caller's resolution."""

    index: int
    unit_form: str | None = None  # feed: id | code | dept_id
    unit_value: Any = None
    institution: OrgNode | None = None
    doctor: str | None = None
    period: str | None = None
    item: str | None = None
    quantity: Decimal | None = None
    records: list[tuple[str, Mapping[str, Any]]] | None = None
    sent_quantity: bool = False
    sent_records: bool = False


@dataclass
class Line:
    """A checked quantity, ready to record."""

    institution_id: int
    member_id: int | None
    period: str
    item_id: int
    qty_raw: Decimal
    qty_verified: Decimal
    exclusions: list[tuple[str | None, str, str]] = field(default_factory=list)  # (record_ref, rule, reason)

    @property
    def key(self) -> tuple[int, int | None, str, int]:
        return (self.institution_id, self.member_id, self.period, self.item_id)


def quantity_of(value: Any) -> Decimal | str:
    """A non-negative finite number with at most 2 places that fits the column, or why not (user-facing)."""
    return feed.amount_of(value, places=PLACES, maximum=MAX_QUANTITY)


def _read_common(raw: Mapping[str, Any], entry: Raw, errors: Problems) -> None:
    """item, doctor and quantity — the fields a feed item and a manual line share."""
    index = entry.index
    code = raw.get("item")
    if isinstance(code, str) and code.strip():
        entry.item = code.strip()
    else:
        errors.add(index, "item", "项目编码必填，应为非空字符串")
    doctor = raw.get("doctor")
    if doctor is not None:
        if isinstance(doctor, str) and doctor.strip() and len(doctor.strip()) <= 64:
            entry.doctor = doctor.strip()
        else:
            errors.add(index, "doctor", "医生应为钉钉 userid（非空字符串）")
    if "quantity" in raw:
        entry.sent_quantity = True
        amount = quantity_of(raw["quantity"])
        if isinstance(amount, str):
            errors.add(index, "quantity", amount)
        else:
            entry.quantity = amount


def _read_records(raw: Mapping[str, Any], entry: Raw, errors: Problems, budget: list[int]) -> None:
    """A gated item's records: `[{"id", "fields": {...}}]`, ids unique within the item."""
    if "records" not in raw:
        return
    entry.sent_records = True
    records = raw["records"]
    index = entry.index
    if not isinstance(records, list):
        errors.add(index, "records", 'records 应为数组：[{"id": 记录ID, "fields": {...}}]')
        return
    budget[0] -= len(records)
    if budget[0] < 0:
        errors.add(index, "records", f"每批记录总数最多 {MAX_RECORDS} 条，请分批推送")
        return
    kept: list[tuple[str, Mapping[str, Any]]] = []
    seen: dict[str, int] = {}
    for number, record in enumerate(records):
        where = f"records.{number}"
        if not isinstance(record, dict):
            errors.add(index, where, "每条记录应为 JSON 对象")
            continue
        for key in sorted(set(record) - RECORD_FIELDS, key=str):
            errors.add(index, f"{where}.{key}", "未知字段")
        ref = record.get("id")
        if isinstance(ref, int) and not isinstance(ref, bool):
            ref = str(ref)
        if not isinstance(ref, str) or not ref.strip() or len(ref.strip()) > MAX_RECORD_REF:
            errors.add(index, f"{where}.id", f"记录 ID 必填，应为不超过 {MAX_RECORD_REF} 个字符的字符串或整数")
            continue
        ref = ref.strip()
        fields_ = record.get("fields")
        if not isinstance(fields_, dict):
            errors.add(index, f"{where}.fields", "fields 应为 JSON 对象")
            continue
        if ref in seen:
            errors.add(index, f"{where}.id", f"与 records.{seen[ref]} 重复：同一记录只能计一次")
            continue
        seen[ref] = number
        kept.append((ref, fields_))
    entry.records = kept


def _structure(body: Any, errors: Problems) -> tuple[str | None, list[Raw]]:
    """A feed body's batch id and items, their types checked (problems go to `errors`)."""
    if not isinstance(body, dict):
        errors.add(None, "body", '请求体应为 JSON 对象：{"batch_id": ..., "items": [...]}')
        return None, []
    for key in sorted(set(body) - {"batch_id", "items"}, key=str):
        errors.add(None, str(key), "未知字段")
    batch_id = body.get("batch_id")
    if not isinstance(batch_id, str) or not batch_id.strip() or len(batch_id.strip()) > 100:
        errors.add(None, "batch_id", "batch_id 必填，应为不超过 100 个字符的非空字符串")
        batch_id = None
    else:
        batch_id = batch_id.strip()
    raw_items = body.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        errors.add(None, "items", "items 必填，应为非空数组")
        return batch_id, []
    if len(raw_items) > MAX_ITEMS:
        errors.add(None, "items", f"每批最多 {MAX_ITEMS} 项，本批 {len(raw_items)} 项，请分批推送")
        return batch_id, []
    budget = [MAX_RECORDS]
    entries = []
    for index, raw in enumerate(raw_items):
        entry = Raw(index)
        entries.append(entry)
        if not isinstance(raw, dict):
            errors.add(index, "", "每一项应为 JSON 对象")
            continue
        for key in sorted(set(raw) - ITEM_FIELDS, key=str):
            errors.add(index, str(key), "未知字段")
        unit = raw.get("institution")
        forms = [form for form in feed.UNIT_FORMS if isinstance(unit, dict) and form in unit]
        if not isinstance(unit, dict) or len(forms) != 1 or len(unit) != 1:
            errors.add(index, "institution", feed.UNIT_FORMAT.replace("单位", "机构"))
        else:
            form, value = forms[0], unit[forms[0]]
            if form == "code":
                ok = isinstance(value, str) and bool(value.strip())
                value = value.strip() if ok else value
            else:
                ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            if ok:
                entry.unit_form, entry.unit_value = form, value
            else:
                errors.add(index, f"institution.{form}", "部门编码应为非空字符串" if form == "code" else "应为正整数")
        period = raw.get("period")
        if isinstance(period, str):
            entry.period = period.strip()
        else:
            errors.add(index, "period", "统计期必填，应为 YYYY-MM 格式的字符串（如 2026-10）")
        _read_common(raw, entry, errors)
        _read_records(raw, entry, errors, budget)
        if entry.sent_quantity and entry.sent_records:
            errors.add(index, "records", "quantity 与 records 只能二选一")
        elif not entry.sent_quantity and not entry.sent_records:
            errors.add(index, "quantity", "quantity（计数）或 records（逐条记录）必填其一")
    return batch_id, entries


# -- the checks both paths share ----------------------------------------------------------------------------------


def period_problem(period: str, today: date) -> str | None:
    """Why `period` cannot be reported today, or None."""
    match = PERIOD.match(period)
    if match is None:
        return "统计期应为 YYYY-MM 格式（如 2026-10）"
    if date(int(match.group(1)), int(match.group(2)), 1) > today:
        return "统计期尚未开始，不能上报未来的统计期"
    return None


def required_fields(item: ServiceItem) -> list[str]:
    """The quality gate's mandatory field codes (`catalog.validate_quality_rule` keeps the rule's shape)."""
    return [name for name in (item.quality_rule or {}).get(RULE_REQUIRED) or [] if isinstance(name, str)]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _doctors(session: orm.Session, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], int | str]:
    """(userid, institution id) → the member working there, or why not: a position in the institution's
    subtree whose nearest institution is that one (a member institution below a lead hospital is its own
    institution, its doctors are not the lead's). Two queries for the whole batch."""
    if not wanted:
        return {}
    userids = sorted({userid for userid, _ in wanted})
    positions: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for start in range(0, len(userids), 1000):  # under SQLite's bound-parameter limit
        rows = session.execute(
            sa.select(OrgMember.userid, OrgMember.id, OrgNode.path)
            .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(
                OrgMember.userid.in_(userids[start : start + 1000]),
                OrgMember.deleted_at.is_(None),
                OrgMember.active.is_(True),
                OrgNode.deleted_at.is_(None),
            )
        )
        for userid, member_id, path in rows:
            positions[userid].append((member_id, path))
    # The institutions on the positions' paths, to find each position's nearest one.
    on_paths = {int(part) for found in positions.values() for _, path in found for part in path.strip("/").split("/")}
    institution_nodes: set[int] = set()
    on_paths_list = sorted(on_paths)
    for start in range(0, len(on_paths_list), 1000):
        institution_nodes.update(
            session.scalars(
                sa.select(OrgNode.id).where(
                    OrgNode.id.in_(on_paths_list[start : start + 1000]), OrgNode.level.in_(INSTITUTION_LEVELS)
                )
            )
        )

    def nearest(path: str) -> int | None:
        chain = [int(part) for part in path.strip("/").split("/") if part]
        return next((node for node in reversed(chain) if node in institution_nodes), None)

    found: dict[tuple[str, int], int | str] = {}
    for userid, institution_id in wanted:
        members = {member_id for member_id, path in positions.get(userid, []) if nearest(path) == institution_id}
        if len(members) == 1:
            found[(userid, institution_id)] = members.pop()
        elif members:
            found[(userid, institution_id)] = "该 userid 对应多名人员，无法确定医生"
        elif userid in positions:
            found[(userid, institution_id)] = "该医生不是本机构人员"
        else:
            found[(userid, institution_id)] = "未知的医生（userid）"
    return found


def _table_values(session: orm.Session, periods: Mapping[str, set[int]]) -> dict[str, dict[int, dict[int, Decimal]]]:
    """Per period, each institution's effective 当量 table (the catalog decides which version applies)."""
    from mini_apps.compensation import catalog  # imported late: the catalog imports nothing of the workload

    return {period: catalog.values_for(session, sorted(ids), period) for period, ids in periods.items()}


def _check(
    session: orm.Session, entries: list[Raw], errors: Problems, today: date, *, records_allowed: bool
) -> list[Line]:
    """Everything past the types: periods, items and their quality gates, the table version of the period,
    doctors, duplicates; the lines to record (complete only when `errors` stayed empty)."""
    codes = {entry.item for entry in entries if entry.item}
    items = (
        {row.code: row for row in session.scalars(sa.select(ServiceItem).where(ServiceItem.code.in_(codes)))}
        if codes
        else {}
    )
    valid_period: dict[int, str] = {}
    for entry in entries:
        if entry.period is None:
            continue
        problem = period_problem(entry.period, today)
        if problem:
            errors.add(entry.index, "period", problem)
        else:
            valid_period[entry.index] = entry.period
    doctors = _doctors(
        session, {(entry.doctor, entry.institution.id) for entry in entries if entry.doctor and entry.institution}
    )
    wanted_tables: dict[str, set[int]] = defaultdict(set)
    for entry in entries:
        if entry.institution is not None and entry.index in valid_period:
            wanted_tables[valid_period[entry.index]].add(entry.institution.id)
    tables = _table_values(session, wanted_tables) if wanted_tables else {}
    lines: list[Line] = []
    seen: dict[tuple, int] = {}
    for entry in entries:
        before = len(errors.items)
        item = items.get(entry.item) if entry.item else None
        if entry.item and item is None:
            errors.add(entry.index, "item", f"未知的项目编码 {entry.item}")
        elif item is not None and not item.active:
            errors.add(entry.index, "item", f"项目 {item.code} 已停用")
            item = None
        period = valid_period.get(entry.index)
        if item is not None and entry.institution is not None and period is not None:
            table = tables.get(period, {}).get(entry.institution.id, {})
            if item.id not in table:
                errors.add(entry.index, "item", f"项目 {item.code} 不在 {period} 适用的当量表中")
        member_id: int | None = None
        if entry.doctor and entry.institution is not None:
            doctor = doctors[(entry.doctor, entry.institution.id)]
            if isinstance(doctor, str):
                errors.add(entry.index, "doctor", doctor)
            else:
                member_id = doctor
        gate = required_fields(item) if item is not None else []
        if item is not None:
            if gate and entry.sent_quantity and not entry.sent_records:
                errors.add(
                    entry.index,
                    "quantity",
                    f"项目 {item.code} 有质量门槛（必填项），应逐条推送 records，不能只报数量"
                    if records_allowed
                    else f"项目 {item.code} 有质量门槛（必填项），只能由系统逐条推送，不能手工填报数量",
                )
            elif not gate and entry.sent_records:
                errors.add(entry.index, "records", f"项目 {item.code} 没有质量门槛，应以 quantity 报数量")
        if len(errors.items) > before or item is None or entry.institution is None or period is None:
            continue
        if entry.records is not None:
            exclusions = []
            for ref, values in entry.records:
                missing = [name for name in gate if _missing(values.get(name))]
                if missing:
                    exclusions.append((ref, RULE_REQUIRED, f"缺少必填项：{'、'.join(missing)}"[:200]))
            raw_qty = Decimal(len(entry.records)).quantize(PLACES)
            line = Line(
                entry.institution.id,
                member_id,
                period,
                item.id,
                raw_qty,
                (raw_qty - len(exclusions)).quantize(PLACES),
                exclusions,
            )
        elif entry.quantity is not None:
            line = Line(entry.institution.id, member_id, period, item.id, entry.quantity, entry.quantity)
        else:
            continue  # its quantity had a type problem, already named
        if line.key in seen:
            errors.add(
                entry.index,
                "item",
                f"与 {errors.prefix}.{seen[line.key]} 重复：同一机构、医生、统计期和项目只能报一次",
            )
            continue
        seen[line.key] = entry.index
        lines.append(line)
    return lines


# -- recording (the one path for feeds and approved entries) ------------------------------------------------------


@dataclass
class Recorded:
    new: int = 0
    corrected: int = 0
    unchanged: int = 0


def _lock_institutions(session: orm.Session, institution_ids: Iterable[int]) -> None:
    """PostgreSQL: one writer per institution from reading the current rows to the commit, so two batches
    correcting the same quantity cannot both supersede it (SQLite serialises writers by itself). Taken in id
    order, in one statement, so two batches never wait on each other crosswise."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        sa.text(
            "SELECT pg_advisory_xact_lock(hashtext('comp-workload:' || i)) "
            "FROM (SELECT i FROM unnest(CAST(:ids AS integer[])) AS i ORDER BY i) AS ordered"
        ),
        {"ids": sorted(set(institution_ids))},
    )


def _chunks(values: list, size: int = 1000) -> Iterable[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _record(session: orm.Session, batch: WorkloadBatch, lines: list[Line]) -> Recorded:
    """Record the batch's lines as quantities: new keys at version 1, changed ones as a new version superseding
    the current row, equal ones left alone. Set-based: a read of the current rows and their exclusions, one
    UPDATE, one multi-row INSERT of quantities and one of exclusions (chunked for the bound-parameter limit)."""
    result = Recorded()
    if not lines:
        return result
    _lock_institutions(session, (line.institution_id for line in lines))
    keys = {line.key for line in lines}
    current: dict[tuple, WorkloadQuantity] = {}
    institution_ids = sorted({k[0] for k in keys})
    periods = sorted({k[2] for k in keys})
    item_ids = sorted({k[3] for k in keys})
    for chunk in _chunks(institution_ids):
        # A superset of the batch's keys (every combination of its institutions, periods and items), filtered here.
        rows = session.execute(
            sa.select(
                WorkloadQuantity.id,
                WorkloadQuantity.institution_id,
                WorkloadQuantity.member_id,
                WorkloadQuantity.period,
                WorkloadQuantity.item_id,
                WorkloadQuantity.qty_raw,
                WorkloadQuantity.qty_verified,
                WorkloadQuantity.version,
            ).where(
                WorkloadQuantity.is_current.is_(True),
                WorkloadQuantity.institution_id.in_(chunk),
                WorkloadQuantity.period.in_(periods),
                WorkloadQuantity.item_id.in_(item_ids),
            )
        ).all()
        for row in rows:
            key = (row.institution_id, row.member_id, row.period, row.item_id)
            if key in keys:
                current[key] = row
    excluded: dict[int, list[tuple]] = defaultdict(list)
    ids_with_records = [current[line.key].id for line in lines if line.key in current]
    for chunk in _chunks(ids_with_records):
        for quantity_id, ref, rule, reason in session.execute(
            sa.select(
                WorkloadExclusion.quantity_id,
                WorkloadExclusion.record_ref,
                WorkloadExclusion.rule,
                WorkloadExclusion.reason,
            ).where(WorkloadExclusion.quantity_id.in_(chunk))
        ):
            excluded[quantity_id].append((ref, rule, reason))
    superseded: list[int] = []
    inserts: list[dict] = []
    pending_exclusions: list[list[tuple]] = []
    now = utcnow()
    for line in lines:
        old = current.get(line.key)
        if old is not None:
            same = (
                Decimal(old.qty_raw) == line.qty_raw
                and Decimal(old.qty_verified) == line.qty_verified
                and sorted(excluded.get(old.id, []), key=repr) == sorted(line.exclusions, key=repr)
            )
            if same:
                result.unchanged += 1
                continue
            superseded.append(old.id)
            result.corrected += 1
        else:
            result.new += 1
        inserts.append(
            {
                "institution_id": line.institution_id,
                "member_id": line.member_id,
                "period": line.period,
                "item_id": line.item_id,
                "qty_raw": line.qty_raw,
                "qty_verified": line.qty_verified,
                "batch_id": batch.id,
                "version": old.version + 1 if old is not None else 1,
                "is_current": True,
                "supersedes_id": old.id if old is not None else None,
                "recorded_at": now,
            }
        )
        pending_exclusions.append(line.exclusions)
    for chunk in _chunks(superseded):
        session.execute(
            sa.update(WorkloadQuantity)
            .where(WorkloadQuantity.id.in_(chunk))
            .values(is_current=False)
            .execution_options(synchronize_session=False)
        )
    exclusion_rows: list[dict] = []
    for chunk_start in range(0, len(inserts), 1000):
        chunk = inserts[chunk_start : chunk_start + 1000]
        # A multi-row INSERT … RETURNING in parameter order (SQLAlchemy's insertmanyvalues): the ids pair with
        # the lines, so their exclusions can point at them.
        ids = session.scalars(
            sa.insert(WorkloadQuantity).returning(WorkloadQuantity.id, sort_by_parameter_order=True), chunk
        ).all()
        for quantity_id, exclusions in zip(ids, pending_exclusions[chunk_start : chunk_start + 1000], strict=True):
            exclusion_rows += [
                {"quantity_id": quantity_id, "record_ref": ref, "units": Decimal("1.00"), "rule": rule, "reason": why}
                for ref, rule, why in exclusions
            ]
    for chunk in _chunks(exclusion_rows, 2000):
        session.execute(sa.insert(WorkloadExclusion), chunk)
    batch.items = len(lines)
    return result


# -- the feed -------------------------------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """The body in a form whose JSON is the same for the same content: numbers by value (1, 1.0 and 1.00 are one
    quantity), tagged so that the string "1" stays apart from the number 1."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, feed.NonFinite):
        return {"$nonfinite": value.text}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
        return {"$n": format(number.normalize(), "f") if number.is_finite() else str(number)}
    return repr(value)


def digest(body: Any) -> str:
    """SHA-256 of the canonical body: equal for a replay, different for other content under the same id."""
    text = json.dumps(_canonical(body), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _existing(session: orm.Session, system: FeedSystem, batch_id: str) -> WorkloadBatch | None:
    return session.scalar(
        sa.select(WorkloadBatch).where(WorkloadBatch.feed_system_id == system.id, WorkloadBatch.batch_key == batch_id)
    )


def _replay(session: orm.Session, batch: WorkloadBatch, sha: str) -> tuple[int, dict]:
    if batch.sha256 != sha:
        raise ApiError(
            "conflict",
            "该 batch_id 已用于内容不同的另一批数据；更正数据请使用新的 batch_id",
            status=409,
            field="batch_id",
            batch=batch.id,
        )
    return 200, batch_result(session, batch) | {"replayed": True}


def _resolve_feed_institutions(session: orm.Session, system: FeedSystem, entries: list[Raw], errors: Problems) -> None:
    """Each item's institution, inside the system's subtree (the supervision feed's lookup) and an institution."""
    system_node = session.get(OrgNode, system.node_id)
    if system_node is None:
        units: dict = {}
    else:
        probes = [feed.Item(e.index, unit_form=e.unit_form, unit_value=e.unit_value) for e in entries if e.unit_form]
        units = feed.resolve_units(session, system_node, probes)
    for entry in entries:
        if not entry.unit_form:
            continue
        unit = units.get((entry.unit_form, entry.unit_value))
        if unit is None:
            errors.add(entry.index, "institution", "该机构不在本推送系统的范围内")
        elif isinstance(unit, str):
            errors.add(entry.index, "institution", unit.replace("单位", "机构"))
        elif unit.level not in INSTITUTION_LEVELS:
            errors.add(entry.index, "institution", f"{unit.name}不是医疗卫生机构（应为医共体牵头单位或成员单位）")
        else:
            entry.institution = unit


def post_batch(session: orm.Session, system: FeedSystem, body: Any, *, today: date | None = None) -> tuple[int, dict]:
    """Check and record one feed batch in one transaction: (201, result) when new, (200, the first result) for
    the same batch again; `feed.BatchRejected` (422) naming every problem, 409 for a reused batch_id."""
    errors = Problems("items")
    batch_id, entries = _structure(body, errors)
    sha = digest(body)
    if batch_id is not None:
        existing = _existing(session, system, batch_id)
        if existing is not None:
            return _replay(session, existing, sha)
    _resolve_feed_institutions(session, system, entries, errors)
    lines = _check(session, entries, errors, today or feed.today_china(), records_allowed=True) if entries else []
    if errors.items:
        session.rollback()
        # On record in its own transaction: repeated rejections (institutions outside the scope) are worth seeing.
        audit.record(
            feed.system_principal(system),
            "compensation.workload.feed",
            resource_type="feed_system",
            resource_id=system.id,
            node_id=system.node_id,
            outcome="failed",
            detail={"system_id": system.id, "batch_id": batch_id, "errors": len(errors.items)},
        )
        raise feed.BatchRejected(errors.items)
    assert batch_id is not None
    batch = WorkloadBatch(
        source="feed",
        feed_system_id=system.id,
        batch_key=batch_id,
        sha256=sha,
        state="applied",
        items=len(lines),
        submitted_by=f"feed:{system.id} {system.name}"[:140],
        submitted_at=utcnow(),
        decided_at=utcnow(),
    )
    try:
        session.add(batch)
        session.flush()
        recorded = _record(session, batch, lines)
        audit.record(
            feed.system_principal(system),
            "compensation.workload.feed",
            resource_type="comp_workload_batch",
            resource_id=batch.id,
            node_id=system.node_id,
            # Counts only: the quantities are in their table, the log says who sent how much.
            detail={
                "system_id": system.id,
                "batch_id": batch_id,
                "items": len(lines),
                "new": recorded.new,
                "corrected": recorded.corrected,
                "unchanged": recorded.unchanged,
                "excluded": sum(len(line.exclusions) for line in lines),
            },
            session=session,
        )
        result = batch_result(session, batch)
        session.commit()
    except IntegrityError:
        # The same batch posted twice at once: the unique (system, batch_id) refused the second.
        session.rollback()
        existing = _existing(session, system, batch_id)
        if existing is None:
            raise
        return _replay(session, existing, sha)
    log.info("workload batch stored", extra={"batch": batch.id, "items": len(lines)})
    return 201, result


def batch_result(session: orm.Session, batch: WorkloadBatch) -> dict:
    """What a batch did, read back from what it stored: the same reply for the first post and every re-post."""
    previous = orm.aliased(WorkloadQuantity)
    new = session.scalar(
        sa.select(sa.func.count()).where(WorkloadQuantity.batch_id == batch.id, WorkloadQuantity.version == 1)
    )
    corrections = session.execute(
        sa.select(WorkloadQuantity, previous, ServiceItem.code)
        .join(previous, previous.id == WorkloadQuantity.supersedes_id)
        .join(ServiceItem, ServiceItem.id == WorkloadQuantity.item_id)
        .where(WorkloadQuantity.batch_id == batch.id)
        .order_by(WorkloadQuantity.id)
    ).all()
    excluded = session.scalar(
        sa.select(sa.func.count())
        .select_from(WorkloadExclusion)
        .join(WorkloadQuantity, WorkloadQuantity.id == WorkloadExclusion.quantity_id)
        .where(WorkloadQuantity.batch_id == batch.id)
    )
    return {
        "id": batch.id,
        "batch_id": batch.batch_key,
        "source": batch.source,
        "state": batch.state,
        "received_at": batch.submitted_at,
        "items": batch.items,
        "new": new or 0,
        "corrected": len(corrections),
        "unchanged": batch.items - (new or 0) - len(corrections) if batch.state == "applied" else 0,
        "excluded": excluded or 0,
        "corrections": [
            {
                "quantity_id": row.id,
                "institution_id": row.institution_id,
                "member_id": row.member_id,
                "period": row.period,
                "item": code,
                "version": row.version,
                "qty_raw": row.qty_raw,
                "qty_verified": row.qty_verified,
                "previous": {
                    "quantity_id": old.id,
                    "batch_id": old.batch_id,
                    "qty_raw": old.qty_raw,
                    "qty_verified": old.qty_verified,
                },
            }
            for row, old, code in corrections
        ],
    }


# -- manual entry -----------------------------------------------------------------------------------------------------


def county_of(session: orm.Session, institution: OrgNode) -> OrgNode | None:
    """The county bureau above an institution (the nearest on its path)."""
    ancestors = [int(part) for part in institution.path.strip("/").split("/") if part]
    bureaus = {
        node.id: node
        for node in session.scalars(
            sa.select(OrgNode).where(
                OrgNode.id.in_(ancestors), OrgNode.level == "county_bureau", OrgNode.deleted_at.is_(None)
            )
        )
    }
    return next((bureaus[i] for i in reversed(ancestors) if i in bureaus), None)


def _manual_body(
    session: orm.Session, principal: Principal, body: Any, errors: Problems
) -> tuple[OrgNode | None, str | None, str | None, list[Raw]]:
    """The entry's institution (404/403 when not the caller's), period, note and lines, types checked."""
    if not isinstance(body, dict):
        raise _manual_rejected([{"index": None, "field": "body", "message": "请求体应为 JSON 对象"}])
    for key in sorted(set(body) - MANUAL_FIELDS, key=str):
        errors.add(None, str(key), "未知字段")
    institution_id = body.get("institution_id")
    institution: OrgNode | None = None
    if not isinstance(institution_id, int) or isinstance(institution_id, bool) or institution_id <= 0:
        errors.add(None, "institution_id", "institution_id 必填，应为机构的节点 ID（整数）")
    else:
        node = session.get(OrgNode, institution_id)
        if node is None or node.deleted_at is not None or not principal.scope().covers_path(node.path):
            raise ApiError("not_found", "机构不存在", status=404, field="institution_id")
        if not principal.scope(*ENTRY_ROLES).covers_path(node.path):
            raise ApiError(
                "forbidden", "只有本机构或所属区县的管理员可以填报工作量", status=403, field="institution_id"
            )
        if node.level not in INSTITUTION_LEVELS:
            errors.add(None, "institution_id", f"{node.name}不是医疗卫生机构（应为医共体牵头单位或成员单位）")
        else:
            institution = node
    period = body.get("period")
    if not isinstance(period, str):
        errors.add(None, "period", "统计期必填，应为 YYYY-MM 格式的字符串（如 2026-10）")
        period = None
    else:
        period = period.strip()
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note.strip()) > MAX_NOTE):
        errors.add(None, "note", f"说明应为不超过 {MAX_NOTE} 个字符的字符串")
        note = None
    note = (note.strip() or None) if isinstance(note, str) else None
    raw_lines = body.get("lines")
    entries: list[Raw] = []
    if not isinstance(raw_lines, list) or not raw_lines:
        errors.add(None, "lines", "lines 必填，应为非空数组")
    elif len(raw_lines) > MAX_LINES:
        errors.add(None, "lines", f"每份填报最多 {MAX_LINES} 行")
    else:
        for index, raw in enumerate(raw_lines):
            entry = Raw(index, institution=institution, period=period)
            if not isinstance(raw, dict):
                errors.add(index, "", "每一行应为 JSON 对象")
                continue
            for key in sorted(set(raw) - LINE_FIELDS, key=str):
                errors.add(index, str(key), "未知字段")
            _read_common(raw, entry, errors)
            if not entry.sent_quantity:
                errors.add(index, "quantity", "数量必填")
            entries.append(entry)
    return institution, period, note, entries


def _manual_lines(
    session: orm.Session, institution: OrgNode, period: str, payload: list[dict], today: date
) -> tuple[list[Line], list[dict]]:
    """A stored entry's lines checked again (at approval the table for the period may have changed)."""
    errors = Problems("lines")
    entries = []
    for index, line in enumerate(payload):
        entry = Raw(index, institution=institution, period=period, item=line["item"], doctor=line.get("doctor"))
        entry.quantity, entry.sent_quantity = Decimal(line["quantity"]), True
        entries.append(entry)
    lines = _check(session, entries, errors, today, records_allowed=False)
    return lines, errors.items


def submit_manual(
    session: orm.Session, principal: Principal, body: Any, *, today: date | None = None
) -> dict[str, Any]:
    """Check a manual entry whole, store it pending and ask the county bureau's administrators to approve it on
    a card (committed). Nothing counts until one of them agrees."""
    today = today or feed.today_china()
    errors = Problems("lines")
    institution, period, note, entries = _manual_body(session, principal, body, errors)
    problem = period_problem(period, today) if period is not None else None
    if problem:
        errors.add(None, "period", problem)
        for entry in entries:
            entry.period = None  # the entry's one period: named once, on the body, not again on every line
    lines = _check(session, entries, errors, today, records_allowed=False) if entries else []
    if errors.items:
        raise _manual_rejected(sorted(errors.items, key=lambda e: -1 if e["index"] is None else e["index"]))
    assert institution is not None and period is not None
    if not principal.userid or principal.member_id is None:
        raise ApiError("forbidden", "只有机构或区县的管理员本人可以填报工作量", status=403)
    county = county_of(session, institution)
    admins = approvers_of(session, county) if county is not None else []
    approvers = [userid for userid in admins if userid != principal.userid] or admins
    if not approvers:
        raise ApiError(
            "no_approver", f"{institution.name}所属区县卫健局尚无可审批的管理员", status=409, field="institution_id"
        )
    described = {
        row.id: (row.name, row.unit)
        for row in session.execute(
            sa.select(ServiceItem.id, ServiceItem.name, ServiceItem.unit).where(
                ServiceItem.id.in_({line.item_id for line in lines})
            )
        )
    }
    payload_lines = [
        {
            "item": entry.item,
            "quantity": format(entry.quantity, "f"),
            "doctor": entry.doctor,
        }
        for entry in entries
    ]
    payload = {"lines": payload_lines, "note": note}
    batch = WorkloadBatch(
        source="manual",
        sha256=digest(payload),
        institution_id=institution.id,
        period=period,
        payload=payload,
        state="pending",
        items=len(lines),
        submitted_by=principal.actor,
        submitted_at=utcnow(),
    )
    session.add(batch)
    session.flush()
    form = [("机构", institution.name), ("统计期", period)]
    for entry, line in zip(entries, lines, strict=True):
        name, unit = described[line.item_id]
        label = f"{entry.item} {name}" + (f"（医生 {entry.doctor}）" if entry.doctor else "")
        form.append((label[:100], f"{format(line.qty_raw, 'f')} {unit}"))
    if note:
        form.append(("说明", note))
    form.append(("填报人", principal.name))
    approval = request_approval(
        key=f"comp-workload-manual:{batch.id}",
        title=f"{institution.name} {period} 工作量手工填报"[:200],
        originator_userid=principal.userid,
        approvers=approvers,
        mode="any",
        form=form,
        callback=CALLBACK,
        context={"batch_id": batch.id},
        cards_only=True,  # one form line per item: no OA template's fixed labels fit
    )
    batch.approval_id = approval.id
    audit.record(
        principal,
        "compensation.workload.manual.create",
        resource_type="comp_workload_batch",
        resource_id=batch.id,
        node_id=institution.id,
        detail={"period": period, "lines": len(lines), "approval_id": approval.id, "note": note},
        session=session,
    )
    session.commit()
    return manual_view(session, batch)


def _refusal_reason(outcome: ApprovalOutcome) -> str:
    if outcome.result == "refuse":
        refusal = next((d for d in outcome.decisions if d.get("result") == "refuse"), {})
        remark = str(refusal.get("remark") or refusal.get("comment") or "").strip()
        who = refusal.get("userid") or "审批人"
        return (f"{who} 拒绝" + (f"：{remark}" if remark else ""))[:500]
    if outcome.result == "terminated":
        return "审批已撤销"
    return f"审批未能完成：{outcome.error or '发起失败'}"[:500]


def manual_decided(outcome: ApprovalOutcome) -> None:
    """The approval's callback (in the bot's transaction; the bot commits): record the entry's quantities through
    the feed's recording path, or keep why it was refused."""
    session = current_session()
    batch = session.get(WorkloadBatch, outcome.context.get("batch_id"), with_for_update=True)
    if batch is None or batch.source != "manual" or batch.state != "pending":
        return  # decided already (the bot calls back once; this guards a hand-run callback)
    now = utcnow()
    batch.decided_at = now
    deciders = [d.get("userid") for d in outcome.decisions if d.get("result") == outcome.result]
    batch.decided_by = ",".join(str(u) for u in deciders if u)[:140] or None
    problems: list[dict] = []
    if outcome.result == "agree":
        institution = session.get(OrgNode, batch.institution_id)
        lines, problems = _manual_lines(
            session, institution, batch.period, (batch.payload or {}).get("lines", []), feed.today_china()
        )
        if not problems:
            recorded = _record(session, batch, lines)
            batch.state = "applied"
            batch.reason = None
            audit.record(
                None,
                "compensation.workload.manual.applied",
                resource_type="comp_workload_batch",
                resource_id=batch.id,
                node_id=batch.institution_id,
                detail={
                    "approval_id": outcome.approval_id,
                    "approved_by": deciders,
                    "new": recorded.new,
                    "corrected": recorded.corrected,
                    "unchanged": recorded.unchanged,
                },
                session=session,
            )
            return
    batch.state = "refused"
    batch.reason = (
        f"审批同意，但填报已不符合当前数据，未计入：{problems[0]['field']} {problems[0]['message']}"[:500]
        if problems
        else _refusal_reason(outcome)
    )
    audit.record(
        None,
        "compensation.workload.manual.refused",
        resource_type="comp_workload_batch",
        resource_id=batch.id,
        node_id=batch.institution_id,
        detail={"approval_id": outcome.approval_id, "result": outcome.result, "reason": batch.reason},
        session=session,
    )


def manual_view(session: orm.Session, batch: WorkloadBatch) -> dict[str, Any]:
    """A manual entry with its lines, state and approval."""
    approval = session.get(BotApproval, batch.approval_id) if batch.approval_id else None
    payload = batch.payload or {}
    return {
        "id": batch.id,
        "institution_id": batch.institution_id,
        "period": batch.period,
        "state": batch.state,
        "lines": payload.get("lines", []),
        "note": payload.get("note"),
        "submitted_by": batch.submitted_by,
        "submitted_at": batch.submitted_at,
        "decided_by": batch.decided_by,
        "decided_at": batch.decided_at,
        "reason": batch.reason,
        "approval": None
        if approval is None
        else {
            "id": approval.id,
            "state": approval.state,
            "result": approval.result,
            "approvers": list(approval.approvers or []),
        },
    }


def get_manual(session: orm.Session, principal: Principal, batch_id: int) -> dict[str, Any]:
    """A manual entry, to the administrators whose scope covers its institution and to its approvers."""
    batch = session.get(WorkloadBatch, batch_id)
    node = session.get(OrgNode, batch.institution_id) if batch and batch.institution_id else None
    if batch is None or batch.source != "manual" or node is None:
        raise ApiError("not_found", "填报不存在", status=404)
    allowed = principal.scope(*READER_ROLES).covers_path(node.path)
    if not allowed and batch.approval_id is not None and principal.userid:
        approval = session.get(BotApproval, batch.approval_id)
        allowed = approval is not None and principal.userid in (approval.approvers or [])
    if not allowed:
        raise ApiError("not_found", "填报不存在", status=404)
    return manual_view(session, batch)


# -- reads ----------------------------------------------------------------------------------------------------------


def _institution_in_scope(session: orm.Session, principal: Principal, institution_id: int) -> OrgNode:
    node = session.get(OrgNode, institution_id)
    try:
        return principal.scope(*READER_ROLES).require_node(node, "机构")
    except ApiError as error:
        error.field = "institution_id"
        raise


def _quantity_rows(query: sa.Select) -> sa.Select:
    excluded = (
        sa.select(sa.func.count())
        .where(WorkloadExclusion.quantity_id == WorkloadQuantity.id)
        .correlate(WorkloadQuantity)
        .scalar_subquery()
    )
    return (
        query.add_columns(
            OrgNode.name.label("institution_name"),
            ServiceItem.code.label("item_code"),
            ServiceItem.name.label("item_name"),
            ServiceItem.unit.label("item_unit"),
            ServiceItem.package.label("item_package"),
            OrgMember.userid.label("doctor_userid"),
            OrgMember.name.label("doctor_name"),
            WorkloadBatch.source.label("batch_source"),
            excluded.label("excluded"),
        )
        .join(OrgNode, OrgNode.id == WorkloadQuantity.institution_id)
        .join(ServiceItem, ServiceItem.id == WorkloadQuantity.item_id)
        .join(WorkloadBatch, WorkloadBatch.id == WorkloadQuantity.batch_id)
        .outerjoin(OrgMember, OrgMember.id == WorkloadQuantity.member_id)
    )


def _quantity_view(row: Any) -> dict[str, Any]:
    quantity, institution, code, name, unit, package, userid, doctor, source, excluded = row
    return {
        "id": quantity.id,
        "institution_id": quantity.institution_id,
        "institution_name": institution,
        "doctor": None
        if quantity.member_id is None
        else {"member_id": quantity.member_id, "userid": userid, "name": doctor},
        "period": quantity.period,
        "item": {"id": quantity.item_id, "code": code, "name": name, "unit": unit, "package": package},
        "qty_raw": Decimal(quantity.qty_raw).quantize(PLACES),
        "qty_verified": Decimal(quantity.qty_verified).quantize(PLACES),
        "excluded": excluded or 0,
        "version": quantity.version,
        "is_current": quantity.is_current,
        "supersedes_id": quantity.supersedes_id,
        "batch_id": quantity.batch_id,
        "source": source,
        "recorded_at": quantity.recorded_at,
    }


def list_quantities(
    session: orm.Session,
    principal: Principal,
    *,
    institution_id: int | None = None,
    period: str | None = None,
    item: str | None = None,
    doctor: str | None = None,
    page: int = 1,
    page_size: int = 100,
) -> dict[str, Any]:
    """Current quantities inside the caller's scope (county administrators: the county's institutions;
    institution administrators: their own), filtered; 404 for an institution outside it."""
    scope = principal.scope(*READER_ROLES)
    query = _quantity_rows(sa.select(WorkloadQuantity)).where(
        WorkloadQuantity.is_current.is_(True), scope.subtree(OrgNode.path)
    )
    if institution_id is not None:
        query = query.where(
            WorkloadQuantity.institution_id == _institution_in_scope(session, principal, institution_id).id
        )
    if period:
        if not PERIOD.match(period.strip()):
            raise ApiError("validation_error", "统计期应为 YYYY-MM 格式（如 2026-10）", status=422, field="period")
        query = query.where(WorkloadQuantity.period == period.strip())
    if item:
        query = query.where(ServiceItem.code == item.strip())
    if doctor:
        query = query.where(OrgMember.userid == doctor.strip())
    query = query.order_by(
        WorkloadQuantity.period.desc(), WorkloadQuantity.institution_id, ServiceItem.code, WorkloadQuantity.member_id
    )
    rows, total = paginate(query, page, page_size, rows=True, db_session=session)
    return {"items": [_quantity_view(row) for row in rows], "total": total, "page": page, "page_size": page_size}


def _quantity(session: orm.Session, principal: Principal, quantity_id: int) -> WorkloadQuantity:
    quantity = session.get(WorkloadQuantity, quantity_id)
    node = session.get(OrgNode, quantity.institution_id) if quantity else None
    if quantity is None or node is None or not principal.scope(*READER_ROLES).covers_path(node.path):
        raise ApiError("not_found", "工作量记录不存在", status=404)
    return quantity


def history(session: orm.Session, principal: Principal, quantity_id: int) -> dict[str, Any]:
    """Every version of the quantity's (institution, doctor, month, item), oldest first."""
    quantity = _quantity(session, principal, quantity_id)
    member = (
        WorkloadQuantity.member_id.is_(None)
        if quantity.member_id is None
        else WorkloadQuantity.member_id == quantity.member_id
    )
    rows = session.execute(
        _quantity_rows(sa.select(WorkloadQuantity))
        .where(
            WorkloadQuantity.institution_id == quantity.institution_id,
            WorkloadQuantity.period == quantity.period,
            WorkloadQuantity.item_id == quantity.item_id,
            member,
        )
        .order_by(WorkloadQuantity.version, WorkloadQuantity.id)
    ).all()
    return {"items": [_quantity_view(row) for row in rows]}


def exclusions(
    session: orm.Session, principal: Principal, quantity_id: int, *, page: int = 1, page_size: int = 100
) -> dict[str, Any]:
    """The units the quality gate kept out of one quantity version, each with its source record and reason."""
    quantity = _quantity(session, principal, quantity_id)
    query = (
        sa.select(WorkloadExclusion).where(WorkloadExclusion.quantity_id == quantity.id).order_by(WorkloadExclusion.id)
    )
    rows, total = paginate(query, page, page_size, db_session=session)
    return {
        "quantity_id": quantity.id,
        "items": [
            {
                "id": row.id,
                "record_ref": row.record_ref,
                "units": Decimal(row.units).quantize(PLACES),
                "rule": row.rule,
                "reason": row.reason,
            }
            for row in rows
        ],
        "total": total,
        "page": page,
        "page_size": page_size,
    }
