"""The statistics feed (统计数据推送): external systems (a hospital's HIS, the insurance settlement platform) post
numerators and denominators per unit and period, and the registry of those systems.

- A feed system is registered for a subtree by an administrator of it; its API key is shown once, only its
  SHA-256 is kept (a leaked database does not leak keys), rotation kills the old key at once.
- A batch is checked whole before anything is stored: every problem of every item is reported with its index and
  field, and one bad item rejects the batch (a half-stored batch would be worse than none: the sender cannot tell
  which half to resend).
- Idempotent by (source "feed:<system id>", batch_id): the same batch again is answered with the original result
  and changes nothing; the same batch_id with other content is a conflict. A changed figure in a new batch is a
  correction through `values.record` (versioned, never overwritten silently) and the reply lists it.
- After a batch that changed something, the affected periods are recomputed (`supervision.rollup`).

Plain functions: a session and a principal (or the authenticated system), no Flask request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from org_sync.models import OrgNode
from supervision import rollup, values
from supervision.models import FeedSystem, Indicator, IndicatorSubmission, IndicatorValue
from supervision.periods import Period, PeriodError, parse
from workbench import audit
from workbench.auth.principal import ADMINISTRATIVE_LEVELS, INSTITUTION_LEVELS, Principal
from workbench.db import utcnow
from workbench.errors import ApiError

log = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")  # periods are Chinese calendar months, quarters and years
MAX_ITEMS = 5000
MAX_BODY = 8 * 1024 * 1024  # 5,000 items are about 1 MB; anything far larger is not a batch
MAX_AMOUNT = Decimal(10) ** 16  # the columns are NUMERIC(20, 4)
PLACES = Decimal("0.0001")
ITEM_FIELDS = frozenset({"indicator", "unit", "period", "numerator", "denominator", "verdict"})
UNIT_FORMS = ("id", "code", "dept_id")
# Which units report an indicator, by its reporting level.
REPORTING_UNITS = {"institution": INSTITUTION_LEVELS, "county": ("county_bureau",)}
REPORTING_NAMES = {"institution": "医共体牵头单位或成员单位", "county": "区县卫健局"}
SYSTEM_NODE_LEVELS = ADMINISTRATIVE_LEVELS + INSTITUTION_LEVELS
UNIT_FORMAT = '单位应为 {"id": 节点ID}、{"code": 部门编码} 或 {"dept_id": 钉钉部门ID} 之一'


# -- feed systems ------------------------------------------------------------------------------------------------


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> tuple[str, str, str]:
    """A fresh key, its SHA-256 and its hint."""
    key = secrets.token_urlsafe(32)
    return key, _hash(key), key[-4:]


def system_view(session: orm.Session, system: FeedSystem, key: str | None = None) -> dict:
    """A system as the API shows it; the key only when it was just made (it is never stored)."""
    node = session.get(OrgNode, system.node_id)
    view = {
        "id": system.id,
        "name": system.name,
        "node_id": system.node_id,
        "node_name": node.name if node else None,
        "active": system.active,
        "key_hint": system.key_hint,
        "created_by": system.created_by,
        "created_at": system.created_at,
        "key_rotated_at": system.key_rotated_at,
    }
    if key is not None:
        view["api_key"] = key
    return view


def _admin_node(session: orm.Session, principal: Principal, node_id: int) -> OrgNode:
    node = session.get(OrgNode, node_id)
    if node is not None and node.deleted_at is not None:
        node = None
    return principal.scope("admin").require_node(node)


def create_system(session: orm.Session, principal: Principal, name: str, node_id: int) -> dict:
    """Register a system for the subtree of `node_id` (inside the caller's administration); the reply carries the
    API key, the only time it is shown."""
    name = name.strip()
    if not name:
        raise ApiError("validation_error", "系统名称不能为空", status=422, field="name")
    try:
        node = _admin_node(session, principal, node_id)
    except ApiError as error:
        error.field = "node_id"
        raise
    if node.level not in SYSTEM_NODE_LEVELS:
        raise ApiError(
            "validation_error",
            "推送系统应挂在卫健委、卫健局或医疗卫生机构上，不能挂在科室上",
            status=422,
            field="node_id",
        )
    if session.scalar(sa.select(FeedSystem.id).where(FeedSystem.name == name)) is not None:
        raise ApiError("conflict", "已有同名的推送系统", status=409, field="name")
    key, key_hash, hint = _new_key()
    system = FeedSystem(
        name=name, node_id=node.id, key_hash=key_hash, key_hint=hint, active=True, created_by=principal.actor
    )
    session.add(system)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise ApiError("conflict", "已有同名的推送系统", status=409, field="name") from None
    audit.record(
        principal,
        "supervision.feed_system.create",
        resource_type="feed_system",
        resource_id=system.id,
        node_id=node.id,
        detail={"name": name, "key_hint": hint},
        session=session,
    )
    session.commit()
    return system_view(session, system, key)


def list_systems(session: orm.Session, principal: Principal) -> list[dict]:
    """The systems registered for nodes inside the caller's administration; never a key."""
    rows = session.scalars(
        sa.select(FeedSystem)
        .join(OrgNode, OrgNode.id == FeedSystem.node_id)
        .where(principal.scope("admin").subtree(OrgNode.path))
        .order_by(FeedSystem.id)
    )
    return [system_view(session, row) for row in rows]


def _own_system(session: orm.Session, principal: Principal, system_id: int) -> FeedSystem:
    system = session.get(FeedSystem, system_id)
    node = session.get(OrgNode, system.node_id) if system else None
    if system is None or node is None or not principal.scope("admin").covers_path(node.path):
        raise ApiError("not_found", "推送系统不存在", status=404)
    return system


def rotate_key(session: orm.Session, principal: Principal, system_id: int) -> dict:
    """A new key for the system; the old one stops working with this commit."""
    system = _own_system(session, principal, system_id)
    key, system.key_hash, system.key_hint = _new_key()
    system.key_rotated_at = utcnow()
    audit.record(
        principal,
        "supervision.feed_system.rotate_key",
        resource_type="feed_system",
        resource_id=system.id,
        node_id=system.node_id,
        detail={"key_hint": system.key_hint},
        session=session,
    )
    session.commit()
    return system_view(session, system, key)


def set_active(session: orm.Session, principal: Principal, system_id: int, active: bool) -> dict:
    """Switch a system off (its key is refused from now on) or back on."""
    system = _own_system(session, principal, system_id)
    system.active = active
    audit.record(
        principal,
        "supervision.feed_system.update",
        resource_type="feed_system",
        resource_id=system.id,
        node_id=system.node_id,
        detail={"active": active},
        session=session,
    )
    session.commit()
    return system_view(session, system)


def authenticate(session: orm.Session, authorization: str | None) -> FeedSystem:
    """The active system whose key is in `Authorization: Bearer <key>`; 401 otherwise."""
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise ApiError("unauthorized", "需要推送密钥 (Authorization: Bearer <API key>)", status=401)
    # Looked up by hash: the key itself is never stored, and a hash lookup does not leak it by timing.
    system = session.scalar(sa.select(FeedSystem).where(FeedSystem.key_hash == _hash(given)))
    if system is None or not system.active:
        raise ApiError("unauthorized", "推送密钥无效或该系统已停用", status=401)
    return system


def system_principal(system: FeedSystem) -> Principal:
    """The audit log's name for a feed system ("feed:<id>"); it holds no roles."""
    return Principal(member_id=None, corp_id="feed", userid=str(system.id), name=system.name)


# -- the batch ---------------------------------------------------------------------------------------------------


class BatchRejected(ApiError):
    """A batch with problems: every one of them, by item index and dotted field."""

    def __init__(self, errors: list[dict]) -> None:
        first = errors[0]
        super().__init__(
            "validation_error",
            f"批次未通过校验（{len(errors)} 处问题），未保存任何数据。首个问题：{first['message']}",
            status=422,
            field=first["field"],
        )
        self.errors = errors


@dataclass(frozen=True)
class NonFinite:
    """NaN or ±Infinity in the JSON (Python's parser accepts them): kept so the item can be told why."""

    text: str


def parse_body(raw: bytes) -> Any:
    """The request body as JSON, with exact decimals (no float rounding) and NaN/Infinity kept as markers."""
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=NonFinite)
    except (ValueError, RecursionError):
        raise ApiError("bad_request", "请求体不是合法的 JSON", status=400) from None


_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def amount_of(value: Any, *, places: Decimal = PLACES, maximum: Decimal = MAX_AMOUNT) -> Decimal | str:
    """A non-negative finite number with at most `places` that stays below `maximum` (the column's precision), or
    why not (user-facing). Shared with every feed that takes quantities as JSON numbers parsed to Decimal."""
    if isinstance(value, NonFinite):
        return "必须是有限数值，不能是 NaN 或 Infinity"
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return "必须是数字（不能是字符串、布尔值或空值）"
    amount = Decimal(value)
    if not amount.is_finite():
        return "必须是有限数值，不能是 NaN 或 Infinity"
    if amount < 0:
        return "不能为负数"
    if amount >= maximum:
        return f"数值过大（应小于 10{str(maximum.adjusted()).translate(_SUPERSCRIPT)}）"
    try:
        if amount != amount.quantize(places):
            return f"最多保留 {-places.as_tuple().exponent} 位小数"
    except InvalidOperation:
        return "数值格式不正确"
    return abs(amount.quantize(places))  # abs: -0 is 0


@dataclass
class Item:
    index: int
    indicator: str | None = None
    unit_form: str | None = None
    unit_value: Any = None
    period: str | None = None
    numerator: Decimal | None = None
    denominator: Decimal | None = None
    has_denominator: bool = False
    verdict: str | None = None
    has_verdict: bool = False


class ItemErrors:
    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, index: int | None, field: str, message: str) -> None:
        dotted = field if index is None else f"items.{index}" + (f".{field}" if field else "")
        self.items.append({"index": index, "field": dotted, "message": message})


def today_china() -> date:
    return datetime.now(CHINA).date()


def _structure(body: Any, errors: ItemErrors) -> tuple[str | None, list[Item]]:
    """The batch id and the items' shapes; type problems go to `errors`."""
    if not isinstance(body, dict):
        errors.add(None, "body", '请求体应为 JSON 对象：{"batch_id": ..., "items": [...]}')
        return None, []
    unknown = sorted(set(body) - {"batch_id", "items"})
    for key in unknown:
        errors.add(None, str(key), "未知字段")
    batch_id = body.get("batch_id")
    if not isinstance(batch_id, str) or not batch_id.strip():
        errors.add(None, "batch_id", "batch_id 必填，应为非空字符串")
        batch_id = None
    elif len(batch_id) > 100:
        errors.add(None, "batch_id", "batch_id 不能超过 100 个字符")
        batch_id = None
    raw_items = body.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        errors.add(None, "items", "items 必填，应为非空数组")
        return batch_id, []
    if len(raw_items) > MAX_ITEMS:
        errors.add(None, "items", f"每批最多 {MAX_ITEMS} 项，本批 {len(raw_items)} 项，请分批推送")
        return batch_id, []
    items = []
    for index, raw in enumerate(raw_items):
        item = Item(index)
        items.append(item)
        if not isinstance(raw, dict):
            errors.add(index, "", "每一项应为 JSON 对象")
            continue
        for key in sorted(set(raw) - ITEM_FIELDS, key=str):
            errors.add(index, str(key), "未知字段")
        code = raw.get("indicator")
        if isinstance(code, str) and code.strip():
            item.indicator = code.strip()
        else:
            errors.add(index, "indicator", "指标编码必填，应为字符串（如 NCM-07）")
        unit = raw.get("unit")
        forms = [form for form in UNIT_FORMS if isinstance(unit, dict) and form in unit]
        if not isinstance(unit, dict) or len(forms) != 1 or len(unit) != 1:
            errors.add(index, "unit", UNIT_FORMAT)
        else:
            form, value = forms[0], unit[forms[0]]
            if form == "code":
                ok = isinstance(value, str) and bool(value.strip())
                value = value.strip() if ok else value
            else:
                ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
            if ok:
                item.unit_form, item.unit_value = form, value
            else:
                errors.add(index, f"unit.{form}", "部门编码应为非空字符串" if form == "code" else "应为正整数")
        period = raw.get("period")
        if isinstance(period, str):
            item.period = period
        else:
            errors.add(index, "period", "统计期必填，应为字符串（如 2026-10、2026-Q3、2026）")
        read_figures(raw, item, errors)
    return batch_id, items


def read_figures(raw: dict, item: Item, errors: ItemErrors) -> None:
    """An item's numerator, denominator and verdict into `item`; their type problems go to `errors` (shared with
    manual reports, supervision/reports.py, which check items the same way)."""
    index = item.index
    amount = amount_of(raw.get("numerator")) if "numerator" in raw else "分子必填"
    if isinstance(amount, str):
        errors.add(index, "numerator", amount)
    else:
        item.numerator = amount
    if raw.get("denominator") is not None:
        item.has_denominator = True
        amount = amount_of(raw["denominator"])
        if isinstance(amount, str):
            errors.add(index, "denominator", amount)
        else:
            item.denominator = amount
    verdict = raw.get("verdict")
    if verdict is not None:
        item.has_verdict = True
        if not isinstance(verdict, str) or not verdict.strip():
            errors.add(index, "verdict", "评定结论应为非空字符串")
        elif len(verdict.strip()) > 200:
            errors.add(index, "verdict", "评定结论不能超过 200 个字符")
        else:
            item.verdict = verdict.strip()


def resolve_units(
    session: orm.Session, system_node: OrgNode, items: list[Item]
) -> dict[tuple[str, Any], OrgNode | str]:
    """Each (form, value) the items name → the node, or why it cannot be used (user-facing)."""
    wanted: dict[str, set] = defaultdict(set)
    for item in items:
        if item.unit_form:
            wanted[item.unit_form].add(item.unit_value)
    column = {"id": OrgNode.id, "code": OrgNode.code, "dept_id": OrgNode.dept_id}
    found: dict[tuple[str, Any], OrgNode | str] = {}
    for form, keys in wanted.items():
        candidates: dict[Any, list[OrgNode]] = defaultdict(list)
        keys_list = list(keys)
        for start in range(0, len(keys_list), 1000):  # stay under SQLite's bound-parameter limit
            chunk = keys_list[start : start + 1000]
            for node in session.scalars(sa.select(OrgNode).where(column[form].in_(chunk))):
                candidates[getattr(node, form)].append(node)
        for key in keys:
            nodes = candidates.get(key, [])
            inside = [n for n in nodes if n.path.startswith(system_node.path)]
            live = [n for n in inside if n.deleted_at is None]
            if len(live) == 1:
                found[(form, key)] = live[0]
            elif len(live) > 1:
                found[(form, key)] = '该编码对应多个单位，请改用 {"id": 节点ID}'
            elif inside:
                found[(form, key)] = "该单位已撤销"
            elif nodes:
                found[(form, key)] = "该单位不在本推送系统的范围内"
            else:
                found[(form, key)] = "未知的单位"
    return found


def _validate(
    session: orm.Session, system: FeedSystem, body: Any, today: date
) -> tuple[str, list[values.ValueRow], dict[int, Indicator]]:
    """The batch id, its value rows (in item order) and the indicators they use; BatchRejected with every
    problem otherwise."""
    errors = ItemErrors()
    batch_id, items = _structure(body, errors)
    codes = {item.indicator for item in items if item.indicator}
    indicators = (
        {row.code: row for row in session.scalars(sa.select(Indicator).where(Indicator.code.in_(codes)))}
        if codes
        else {}
    )
    system_node = session.get(OrgNode, system.node_id)
    units = resolve_units(session, system_node, items) if system_node is not None else {}
    rows: list[values.ValueRow] = []
    seen: dict[tuple, int] = {}
    for item in items:
        before = len(errors.items)
        indicator = indicators.get(item.indicator) if item.indicator else None
        if item.indicator and indicator is None:
            errors.add(item.index, "indicator", f"未知的指标编码 {item.indicator}")
        elif indicator is not None and not indicator.active:
            errors.add(item.index, "indicator", f"指标 {indicator.code} 已停用")
            indicator = None
        unit = units.get((item.unit_form, item.unit_value)) if item.unit_form else None
        if isinstance(unit, str):
            errors.add(item.index, "unit", unit)
            unit = None
        elif item.unit_form and unit is None:  # the system's own node is gone
            errors.add(item.index, "unit", "该单位不在本推送系统的范围内")
        period: Period | None = None
        if item.period is not None:
            try:
                period = parse(item.period, indicator.period if indicator else None)
            except PeriodError as error:
                errors.add(item.index, "period", str(error))
            else:
                if period.start > today:
                    errors.add(item.index, "period", "统计期尚未开始，不能上报未来的统计期")
                    period = None
        if indicator is not None:
            if unit is not None and unit.level not in REPORTING_UNITS.get(indicator.reporting_level, ()):
                errors.add(
                    item.index,
                    "unit",
                    f"指标 {indicator.code} 应由{REPORTING_NAMES.get(indicator.reporting_level, '其他单位')}上报，"
                    f"不能报在{unit.name}",
                )
            check_figures(indicator, item, errors)
        if len(errors.items) > before or indicator is None or unit is None or period is None:
            continue
        row = values.ValueRow(
            indicator_id=indicator.id,
            unit_id=unit.id,
            period=period,
            numerator=item.numerator,
            denominator=item.denominator,
            verdict=item.verdict,
        )
        if row.key in seen:
            errors.add(item.index, "", f"与 items.{seen[row.key]} 重复：同一指标、单位和统计期只能报一次")
            continue
        seen[row.key] = item.index
        rows.append(row)
    if errors.items:
        raise BatchRejected(errors.items)
    return batch_id, rows, {row.id: row for row in indicators.values()}


def check_figures(indicator: Indicator, item: Item, errors: ItemErrors) -> None:
    """The figures against the indicator's kind: a rate has a denominator, a count none, a verdict is
    qualitative only."""
    numerator, denominator = item.numerator, item.denominator
    if indicator.kind == "qualitative":
        if numerator is not None and numerator not in (0, 1):
            errors.add(item.index, "numerator", "定性指标的分子应为 1（达标）或 0（未达标）")
        if not item.has_denominator or (denominator is not None and denominator != 1):
            errors.add(item.index, "denominator", "定性指标的分母应为 1")
        if not item.has_verdict:
            errors.add(item.index, "verdict", "定性指标需要评定结论（verdict）")
        return
    if item.has_verdict:
        errors.add(item.index, "verdict", "只有定性指标填写评定结论")
    if indicator.kind == "count":
        if item.has_denominator:
            errors.add(item.index, "denominator", "数量类指标没有分母，请不要填写 denominator")
        return
    if not item.has_denominator:
        errors.add(item.index, "denominator", "比率类指标需要分母")
        return
    if numerator is None or denominator is None:
        return
    if indicator.bounded and numerator > denominator:
        errors.add(item.index, "numerator", "分子不能大于分母（该指标是整体中的占比）")
    elif denominator == 0 and numerator != 0:
        errors.add(item.index, "denominator", "分母为 0 时分子也应为 0")


def _submission(session: orm.Session, source: str, batch_id: str) -> IndicatorSubmission | None:
    return session.scalar(
        sa.select(IndicatorSubmission).where(
            IndicatorSubmission.source == source, IndicatorSubmission.batch_key == batch_id
        )
    )


def _figures(numerator: Decimal | None, denominator: Decimal | None) -> tuple:
    quantized = [None if x is None else Decimal(x).quantize(PLACES) for x in (numerator, denominator)]
    return tuple(None if x is None else abs(x) for x in quantized)


def _same_content(session: orm.Session, submission: IndicatorSubmission, rows: list[values.ValueRow]) -> bool:
    """Whether `rows` are what `submission` recorded: each key's figures equal the row the batch added or, for a
    key it left unchanged, the version that was current before it."""
    if len(rows) != submission.items:
        return False
    wanted = {row.key: (_figures(row.numerator, row.denominator), row.verdict or None) for row in rows}
    established: dict[tuple, tuple] = {}
    for value in session.scalars(sa.select(IndicatorValue).where(IndicatorValue.submission_id == submission.id)):
        established[(value.indicator_id, value.unit_id, value.period)] = (
            _figures(value.numerator, value.denominator),
            value.verdict or None,
        )
    if not set(established) <= set(wanted) or len(established) != submission.changed:
        return False
    rest = [key for key in wanted if key not in established]
    if rest:
        # The versions current before this batch: per key, the latest from an earlier submission.
        earlier: dict[tuple, IndicatorValue] = {}
        for start in range(0, len(rest), 500):
            chunk = rest[start : start + 500]
            candidates = session.scalars(
                sa.select(IndicatorValue).where(
                    IndicatorValue.submission_id < submission.id,
                    IndicatorValue.indicator_id.in_({k[0] for k in chunk}),
                    IndicatorValue.unit_id.in_({k[1] for k in chunk}),
                    IndicatorValue.period.in_({k[2] for k in chunk}),
                )
            )
            keys = set(chunk)
            for value in candidates:
                key = (value.indicator_id, value.unit_id, value.period)
                if key in keys and (key not in earlier or value.id > earlier[key].id):
                    earlier[key] = value
        for key in rest:
            if key not in earlier:
                return False
            established[key] = (
                _figures(earlier[key].numerator, earlier[key].denominator),
                earlier[key].verdict or None,
            )
    return all(established[key] == wanted[key] for key in wanted)


def _number(amount: Decimal | None) -> float | int | None:
    if amount is None:
        return None
    amount = Decimal(amount)
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def _result(session: orm.Session, submission: IndicatorSubmission) -> dict:
    """What a batch did, read back from what it stored: the same reply for the first post and every re-post."""
    previous = orm.aliased(IndicatorValue)
    corrections = session.execute(
        sa.select(IndicatorValue, previous, Indicator.code)
        .join(previous, previous.id == IndicatorValue.supersedes_id)
        .join(Indicator, Indicator.id == IndicatorValue.indicator_id)
        .where(IndicatorValue.submission_id == submission.id)
        .order_by(IndicatorValue.id)
    ).all()
    return {
        "submission_id": submission.id,
        "batch_id": submission.batch_key,
        "received_at": submission.received_at,
        "items": submission.items,
        "new": submission.changed - len(corrections),
        "corrected": len(corrections),
        "unchanged": submission.items - submission.changed,
        "corrections": [
            {
                "indicator": code,
                "unit_id": new.unit_id,
                "period": new.period,
                "numerator": _number(new.numerator),
                "denominator": _number(new.denominator),
                "verdict": new.verdict,
                "previous": {
                    "source": old.source,
                    "submission_id": old.submission_id,
                    "numerator": _number(old.numerator),
                    "denominator": _number(old.denominator),
                    "verdict": old.verdict,
                    "recorded_at": old.recorded_at,
                },
            }
            for new, old, code in corrections
        ],
    }


def _replay(session: orm.Session, submission: IndicatorSubmission, rows: list[values.ValueRow]) -> tuple[int, dict]:
    if not _same_content(session, submission, rows):
        raise ApiError(
            "conflict",
            "该 batch_id 已用于内容不同的另一批数据；更正数据请使用新的 batch_id",
            status=409,
            field="batch_id",
            submission_id=submission.id,
        )
    return 200, _result(session, submission) | {"replayed": True}


def post_batch(session: orm.Session, system: FeedSystem, body: Any, *, today: date | None = None) -> tuple[int, dict]:
    """Check and store one batch in one transaction: (201, result) when new, (200, the original result) when the
    same batch came before; BatchRejected (422) with every problem, or 409 for a reused batch_id."""
    try:
        batch_id, rows, _indicators = _validate(session, system, body, today or today_china())
    except BatchRejected as rejected:
        # On record in its own transaction: repeated rejections (units outside the scope) are worth seeing.
        audit.record(
            system_principal(system),
            "supervision.feed.batch",
            resource_type="feed_system",
            resource_id=system.id,
            node_id=system.node_id,
            outcome="failed",
            detail={"system_id": system.id, "errors": len(rejected.errors)},
        )
        raise
    source = f"feed:{system.id}"
    existing = _submission(session, source, batch_id)
    if existing is not None:
        return _replay(session, existing, rows)
    submission = IndicatorSubmission(
        kind="feed",
        source=source,
        batch_key=batch_id,
        system_id=system.id,
        state="accepted",
        items=0,
        changed=0,
        submitted_by=system.name[:100],
        received_at=utcnow(),
    )
    try:
        session.add(submission)
        session.flush()
        recorded = values.record(session, submission, rows)
        audit.record(
            system_principal(system),
            "supervision.feed.batch",
            resource_type="indicator_submission",
            resource_id=submission.id,
            node_id=system.node_id,
            # Counts only: the figures are in the values table, the audit log says who sent how much.
            detail={
                "system_id": system.id,
                "batch_id": batch_id,
                "items": len(rows),
                "new": recorded.new,
                "corrected": recorded.corrected,
                "unchanged": recorded.unchanged,
            },
            session=session,
        )
        periods = sorted(
            set(
                session.scalars(
                    sa.select(IndicatorValue.period).where(IndicatorValue.submission_id == submission.id).distinct()
                )
            )
        )
        result = _result(session, submission)
        session.commit()
    except IntegrityError:
        # Another request got there first: the same batch (answer as a re-post) or another batch writing the
        # same keys at the same moment (the unique current row refused the second).
        session.rollback()
        existing = _submission(session, source, batch_id)
        if existing is not None:
            return _replay(session, existing, rows)
        raise ApiError("conflict", "相同指标、单位和统计期的数据正被另一批次同时写入，请稍后重试", status=409) from None
    log.info(
        "feed batch stored",
        extra={"result": {k: result[k] for k in ("new", "corrected", "unchanged")}, "rows": len(rows)},
    )
    if periods:
        _schedule_recompute(periods)
    return 201, result


def _schedule_recompute(periods: list[str]) -> None:
    """Queue the roll-up of the periods a batch changed (after the commit, so the job sees the values)."""
    try:
        rollup.schedule_recompute(periods)
    except Exception:
        # The values are committed: failing the reply now would only make the sender re-post a batch that is
        # already stored (answered 200 without queueing). Logged for the operators to rerun the roll-up.
        log.exception("recomputation not queued after a feed batch", extra={"rows": len(periods)})


# -- reading values ----------------------------------------------------------------------------------------------

READER_ROLES = ("admin", "supervisor")


def _display(indicator: Indicator, numerator: Decimal, denominator: Decimal | None) -> float | None:
    """The figure in the indicator's display unit (65.2 for 65.2%); None for a rate over zero."""
    if indicator.kind == "rate":
        if not denominator:
            return None
        return float(Decimal(numerator) / Decimal(denominator) * indicator.scale)
    return float(numerator)


def read_values(
    session: orm.Session,
    principal: Principal,
    indicator_code: str,
    unit_id: int,
    period: str | None = None,
    history: bool = False,
) -> dict:
    """The current value of an indicator for a unit inside the caller's scope (one period, or every period), and
    with `history` every version (corrections and what they replaced) with source and time, newest first."""
    indicator = session.scalar(sa.select(Indicator).where(Indicator.code == indicator_code.strip()))
    if indicator is None:
        raise ApiError("not_found", "指标不存在", status=404, field="indicator")
    unit = session.get(OrgNode, unit_id)
    try:
        unit = principal.scope(*READER_ROLES).require_node(unit, "单位")
    except ApiError as error:
        error.field = "unit_id"
        raise
    query = sa.select(IndicatorValue).where(
        IndicatorValue.indicator_id == indicator.id, IndicatorValue.unit_id == unit.id
    )
    if period:
        try:
            parsed = parse(period, indicator.period)
        except PeriodError as error:
            raise ApiError("validation_error", str(error), status=422, field="period") from None
        query = query.where(IndicatorValue.period == parsed.code)
    if not history:
        query = query.where(IndicatorValue.is_current)
    rows = session.scalars(
        query.order_by(IndicatorValue.period_start.desc(), IndicatorValue.is_current.desc(), IndicatorValue.id.desc())
    ).all()
    return {
        "indicator": {
            "code": indicator.code,
            "name": indicator.name,
            "kind": indicator.kind,
            "unit": indicator.unit,
            "scale": indicator.scale,
            "period": indicator.period,
        },
        "unit": {"id": unit.id, "name": unit.name, "level": unit.level},
        "items": [
            {
                "id": row.id,
                "period": row.period,
                "numerator": _number(row.numerator),
                "denominator": _number(row.denominator),
                "value": _display(indicator, row.numerator, row.denominator),
                "verdict": row.verdict,
                "source": row.source,
                "submission_id": row.submission_id,
                "is_current": row.is_current,
                "supersedes_id": row.supersedes_id,
                "recorded_at": row.recorded_at,
            }
            for row in rows
        ],
    }
