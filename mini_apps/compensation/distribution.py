"""Internal distribution (二次分配): an institution divides the performance pool of an approved settlement among
its staff by personal 当量 × internal point value × personal coefficient (reference/domain.md §2.3 formula 6),
within the rules it sets itself (`DistributionRule`; the third-party performance code the reference cites
allocates 平均 / 系数 / 自定义 — here an equal part, points, and personal coefficients).

The figures of one distribution (`distribute`):

- basis: the services' value the settlement recognises (`service_payment`) — an advance's purchase amount × its
  advance share; an annual true-up's purchase amount less what the year's advances counted. The purchase amount,
  not the gap subsidy (see `service_payment`), and never line items (专项补助 are earmarked, never bonuses). Over a
  year the advances' and the true-up's bases add up to the year's purchase; a true-up is not distributed while an
  advance of its year is open, nor an advance the approved true-up did not subtract (`_year_conflict`), so the
  year is distributed once.
- pool = basis × `pool_share`, quantised to 2 places (ROUND_HALF_UP); nothing to distribute (basis ≤ 0) is a 409.
- personal 当量 = Σ over the doctor's current per-doctor quantities (`WorkloadQuantity.member_id`) of the settled
  months and of the rule's packages, each × the 当量 value the settlement froze for that month and item, 4 places
  per row like the settlement. A doctor's row for an item and month the settlement did not pay (a late addition)
  counts for nothing and is listed in the snapshot as `unsettled`.
- staff counted: everyone with personal 当量, and the members the rule names with a coefficient who work in the
  institution itself — not in a member institution below a lead hospital (a manager without 当量 gets the equal
  part only).
- points = personal 当量 × personal coefficient (the rule's coefficient for the member, else its default).
- equal part = pool × `average_share` ÷ staff; point value = (pool − the equal parts) ÷ Σ points; amount = equal
  part + points × point value. With `cap_multiple`, nobody gets more than that multiple of the mean share; what
  the cap takes goes to the others by points (to everyone uncapped equally when none of them has points), repeated
  until nobody is over (a cap of at least 1 × the mean always leaves room).
- cents: every exact amount is cut to 2 places and the cents left over go one by one to the largest remainders
  of those under the cap (then the capped, then the lower member id), so the shares add up to the pool exactly
  (a capped share may end a cent above the exact cap). Each share keeps its amount written out (`how`).

A distribution freezes its rule, the settlement's figures, every row and 当量 value it read, the exact equal part,
point value and cap, and the named members no longer counted (`snapshot`), like a settlement. Drafts may be
redone (the old one `superseded`) until the institution confirms one; confirming sends each person their own share
by work notice. Staff read only their own shares.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc, orm

from bot import messages, outbox
from mini_apps.compensation import pricing
from mini_apps.compensation.models import (
    DISTRIBUTION_STATES,
    PACKAGES,
    SETTLEMENT_KINDS,
    Distribution,
    DistributionRule,
    DistributionShare,
    ServiceItem,
    Settlement,
    WorkloadQuantity,
)
from org_sync.models import OrgMember, OrgMembership, OrgNode
from workbench import audit, h5
from workbench.auth.principal import INSTITUTION_LEVELS, Principal, actor_names
from workbench.db import utcnow
from workbench.errors import ApiError

Q2 = Decimal("0.01")
Q4 = Decimal("0.0001")
Q8 = Decimal("0.00000001")
ZERO = Decimal(0)
CENT = Decimal("0.01")
NOISE = Decimal("1e-9")
MANAGER_ROLES = ("institution_admin",)  # the institution sets its own rules and divides its own pool
READER_ROLES = ("admin", "finance_officer", "institution_admin")
SHARE_MIN, SHARE_MAX = Decimal(0), Decimal(1)
COEFFICIENT_LIMIT = Decimal(10)  # personal coefficients beyond 10× are a typing error, not a rule
CAP_MAX = Decimal(100)
MAX_COEFFICIENTS = 2000
ID_MAX = 2**31 - 1  # org_members.id is an INTEGER
NOTE_MAX = 500
RULE_FIELDS = {
    "pool_share",
    "average_share",
    "default_coefficient",
    "coefficient_min",
    "coefficient_max",
    "coefficients",
    "cap_multiple",
    "packages",
    "note",
}
MY_SHARES_URL = "/h5/apps/compensation/my-shares"


def _invalid(field: str, message: str) -> ApiError:
    return ApiError("validation_error", message, status=422, field=field)


def _conflict(message: str, field: str | None = None) -> ApiError:
    return ApiError("conflict", message, status=409, field=field)


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _d(value: Any, places: Decimal) -> Decimal:
    # SQLite hands Numeric back through a float: quantising restores the stored places exactly.
    return Decimal(str(value)).quantize(places)


# -- scope ------------------------------------------------------------------------------------------------------


def _institution_missing(institution_id: int) -> ApiError:
    return ApiError("not_found", f"机构 {institution_id} 不存在或不在您的管理范围内", status=404)


def _require_manager(principal: Principal) -> None:
    # Before any look-up: a caller without the role learns nothing about which ids exist.
    if not principal.has_role(*MANAGER_ROLES):
        raise ApiError("forbidden", "只有本机构管理员可以设置内部分配", status=403, required_roles=list(MANAGER_ROLES))


def _managed_institution(session: orm.Session, principal: Principal, institution_id: int) -> OrgNode:
    """The institution if the caller administers that institution itself: an `institution_admin` role on its
    node. A lead hospital's administrators cover its member institutions' paths, but each member institution
    divides its own pool (the same nearest-institution rule as `workload._doctors`)."""
    _require_manager(principal)
    found = pricing.readable_institution(session, principal, institution_id)[0]
    if not principal.operator and not any(
        role.code in MANAGER_ROLES and role.node_id == found.id for role in principal.roles
    ):
        raise _institution_missing(institution_id)
    return found


def _readable_distribution(
    session: orm.Session, principal: Principal, distribution_id: int
) -> tuple[Distribution, OrgNode]:
    row = session.get(Distribution, distribution_id)
    node = session.get(OrgNode, row.institution_id) if row else None
    if (
        row is None
        or node is None
        or not principal.has_role(*READER_ROLES)
        or not principal.scope(*READER_ROLES).covers_path(node.path)
    ):
        raise ApiError("not_found", "分配方案不存在", status=404)
    return row, node


# -- rules ------------------------------------------------------------------------------------------------------


def _staff_ids(session: orm.Session, institution: OrgNode, member_ids: set[int] | None = None) -> set[int]:
    """Active members with a position in the institution or its departments — not in a member institution below
    it (a lead hospital's member institutions have their own staff). Two queries."""
    nested = session.scalars(
        sa.select(OrgNode.path).where(
            OrgNode.path.startswith(institution.path),
            OrgNode.id != institution.id,
            OrgNode.level.in_(INSTITUTION_LEVELS),
            OrgNode.deleted_at.is_(None),
        )
    ).all()
    query = (
        sa.select(OrgMembership.member_id, OrgNode.path)
        .join(OrgNode, OrgNode.id == OrgMembership.node_id)
        .join(OrgMember, OrgMember.id == OrgMembership.member_id)
        .where(
            OrgNode.path.startswith(institution.path),  # paths end with "/": the institution and what is under it
            OrgNode.deleted_at.is_(None),
            OrgMember.active.is_(True),
            OrgMember.deleted_at.is_(None),
        )
    )
    if member_ids is not None:
        query = query.where(OrgMembership.member_id.in_(member_ids))
    return {member for member, path in session.execute(query) if not any(path.startswith(n) for n in nested)}


def _text(raw: Any, field: str, limit: int) -> str | None:
    if raw is None:
        return None
    # NUL: PostgreSQL refuses it in text.
    if not isinstance(raw, str) or len(raw) > limit or "\x00" in raw:
        raise _invalid(field, f"说明须为不超过 {limit} 字的文字")
    return raw.strip() or None


def check_rule(session: orm.Session, institution: OrgNode, data: Mapping[str, Any]) -> dict[str, Any]:
    """The rule as stored, or a 422 naming the field (`coefficients.3.member_id`)."""
    if not isinstance(data, Mapping):
        raise _invalid("body", "规则须为对象")
    unknown = sorted(set(data) - RULE_FIELDS)
    if unknown:
        raise _invalid(unknown[0], "未知字段")

    def share(name: str, label: str, default: Any = None, *, low_inclusive: bool = True) -> Decimal:
        raw = data.get(name, default)
        if raw is None:
            raise _invalid(name, f"{label}必填")
        return pricing.parse_decimal(
            raw, name, label, places=Q4, low=SHARE_MIN, high=SHARE_MAX, low_inclusive=low_inclusive
        )

    def coefficient(raw: Any, name: str, label: str) -> Decimal:
        if raw is None:
            raise _invalid(name, f"{label}必填")
        return pricing.parse_decimal(raw, name, label, places=Q4, low=ZERO, high=COEFFICIENT_LIMIT)

    pool_share = share("pool_share", "绩效池比例", low_inclusive=False)
    average_share = share("average_share", "平均分配比例", 0)
    low = coefficient(data.get("coefficient_min"), "coefficient_min", "个人系数下限")
    high = coefficient(data.get("coefficient_max"), "coefficient_max", "个人系数上限")
    if high < low:
        raise _invalid("coefficient_max", "个人系数上限不能小于下限")
    default = coefficient(data.get("default_coefficient", 1), "default_coefficient", "默认个人系数")
    if not low <= default <= high:
        raise _invalid("default_coefficient", f"默认个人系数须在 {_s(low)} 到 {_s(high)} 之间")

    raw_list = data.get("coefficients", [])
    if not isinstance(raw_list, list):
        raise _invalid("coefficients", "个人系数须为列表")
    if len(raw_list) > MAX_COEFFICIENTS:
        raise _invalid("coefficients", f"个人系数最多 {MAX_COEFFICIENTS} 条")
    coefficients: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    for n, entry in enumerate(raw_list):
        at = f"coefficients.{n}"
        if not isinstance(entry, Mapping):
            raise _invalid(at, "每条个人系数须为对象")
        extra = sorted(set(entry) - {"member_id", "coefficient", "note"})
        if extra:
            raise _invalid(f"{at}.{extra[0]}", "未知字段")
        member_id = entry.get("member_id")
        if isinstance(member_id, bool) or not isinstance(member_id, int) or not 0 < member_id <= ID_MAX:
            raise _invalid(f"{at}.member_id", "人员 ID 须为正整数")
        if member_id in seen:
            raise _invalid(f"{at}.member_id", f"与第 {seen[member_id] + 1} 条重复")
        seen[member_id] = n
        value = coefficient(entry.get("coefficient"), f"{at}.coefficient", "个人系数")
        if not low <= value <= high:
            raise _invalid(f"{at}.coefficient", f"个人系数须在 {_s(low)} 到 {_s(high)} 之间")
        note = _text(entry.get("note"), f"{at}.note", 100)
        coefficients.append({"member_id": member_id, "coefficient": _s(value), "note": note})
    staff = _staff_ids(session, institution, set(seen))
    for member_id, n in seen.items():
        if member_id not in staff:
            raise _invalid(f"coefficients.{n}.member_id", "该人员不在本机构在职人员中")

    cap = data.get("cap_multiple")
    if cap is not None:
        cap = pricing.parse_decimal(cap, "cap_multiple", "封顶倍数", places=Q2, low=Decimal(1), high=CAP_MAX)

    packages = data.get("packages", sorted(PACKAGES))
    if not isinstance(packages, list) or not packages:
        raise _invalid("packages", "计入个人当量的服务包须为非空列表")
    for n, package in enumerate(packages):
        if not isinstance(package, str) or package not in PACKAGES:
            raise _invalid(f"packages.{n}", f"服务包应为 {', '.join(PACKAGES)} 之一")
    if len(set(packages)) != len(packages):
        raise _invalid("packages", "服务包重复")
    note = _text(data.get("note"), "note", NOTE_MAX)
    return {
        "pool_share": pool_share,
        "average_share": average_share,
        "default_coefficient": default,
        "coefficient_min": low,
        "coefficient_max": high,
        "coefficients": coefficients,
        "cap_multiple": cap,
        "packages": sorted(packages),
        "note": note,
    }


def rule_view(row: DistributionRule, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "institution_id": row.institution_id,
        "version": row.version,
        "is_current": row.is_current,
        "pool_share": _d(row.pool_share, Q4),
        "average_share": _d(row.average_share, Q4),
        "default_coefficient": _d(row.default_coefficient, Q4),
        "coefficient_min": _d(row.coefficient_min, Q4),
        "coefficient_max": _d(row.coefficient_max, Q4),
        "coefficients": list(row.coefficients or []),
        "cap_multiple": None if row.cap_multiple is None else _d(row.cap_multiple, Q2),
        "packages": list(row.packages or []),
        "note": row.note,
        "set_by": row.set_by,
        "set_by_name": (names or {}).get(row.set_by),
        "set_at": row.set_at,
    }


def set_rule(
    session: orm.Session, principal: Principal, institution_id: int, data: Mapping[str, Any]
) -> dict[str, Any]:
    """A new version of the institution's rule (the previous stays, no longer current)."""
    institution = _managed_institution(session, principal, institution_id)
    rule = check_rule(session, institution, data)
    previous = session.scalar(
        sa.select(DistributionRule)
        .where(DistributionRule.institution_id == institution.id, DistributionRule.is_current.is_(True))
        .with_for_update()
    )
    version = (
        session.scalar(
            sa.select(sa.func.max(DistributionRule.version)).where(DistributionRule.institution_id == institution.id)
        )
        or 0
    ) + 1
    try:
        with session.begin_nested():
            if previous is not None:
                previous.is_current = False
                session.flush()
            row = DistributionRule(
                institution_id=institution.id, version=version, is_current=True, set_by=principal.actor, **rule
            )
            session.add(row)
            session.flush()
    except exc.IntegrityError:
        raise _conflict("内部分配规则刚被他人修改，请刷新后重试", "version") from None
    audit.record(
        principal,
        "compensation.distribution_rule.set",
        resource_type="comp_distribution_rule",
        resource_id=row.id,
        node_id=institution.id,
        detail={"version": version},
        session=session,
    )
    session.commit()
    return rule_view(row, {principal.actor: principal.name})


def list_staff(session: orm.Session, principal: Principal, institution_id: int) -> dict[str, Any]:
    """Who works in the institution itself (the people a rule may name), by name: for the rule's member picker."""
    institution = pricing.readable_institution(session, principal, institution_id)[0]
    ids = _staff_ids(session, institution)
    rows = session.execute(
        sa.select(OrgMember.id, OrgMember.name, OrgMember.title).where(OrgMember.id.in_(ids)).order_by(OrgMember.name)
    ).all()
    return {"items": [{"member_id": m, "name": name, "title": title} for m, name, title in rows]}


def get_rules(session: orm.Session, principal: Principal, institution_id: int) -> dict[str, Any]:
    """The current rule and every earlier version."""
    institution = pricing.readable_institution(session, principal, institution_id)[0]
    rows = session.scalars(
        sa.select(DistributionRule)
        .where(DistributionRule.institution_id == institution.id)
        .order_by(DistributionRule.version.desc())
    ).all()
    current = next((row for row in rows if row.is_current), None)
    names = actor_names(session, {row.set_by for row in rows})
    return {
        "institution_id": institution.id,
        "institution_name": institution.name,
        "current": None if current is None else rule_view(current, names),
        "versions": [rule_view(row, names) for row in rows],
    }


# -- the computation --------------------------------------------------------------------------------------------


def _advance_basis(settlement: Settlement) -> Decimal:
    share = Decimal(str((settlement.snapshot or {}).get("scheme", {}).get("advance_share", "1")))
    return (_d(settlement.purchase_amount, Q2) * share).quantize(Q2, rounding=ROUND_HALF_UP)


def service_payment(session: orm.Session, settlement: Settlement) -> tuple[Decimal, dict[str, Any]]:
    """The part of the services' value a settlement recognises, and how it was reached: an advance's purchase
    amount × the advance share; the annual purchase amount less the advances' parts (their snapshot lists them).
    The purchase amount, not the gap subsidy: in the gap variant the institution's revenue for its services is
    its fee income plus the gap, both earned by the same workload, and a pool that shrank as fee income grew
    would punish the work the reform pays for. Line items are earmarked and never part of it."""
    purchase = _d(settlement.purchase_amount, Q2)
    if settlement.kind == "advance":
        basis = _advance_basis(settlement)
        share = (settlement.snapshot or {}).get("scheme", {}).get("advance_share", "1")
        return basis, {"how": f"购买金额 {_s(purchase)} × 预拨比例 {share} = {_s(basis)}"}
    advance_ids = [int(a["id"]) for a in (settlement.snapshot or {}).get("advances", [])]
    advances = session.scalars(sa.select(Settlement).where(Settlement.id.in_(advance_ids)).order_by(Settlement.period))
    parts = {row.period: _advance_basis(row) for row in advances}
    basis = purchase - sum(parts.values(), ZERO)
    return basis, {
        "how": f"全年购买金额 {_s(purchase)} − 各月预拨已分配部分 {_s(sum(parts.values(), ZERO))} = {_s(basis)}",
        "advances": {month: _s(part) for month, part in parts.items()},
    }


def _year_conflict(session: orm.Session, settlement: Settlement) -> str | None:
    """Why distributing this settlement could distribute part of the year twice, if it could: an annual while an
    advance of its year is still open (the true-up did not subtract it), or an advance the year's approved
    true-up did not subtract."""
    year = settlement.period[:4]
    others = session.scalars(
        sa.select(Settlement).where(
            Settlement.institution_id == settlement.institution_id,
            Settlement.kind != settlement.kind,
            Settlement.period.startswith(year),
            Settlement.state.in_(("draft", "submitted", "approved")),
        )
    ).all()
    if settlement.kind == "annual":
        still_open = sorted(row.period for row in others if row.state != "approved")
        return f"{', '.join(still_open)} 的预拨仍在办理，年度清算未扣除，暂不能分配" if still_open else None
    for annual in others:
        if annual.state == "approved" and settlement.id not in {
            int(a["id"]) for a in (annual.snapshot or {}).get("advances", [])
        }:
            return "该预拨在年度清算之后才审定，年度清算未扣除，不能再分配"
    return None


@dataclass(frozen=True)
class Allocation:
    """The division of a pool: each member's amount (2 places, adding up to the pool exactly) and how it came."""

    amounts: dict[int, Decimal]
    capped: set[int]
    equal: Decimal  # each person's equal part (平均), exact
    point_value: Decimal  # yuan per point of the uncapped, exact
    spill: Decimal  # each uncapped person's equal part of what the cap freed when none of them has points
    cap: Decimal | None  # the most anyone gets, exact

    def how(self, member: int, points: Decimal) -> str:
        """The member's amount written out, to the cent it was paid."""
        amount = _s(self.amounts[member])
        if member in self.capped:
            return f"封顶金额 {_s(self.cap.quantize(Q4, rounding=ROUND_HALF_UP))} → {amount}"  # type: ignore[union-attr]
        exact = self.equal + points * self.point_value + self.spill
        text = f"{_s(self.equal.quantize(Q4, rounding=ROUND_HALF_UP))} + {_s(points)} × "
        text += _s(self.point_value.quantize(Q8, rounding=ROUND_HALF_UP)) or ""
        if self.spill:
            text += f" + {_s(self.spill.quantize(Q4, rounding=ROUND_HALF_UP))}"
        return f"{text} = {_s(exact.quantize(Q4, rounding=ROUND_HALF_UP))} → {amount}"


def allocate(
    pool: Decimal,
    points: Mapping[int, Decimal],
    average_share: Decimal,
    cap_multiple: Decimal | None,
) -> Allocation:
    """Divide `pool` among the members of `points` (0 for those with only the equal part). Pure: no session, no
    rule row, so the tests can check it against hand computations."""
    members = sorted(points)
    if not members:
        return Allocation({}, set(), ZERO, ZERO, ZERO, None)
    equal = pool * average_share / len(members)
    cap = None if cap_multiple is None else pool / len(members) * cap_multiple
    capped: set[int] = set()
    while True:
        free = [m for m in members if m not in capped]
        left = pool - (cap or ZERO) * len(capped) - equal * len(free)
        total = sum((points[m] for m in free), ZERO)
        point_value = left / total if total > 0 else ZERO
        spill = ZERO if total > 0 else left / len(free)  # nobody uncapped has points: the rest equally
        exact = {m: equal + points[m] * point_value + spill for m in free}
        # Over by more than rounding noise of the exact division (a sub-cent tolerance, never a cent).
        over = {m for m, amount in exact.items() if cap is not None and amount - cap > NOISE}
        if not over:
            break
        capped |= over
    exact.update({m: cap for m in capped})  # type: ignore[misc]
    # Cut to cents; the cents left go by the largest remainders to those under the cap first (a tie: the lower id).
    amounts = {m: exact[m].quantize(Q2, rounding=ROUND_DOWN) for m in members}
    cents = int(((pool - sum(amounts.values(), ZERO)) / CENT).to_integral_value(rounding=ROUND_HALF_UP))
    for m in sorted(members, key=lambda m: (m in capped, -(exact[m] - amounts[m]), m))[:cents]:
        amounts[m] += CENT
    return Allocation(amounts, capped, equal, point_value, spill, cap)


def _personal_equivalents(
    session: orm.Session, settlement: Settlement, packages: list[str]
) -> tuple[dict[int, Decimal], dict[str, Any]]:
    """Each doctor's 当量 over the settled months at the 当量 the settlement froze, and what was read, compactly
    (one value per month and item; per doctor [quantity id, month, item, quantity]; the rows of an item and month
    the settlement did not pay, which count for nothing)."""
    snapshot = settlement.snapshot or {}
    values = {(q["period"], int(q["item_id"])): Decimal(q["equivalent"]) for q in snapshot.get("quantities", [])}
    months = snapshot.get("months") or [settlement.period]
    rows = session.execute(
        sa.select(
            WorkloadQuantity.id,
            WorkloadQuantity.member_id,
            WorkloadQuantity.period,
            WorkloadQuantity.item_id,
            WorkloadQuantity.qty_verified,
            ServiceItem.code,
        )
        .join(ServiceItem, ServiceItem.id == WorkloadQuantity.item_id)
        .where(
            WorkloadQuantity.institution_id == settlement.institution_id,
            WorkloadQuantity.member_id.is_not(None),
            WorkloadQuantity.is_current.is_(True),
            WorkloadQuantity.period.in_(months),
            ServiceItem.package.in_(packages),
        )
        .order_by(WorkloadQuantity.member_id, WorkloadQuantity.period, ServiceItem.code)
    ).all()
    equivalents: dict[int, Decimal] = defaultdict(lambda: ZERO)
    read: dict[str, list[list[Any]]] = defaultdict(list)
    used_values: dict[str, str] = {}
    unsettled: list[list[Any]] = []
    for quantity_id, member_id, month, item_id, qty, code in rows:
        qty = _d(qty, Q2)
        value = values.get((month, item_id))
        if value is None:
            unsettled.append([quantity_id, member_id, month, code, _s(qty)])
            continue
        equivalents[member_id] += (qty * value).quantize(Q4, rounding=ROUND_HALF_UP)
        read[str(member_id)].append([quantity_id, month, code, _s(qty)])
        used_values[f"{month} {code}"] = _s(value)  # type: ignore[assignment]
    return dict(equivalents), {"values": used_values, "rows": dict(read), "unsettled": unsettled}


def distribute(session: orm.Session, principal: Principal, settlement_id: int) -> dict[str, Any]:
    """A draft distribution of an approved settlement's pool by the institution's current rule (an earlier draft
    of the same settlement is superseded). 409 while the settlement is not final, once a distribution of it is
    confirmed, without a rule, or with nothing to distribute."""
    _require_manager(principal)
    # Locked: two distributions of one settlement at once would take the same revision.
    settlement = session.get(Settlement, settlement_id, with_for_update=True)
    if settlement is None:
        raise ApiError("not_found", "结算不存在", status=404)
    try:
        institution = _managed_institution(session, principal, settlement.institution_id)
    except ApiError as error:
        if error.status == 404:
            raise ApiError("not_found", "结算不存在", status=404) from None
        raise
    if settlement.state != "approved":
        raise _conflict("只有已审定的结算才能进行内部分配", "settlement_id")
    rule = session.scalar(
        sa.select(DistributionRule).where(
            DistributionRule.institution_id == institution.id, DistributionRule.is_current.is_(True)
        )
    )
    if rule is None:
        raise _conflict(f"{institution.name} 尚未设置内部分配规则", "rule")
    earlier = session.scalars(
        sa.select(Distribution)
        .where(Distribution.settlement_id == settlement.id)
        .order_by(Distribution.revision)
        .with_for_update()
    ).all()
    if any(row.state == "confirmed" for row in earlier):
        raise _conflict("该结算的内部分配已确认，不能重新分配", "settlement_id")
    conflict = _year_conflict(session, settlement)
    if conflict:
        raise _conflict(conflict, "settlement_id")

    basis, basis_how = service_payment(session, settlement)
    if basis <= 0:
        raise _conflict(f"该结算的服务部分为 {_s(basis)} 元，没有可分配的绩效", "settlement_id")
    pool_share = _d(rule.pool_share, Q4)
    pool = (basis * pool_share).quantize(Q2, rounding=ROUND_HALF_UP)
    equivalents, read = _personal_equivalents(session, settlement, list(rule.packages))
    named = {int(c["member_id"]): Decimal(c["coefficient"]) for c in rule.coefficients or []}
    named_staff = _staff_ids(session, institution, set(named)) if named else set()
    default = _d(rule.default_coefficient, Q4)
    counted = set(equivalents) | named_staff
    if not counted:
        raise _conflict("本期没有医生个人工作量，也没有设置个人系数的人员，无法分配", "settlement_id")
    average_share = _d(rule.average_share, Q4)
    coefficients = {m: named.get(m, default) for m in counted}
    points = {m: (equivalents.get(m, ZERO) * coefficients[m]).quantize(Q4, rounding=ROUND_HALF_UP) for m in counted}
    if average_share < 1 and not any(points.values()):
        raise _conflict("本期没有医生个人当量，无法按当量分配（可把平均分配比例设为 1）", "settlement_id")
    cap = None if rule.cap_multiple is None else _d(rule.cap_multiple, Q2)
    allocation = allocate(pool, points, average_share, cap)

    for row in earlier:
        if row.state == "draft":
            row.state = "superseded"
    revision = max((row.revision for row in earlier), default=0) + 1
    distribution = Distribution(
        settlement_id=settlement.id,
        institution_id=institution.id,
        period=settlement.period,
        revision=revision,
        state="draft",
        rule_id=rule.id,
        basis=basis,
        pool=pool,
        average_amount=allocation.equal.quantize(Q2, rounding=ROUND_HALF_UP),
        total_points=sum(points.values(), ZERO),
        point_value=allocation.point_value.quantize(Q8, rounding=ROUND_HALF_UP),
        snapshot={
            "settlement": {
                "id": settlement.id,
                "kind": settlement.kind,
                "period": settlement.period,
                "revision": settlement.revision,
                "purchase_amount": _s(_d(settlement.purchase_amount, Q2)),
                "basis": _s(basis),
                **basis_how,
            },
            "rule": {k: _s(v) if isinstance(v, Decimal) else v for k, v in _rule_fields(rule).items()},
            "pool": f"{_s(basis)} × {_s(pool_share)} = {_s(pool)}",
            # Exact, for whoever re-does the arithmetic; the shares' `how` show them rounded.
            "allocation": {
                "equal": str(allocation.equal),
                "point_value": str(allocation.point_value),
                "spill": str(allocation.spill),
                "cap": None if allocation.cap is None else str(allocation.cap),
                "capped": sorted(allocation.capped),
            },
            "not_counted": sorted(set(named) - named_staff),  # named in the rule, no longer working here
            **read,
        },
        created_by=principal.actor,
    )
    session.add(distribution)
    try:
        session.flush()
    except exc.IntegrityError:  # SQLite takes no row lock: the other writer got this revision first
        session.rollback()
        raise _conflict("该结算正在被他人分配，请刷新后重试", "settlement_id") from None
    session.execute(
        sa.insert(DistributionShare),
        [
            {
                "distribution_id": distribution.id,
                "member_id": m,
                "equivalents": equivalents.get(m, ZERO),
                "coefficient": coefficients[m],
                "points": points[m],
                "amount": allocation.amounts[m],
                "capped": m in allocation.capped,
                "how": allocation.how(m, points[m]),
            }
            for m in sorted(counted)
        ],
    )
    audit.record(
        principal,
        "compensation.distribution.create",
        resource_type="comp_distribution",
        resource_id=distribution.id,
        node_id=institution.id,
        detail={"settlement_id": settlement.id, "revision": revision, "pool": _s(pool), "staff": len(counted)},
        session=session,
    )
    session.commit()
    return get_distribution(session, principal, distribution.id)


def _rule_fields(rule: DistributionRule) -> dict[str, Any]:
    view = rule_view(rule)
    return {k: view[k] for k in ("id", "version", *sorted(RULE_FIELDS))}


def confirm(session: orm.Session, principal: Principal, distribution_id: int) -> dict[str, Any]:
    """The draft becomes final; each person is told their own share by work notice."""
    row, node = _readable_distribution(session, principal, distribution_id)
    _managed_institution(session, principal, row.institution_id)
    # Conditional: two confirmations racing (or of two drafts) end with one confirmed distribution.
    try:
        with session.begin_nested():
            moved = session.execute(
                sa.update(Distribution)
                .where(Distribution.id == row.id, Distribution.state == "draft")
                .values(state="confirmed", confirmed_by=principal.actor, confirmed_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount
    except exc.IntegrityError:
        moved = 0
    if not moved:
        session.rollback()
        raise _conflict("只有草稿状态的分配方案可以确认（可能已被确认或重新分配）", "state")
    session.refresh(row)
    shares = session.execute(
        sa.select(DistributionShare, OrgMember.userid)
        .join(OrgMember, OrgMember.id == DistributionShare.member_id)
        .where(
            DistributionShare.distribution_id == row.id,
            OrgMember.active.is_(True),
            OrgMember.deleted_at.is_(None),
        )
    ).all()
    kind = SETTLEMENT_KINDS.get(row.snapshot.get("settlement", {}).get("kind", ""), "")
    for share, userid in shares:
        outbox.enqueue_message(
            "work_notice",
            messages.notice(
                title=f"{node.name} {row.period} {kind}绩效分配已确认",
                lines=[
                    f"个人当量：{_s(_d(share.equivalents, Q4))}",
                    f"个人系数：{_s(_d(share.coefficient, Q4))}",
                    f"分配金额：{_s(_d(share.amount, Q2))} 元",
                ],
                link=h5.public_url(MY_SHARES_URL),
                link_text="查看计算过程",
            ),
            idempotency_key=f"comp:share:{row.id}:{share.member_id}",
            to=[userid],
            db=session,
        )
    audit.record(
        principal,
        "compensation.distribution.confirm",
        resource_type="comp_distribution",
        resource_id=row.id,
        node_id=row.institution_id,
        detail={"settlement_id": row.settlement_id, "notices": len(shares)},
        session=session,
    )
    session.commit()
    return get_distribution(session, principal, row.id)


# -- reading ----------------------------------------------------------------------------------------------------


def _distribution_view(row: Distribution, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "settlement_id": row.settlement_id,
        "institution_id": row.institution_id,
        "period": row.period,
        "revision": row.revision,
        "state": row.state,
        "state_label": DISTRIBUTION_STATES.get(row.state, row.state),
        "rule_id": row.rule_id,
        "basis": _d(row.basis, Q2),
        "pool": _d(row.pool, Q2),
        "average_amount": _d(row.average_amount, Q2),
        "total_points": _d(row.total_points, Q4),
        "point_value": _d(row.point_value, Q8),
        "created_by": row.created_by,
        "created_by_name": names.get(row.created_by),
        "created_at": row.created_at,
        "confirmed_by": row.confirmed_by,
        "confirmed_by_name": names.get(row.confirmed_by or ""),
        "confirmed_at": row.confirmed_at,
    }


def _share_view(share: DistributionShare, name: str | None) -> dict[str, Any]:
    return {
        "member_id": share.member_id,
        "name": name,
        "equivalents": _d(share.equivalents, Q4),
        "coefficient": _d(share.coefficient, Q4),
        "points": _d(share.points, Q4),
        "amount": _d(share.amount, Q2),
        "capped": share.capped,
        "how": share.how,
    }


def get_distribution(session: orm.Session, principal: Principal, distribution_id: int) -> dict[str, Any]:
    """One distribution with every share, how it was computed and its frozen snapshot."""
    row, node = _readable_distribution(session, principal, distribution_id)
    shares = session.execute(
        sa.select(DistributionShare, OrgMember.name)
        .join(OrgMember, OrgMember.id == DistributionShare.member_id)
        .where(DistributionShare.distribution_id == row.id)
        .order_by(DistributionShare.amount.desc(), DistributionShare.member_id)
    ).all()
    names = actor_names(session, [row.created_by, *([row.confirmed_by] if row.confirmed_by else [])])
    view = _distribution_view(row, names)
    view["institution_name"] = node.name
    view["shares"] = [_share_view(share, name) for share, name in shares]
    snap = row.snapshot or {}
    rule = snap.get("rule", {})
    view["computation"] = {
        "basis": snap.get("settlement", {}).get("how"),
        "pool": f"服务部分 × 绩效池比例 = {snap.get('pool')}",
        "average": f"绩效池 × 平均分配比例 {rule.get('average_share')} ÷ {len(shares)} 人"
        f" = 每人 {_s(view['average_amount'])}",
        "points": "个人点数 = 个人当量 × 个人系数；点值 = (绩效池 − 平均部分) ÷ 总点数"
        + (
            f"；单人不超过人均的 {rule.get('cap_multiple')} 倍，超出部分按点数分给其他人"
            if rule.get("cap_multiple")
            else ""
        ),
        "amount": "个人金额 = 平均部分 + 个人点数 × 点值，按分取整，尾差按余数大小补足（每人的计算见 how）",
    }
    view["snapshot"] = snap
    audit.record(
        principal,
        "compensation.distribution.read",
        resource_type="comp_distribution",
        resource_id=row.id,
        node_id=row.institution_id,
    )
    return view


def list_distributions(
    session: orm.Session, principal: Principal, institution_id: int, *, period: str | None = None
) -> dict[str, Any]:
    """Every revision of the institution's distributions (state, who, when)."""
    institution = pricing.readable_institution(session, principal, institution_id)[0]
    query = sa.select(Distribution).where(Distribution.institution_id == institution.id)
    if period:
        query = query.where(Distribution.period == period.strip())
    rows = session.scalars(query.order_by(Distribution.period, Distribution.settlement_id, Distribution.revision)).all()
    names = actor_names(session, {a for row in rows for a in (row.created_by, row.confirmed_by) if a})
    return {"items": [_distribution_view(row, names) for row in rows]}


def my_shares(session: orm.Session, principal: Principal) -> dict[str, Any]:
    """The caller's own shares of confirmed distributions, newest first, each with how it was reached."""
    if principal.member_id is None:
        return {"items": []}
    rows = session.execute(
        sa.select(DistributionShare, Distribution, OrgNode.name)
        .join(Distribution, Distribution.id == DistributionShare.distribution_id)
        .join(OrgNode, OrgNode.id == Distribution.institution_id)
        .where(DistributionShare.member_id == principal.member_id, Distribution.state == "confirmed")
        .order_by(Distribution.period.desc(), Distribution.id.desc())
    ).all()
    items = []
    for share, row, institution_name in rows:
        view = _share_view(share, principal.name)
        view.update(
            distribution_id=row.id,
            institution_name=institution_name,
            period=row.period,
            kind=(row.snapshot or {}).get("settlement", {}).get("kind"),
            average_amount=_d(row.average_amount, Q2),
            point_value=_d(row.point_value, Q8),
        )
        items.append(view)
    return {"items": items}
