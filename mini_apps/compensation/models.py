"""补偿机制改革: paying grassroots institutions by standardised workload (标化工作当量, reference/domain.md §2).

Every coefficient, table and rule is data, versioned, never code (the formulas in the reference are
reconstructions):

- `ServiceItem`: the service-item list (服务项目清单) — code, name, package (基本医疗, 基本公卫, 家庭医生签约), unit,
  and its quality gate (the fields a record must carry for a unit to count).
- `EquivalentTable` and `EquivalentValue`: the 当量 table (标化工作当量表). The province publishes a version with
  its validity period and the bounds within which counties may adjust it; a county's table is an adjustment of a
  province table (`base_table_id`) holding only the values it changes. Values per remoteness tier (I/II/III).
- `InstitutionTier`: which tier's values an institution is paid by.
- `WorkloadBatch`, `WorkloadQuantity`, `WorkloadExclusion`: verified quantities per institution (and per doctor,
  for internal distribution), period and item, from system feeds or approved manual entry; a late correction is a
  new version of the quantity, the old one kept; every unit a quality gate excluded is kept with its reason.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from workbench.db import Model, UTCDateTime, utcnow

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
QUANTITY = sa.Numeric(14, 2)  # service units: visits, records, contract-years (halves occur: 0.5 contract-year)
EQUIVALENT = sa.Numeric(12, 4)  # 当量 per unit

PACKAGES = {
    "basic_medical": "基本医疗服务包",
    "public_health": "基本公共卫生服务包",
    "contract": "家庭医生签约服务包",
}
TIERS = {1: "一类地区", 2: "二类地区", 3: "三类地区"}  # remoteness (UNCONFIRMED: Changping's groups I/II/III)
TABLE_STATES = {"draft": "草稿", "published": "已发布", "withdrawn": "已撤回"}
BATCH_SOURCES = {"feed": "系统推送", "manual": "手工填报"}
BATCH_STATES = {"pending": "待审批", "applied": "已生效", "refused": "已退回"}


class ServiceItem(Model):
    __tablename__ = "comp_items"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    code: orm.Mapped[str] = orm.mapped_column(sa.String(32), unique=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    package: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # PACKAGES
    unit: orm.Mapped[str] = orm.mapped_column(sa.String(20))  # 人次, 份, 人年 …
    # The quality gate: {"required_fields": ["sbp", "dbp", "next_visit"]} — a record without them does not count.
    # Items with a gate are taken as records (one per unit, so each excluded unit has its reason); the others
    # may be sent as counts.
    quality_rule: orm.Mapped[dict] = orm.mapped_column(JSON, default=dict)
    active: orm.Mapped[bool] = orm.mapped_column(default=True)
    note: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class EquivalentTable(Model):
    """One version of a region's 当量 table. A province table (no base) lists every item; a county table adjusts a
    published province table within its bounds and lists only what it changes."""

    __tablename__ = "comp_tables"
    __table_args__ = (sa.UniqueConstraint("region_node_id", "version"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    region_node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    base_table_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("comp_tables.id"))
    version: orm.Mapped[str] = orm.mapped_column(sa.String(20))
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    valid_from: orm.Mapped[date] = orm.mapped_column(sa.Date)
    valid_to: orm.Mapped[date | None] = orm.mapped_column(sa.Date)  # inclusive; open-ended when None
    state: orm.Mapped[str] = orm.mapped_column(sa.String(10), default="draft")  # TABLE_STATES
    # Province tables: how far (percent) a county may move each value, e.g. -20 … +20.
    adjust_min_pct: orm.Mapped[Decimal | None] = orm.mapped_column(sa.Numeric(6, 2))
    adjust_max_pct: orm.Mapped[Decimal | None] = orm.mapped_column(sa.Numeric(6, 2))
    note: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    published_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(140))
    published_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())


class EquivalentValue(Model):
    __tablename__ = "comp_table_values"
    __table_args__ = (sa.UniqueConstraint("table_id", "item_id", "tier"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    table_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("comp_tables.id", ondelete="CASCADE"))
    item_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("comp_items.id"), index=True)
    tier: orm.Mapped[int] = orm.mapped_column(sa.SmallInteger, default=1)  # TIERS
    value: orm.Mapped[Decimal] = orm.mapped_column(EQUIVALENT)


class InstitutionTier(Model):
    """The remoteness tier an institution is paid by (tier 1 unless set)."""

    __tablename__ = "comp_institution_tiers"

    institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), primary_key=True)
    tier: orm.Mapped[int] = orm.mapped_column(sa.SmallInteger)
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class WorkloadBatch(Model):
    """One feed post (idempotent by the system's batch key) or one manual entry awaiting approval."""

    __tablename__ = "comp_workload_batches"
    __table_args__ = (sa.UniqueConstraint("feed_system_id", "batch_key"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    source: orm.Mapped[str] = orm.mapped_column(sa.String(8))  # BATCH_SOURCES
    feed_system_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("feed_systems.id"))
    batch_key: orm.Mapped[str | None] = orm.mapped_column(sa.String(100))
    sha256: orm.Mapped[str] = orm.mapped_column(sa.String(64))  # of the canonical payload: a replay or a conflict
    institution_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))  # manual entries
    period: orm.Mapped[str | None] = orm.mapped_column(sa.String(7))  # manual entries: YYYY-MM
    payload: orm.Mapped[dict | None] = orm.mapped_column(JSON)  # a manual entry's lines until approved
    state: orm.Mapped[str] = orm.mapped_column(sa.String(8), default="applied")  # BATCH_STATES
    approval_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("bot_approvals.id"))
    items: orm.Mapped[int] = orm.mapped_column(default=0)
    submitted_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    submitted_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    decided_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(140))
    decided_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    reason: orm.Mapped[str | None] = orm.mapped_column(sa.String(500))  # a refusal's


class WorkloadQuantity(Model):
    """A verified quantity of one item, institution (and doctor), month. A correction adds a version and clears
    `is_current` on the one it supersedes; settlements read only current rows and freeze what they read."""

    __tablename__ = "comp_workload"
    __table_args__ = (
        sa.Index("ix_comp_workload_current", "period", "institution_id", "item_id", "member_id", "is_current"),
        # One current version per (institution, doctor or none, month, item), whatever the writers do.
        sa.Index(
            "uq_comp_workload_current",
            "institution_id",
            sa.text("coalesce(member_id, 0)"),
            "period",
            "item_id",
            unique=True,
            postgresql_where=sa.text("is_current"),
            sqlite_where=sa.text("is_current"),
        ),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    member_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_members.id"))  # per doctor
    period: orm.Mapped[str] = orm.mapped_column(sa.String(7))  # YYYY-MM
    item_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("comp_items.id"))
    qty_raw: orm.Mapped[Decimal] = orm.mapped_column(QUANTITY)  # as sent
    qty_verified: orm.Mapped[Decimal] = orm.mapped_column(QUANTITY)  # what passed the quality gate
    batch_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("comp_workload_batches.id"), index=True)
    version: orm.Mapped[int] = orm.mapped_column(default=1)
    is_current: orm.Mapped[bool] = orm.mapped_column(default=True)
    supersedes_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("comp_workload.id"), index=True)
    recorded_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class WorkloadExclusion(Model):
    """Units a quality gate kept out of `qty_verified`, each with the source record and the reason."""

    __tablename__ = "comp_workload_exclusions"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    quantity_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("comp_workload.id"), index=True)
    record_ref: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))  # the source system's record id
    units: orm.Mapped[Decimal] = orm.mapped_column(QUANTITY)
    rule: orm.Mapped[str] = orm.mapped_column(sa.String(40))  # e.g. required_fields
    reason: orm.Mapped[str] = orm.mapped_column(sa.String(200))  # 缺少必填项：舒张压


# -- pricing and performance ------------------------------------------------------------------------------------

PRICE_METHODS = {"budget": "预算驱动（购买预算 ÷ 总当量）", "fixed": "固定单价"}
LINE_ITEM_CATEGORIES = {
    "infrastructure": "基本建设",
    "equipment": "设备购置",
    "informatisation": "信息化建设",
    "training": "人才培养",
    "retirees": "离退休费用",
    "policy": "政策性补助",
}
MONEY = sa.Numeric(20, 2)  # yuan
PRICE = sa.Numeric(12, 4)  # yuan per 当量


class UnitPrice(Model):
    """当量单价 of one package in a county for a year: fixed, or driven by the county's purchase budget (the price is
    then the budget ÷ the county's total 当量, worked out at settlement)."""

    __tablename__ = "comp_unit_prices"
    __table_args__ = (sa.UniqueConstraint("county_id", "package", "year"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    county_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    package: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # PACKAGES
    year: orm.Mapped[int] = orm.mapped_column()
    method: orm.Mapped[str] = orm.mapped_column(sa.String(8))  # PRICE_METHODS
    budget: orm.Mapped[Decimal | None] = orm.mapped_column(MONEY)  # budget-driven: the year's purchase budget
    price: orm.Mapped[Decimal | None] = orm.mapped_column(PRICE)  # fixed
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class CoefficientBanding(Model):
    """How an assessment score (0–100) becomes the performance coefficient (绩效考核系数) in a county for a year:
    `bands` [{"min", "max", "coefficient"} or {"min", "max", "from", "to"} (linear)], covering 0–100 without gap or
    overlap. A new version replaces the old for settlements not yet made; made ones froze theirs."""

    __tablename__ = "comp_bandings"
    __table_args__ = (
        sa.UniqueConstraint("county_id", "year", "version"),
        sa.Index(  # one current banding per county and year, whatever the writers do
            "uq_comp_bandings_current",
            "county_id",
            "year",
            unique=True,
            postgresql_where=sa.text("is_current"),
            sqlite_where=sa.text("is_current"),
        ),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    county_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    year: orm.Mapped[int] = orm.mapped_column()
    version: orm.Mapped[int] = orm.mapped_column(default=1)
    bands: orm.Mapped[list] = orm.mapped_column(JSON)
    is_current: orm.Mapped[bool] = orm.mapped_column(default=True)
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class Assessment(Model):
    """An institution's annual assessment score (绩效考核得分)."""

    __tablename__ = "comp_assessments"
    __table_args__ = (sa.UniqueConstraint("institution_id", "year"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    year: orm.Mapped[int] = orm.mapped_column()
    score: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(5, 2))
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class LineItemSubsidy(Model):
    """专项补助: a line-item subsidy, kept apart from the purchase of services."""

    __tablename__ = "comp_line_items"
    __table_args__ = (sa.Index("ix_comp_line_items_institution_period", "institution_id", "period"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    period: orm.Mapped[str] = orm.mapped_column(sa.String(7))  # YYYY-MM
    category: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # LINE_ITEM_CATEGORIES
    amount: orm.Mapped[Decimal] = orm.mapped_column(MONEY)
    note: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class FeeIncome(Model):
    """医疗服务收入 of an institution in a month, for the gap-subsidy variant (subsidy = max(0, pay − fee income))."""

    __tablename__ = "comp_fee_incomes"
    __table_args__ = (sa.UniqueConstraint("institution_id", "period"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    period: orm.Mapped[str] = orm.mapped_column(sa.String(7))
    amount: orm.Mapped[Decimal] = orm.mapped_column(MONEY)
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class CountyScheme(Model):
    """A county's settlement scheme for a year: the share of a month's computed amount paid as the advance, and
    whether the gap-subsidy variant applies."""

    __tablename__ = "comp_county_schemes"
    __table_args__ = (sa.UniqueConstraint("county_id", "year"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    county_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    year: orm.Mapped[int] = orm.mapped_column()
    advance_share: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(5, 4), default=Decimal("0.8"))
    gap_subsidy: orm.Mapped[bool] = orm.mapped_column(default=False)
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


# -- settlement -------------------------------------------------------------------------------------------------

SETTLEMENT_KINDS = {"advance": "月度预拨", "annual": "年度清算"}
SETTLEMENT_STATES = {
    "draft": "草稿",
    "submitted": "审批中",
    "approved": "已审定",
    "refused": "已退回",
    "superseded": "已作废",  # a refused revision replaced by a corrected one
}


class Settlement(Model):
    """One institution's settlement for a month (advance) or a year (annual true-up), as computed then. `snapshot`
    freezes every input it read (当量 values, quantities, prices, budget, totals, score, banding, line items, fee
    income, advances paid), so a later change in any table never changes a settled figure. Revisions: a refused
    settlement is corrected into a new revision; only one per (institution, kind, period) can be approved."""

    __tablename__ = "comp_settlements"
    __table_args__ = (
        sa.UniqueConstraint("institution_id", "kind", "period", "revision"),
        sa.Index("ix_comp_settlements_county_period", "county_id", "period"),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    county_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(8))  # SETTLEMENT_KINDS
    period: orm.Mapped[str] = orm.mapped_column(sa.String(7))  # YYYY-MM (advance) or YYYY (annual)
    revision: orm.Mapped[int] = orm.mapped_column(default=1)
    state: orm.Mapped[str] = orm.mapped_column(sa.String(10), default="draft")  # SETTLEMENT_STATES
    equivalents: orm.Mapped[dict] = orm.mapped_column(JSON)  # {package: total 当量} (decimal strings)
    prices: orm.Mapped[dict] = orm.mapped_column(JSON)  # {package: yuan per 当量}
    coefficient: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(6, 4))
    purchase_amount: orm.Mapped[Decimal] = orm.mapped_column(MONEY)  # Σ TE × P × K
    line_item_amount: orm.Mapped[Decimal] = orm.mapped_column(MONEY)
    fee_income: orm.Mapped[Decimal | None] = orm.mapped_column(MONEY)
    gap_subsidy: orm.Mapped[Decimal | None] = orm.mapped_column(MONEY)
    advances_paid: orm.Mapped[Decimal] = orm.mapped_column(MONEY, default=Decimal(0))  # annual: the year's advances
    payable: orm.Mapped[Decimal] = orm.mapped_column(MONEY)
    snapshot: orm.Mapped[dict] = orm.mapped_column(JSON)
    approval_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("bot_approvals.id"))
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    submitted_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    decided_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(140))
    decided_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    reason: orm.Mapped[str | None] = orm.mapped_column(sa.String(500))  # a refusal's


class SettlementLine(Model):
    """One item of a settlement, frozen: the drill-down from the amount to the items (and to the excluded units
    through `quantity_ids`)."""

    __tablename__ = "comp_settlement_lines"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    settlement_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey("comp_settlements.id", ondelete="CASCADE"), index=True
    )
    item_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("comp_items.id"))
    item_code: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    package: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    quantity: orm.Mapped[Decimal] = orm.mapped_column(QUANTITY)  # verified
    excluded: orm.Mapped[Decimal] = orm.mapped_column(QUANTITY, default=Decimal(0))
    equivalent: orm.Mapped[Decimal] = orm.mapped_column(EQUIVALENT)  # 当量 per unit applied
    equivalents: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(18, 4))  # quantity × equivalent
    quantity_ids: orm.Mapped[list] = orm.mapped_column(JSON, default=list)  # the WorkloadQuantity versions read


# -- internal distribution (二次分配) -------------------------------------------------------------------------------

DISTRIBUTION_STATES = {"draft": "草稿", "confirmed": "已确认", "superseded": "已作废"}


class DistributionRule(Model):
    """How an institution divides its performance pool among its staff (reference/domain.md §2.3 formula 6:
    bonus = personal 当量 × internal point value × personal coefficient), set by the institution itself and
    versioned: a new version serves later distributions, made ones froze theirs.

    - `pool_share`: the share of a settlement's service payment (its payable without line items, which are
      earmarked) that forms the staff performance pool;
    - `average_share`: the share of the pool split equally among the staff counted (平均), the rest by points (系数);
    - personal coefficients: `default_coefficient` for everyone, `coefficients` [{"member_id", "coefficient",
      "note"}] for the exceptions, each within `coefficient_min` … `coefficient_max`;
    - `cap_multiple`: nobody gets more than this multiple of the mean share (what a cap takes goes to the others
      by points); none when unset;
    - `packages`: whose 当量 count as personal workload."""

    __tablename__ = "comp_distribution_rules"
    __table_args__ = (
        sa.UniqueConstraint("institution_id", "version"),
        sa.Index(
            "uq_comp_distribution_rules_current",
            "institution_id",
            unique=True,
            postgresql_where=sa.text("is_current"),
            sqlite_where=sa.text("is_current"),
        ),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    version: orm.Mapped[int] = orm.mapped_column(default=1)
    is_current: orm.Mapped[bool] = orm.mapped_column(default=True)
    pool_share: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(5, 4))
    average_share: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(5, 4), default=Decimal(0))
    default_coefficient: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(6, 4), default=Decimal(1))
    coefficient_min: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(6, 4))
    coefficient_max: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(6, 4))
    coefficients: orm.Mapped[list] = orm.mapped_column(JSON, default=list)
    cap_multiple: orm.Mapped[Decimal | None] = orm.mapped_column(sa.Numeric(6, 2))
    packages: orm.Mapped[list] = orm.mapped_column(JSON)
    note: orm.Mapped[str | None] = orm.mapped_column(sa.String(500))
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class Distribution(Model):
    """The division of one approved settlement's performance pool, frozen like the settlement: the rule, every
    personal quantity and 当量 value read are in `snapshot`. A draft may be redone (the old one `superseded`) until
    the institution confirms it; only one per settlement is ever confirmed."""

    __tablename__ = "comp_distributions"
    __table_args__ = (
        sa.UniqueConstraint("settlement_id", "revision"),
        sa.Index("ix_comp_distributions_institution", "institution_id", "period"),
        sa.Index(  # one confirmed distribution per settlement, whatever the writers do
            "uq_comp_distributions_confirmed",
            "settlement_id",
            unique=True,
            postgresql_where=sa.text("state = 'confirmed'"),
            sqlite_where=sa.text("state = 'confirmed'"),
        ),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    settlement_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("comp_settlements.id"))
    institution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    period: orm.Mapped[str] = orm.mapped_column(sa.String(7))  # the settlement's
    revision: orm.Mapped[int] = orm.mapped_column(default=1)
    state: orm.Mapped[str] = orm.mapped_column(sa.String(10), default="draft")  # DISTRIBUTION_STATES
    rule_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("comp_distribution_rules.id"))
    basis: orm.Mapped[Decimal] = orm.mapped_column(MONEY)  # the settlement's service payment
    pool: orm.Mapped[Decimal] = orm.mapped_column(MONEY)
    average_amount: orm.Mapped[Decimal] = orm.mapped_column(MONEY)  # each person's equal part
    total_points: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(20, 4))  # Σ personal 当量 × coefficient
    # yuan per point of the uncapped: a large pool over few points needs the integer digits
    point_value: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(30, 8))
    snapshot: orm.Mapped[dict] = orm.mapped_column(JSON)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(140))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    confirmed_by: orm.Mapped[str | None] = orm.mapped_column(sa.String(140))
    confirmed_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())


class DistributionShare(Model):
    """One staff member's share of a distribution."""

    __tablename__ = "comp_distribution_shares"
    __table_args__ = (sa.UniqueConstraint("distribution_id", "member_id"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    distribution_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("comp_distributions.id", ondelete="CASCADE"))
    member_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_members.id"), index=True)
    equivalents: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(18, 4))  # personal 当量
    coefficient: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(6, 4))
    points: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(20, 4))  # 当量 × coefficient
    amount: orm.Mapped[Decimal] = orm.mapped_column(MONEY)
    capped: orm.Mapped[bool] = orm.mapped_column(default=False)
    how: orm.Mapped[str] = orm.mapped_column(sa.String(300))  # the amount written out, as the person reads it
