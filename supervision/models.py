"""监管在线: the indicator catalog (指标库), targets, the values reported per unit and period, and their roll-up.

- `Indicator` is the catalog as data (reference/domain.md §1): the 14 indicators of the 2024 national set for
  close-knit county medical communities (紧密型县域医共体监测指标) and the operational dimensions of §1.5. A
  province administrator edits it; every edit bumps `version` and keeps the definition it replaced in
  `IndicatorVersion`, with who, when and why.
- `IndicatorTarget`: targets are data per region and year (provinces differ). A node without its own target takes
  the nearest ancestor's.
- `IndicatorValue`: one numerator and denominator per indicator, reporting unit (an institution, or a county bureau
  for county-wide facts such as insurance totals) and period, from one source: an external system's feed
  (`FeedSystem`), the platform's own data (automatic intake) or a manual report. A correction never overwrites: the
  old row stays with `is_current = False` and the new one points back to it (`supersedes_id`).
- `IndicatorSubmission`: what arrived together (a feed batch, an automatic run, a manual report awaiting approval).
- `IndicatorRollup`: the computed figure of every node of the tree for an indicator and period: the sums of its
  units' numerators and denominators (never a mean of rates) and how many of the units expected to report did.

Periods are strings: month "2026-10", quarter "2026-Q3", year "2026"; `period_start` orders them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from workbench.db import Model, UTCDateTime, utcnow

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
AMOUNT = sa.Numeric(20, 4)  # numerators and denominators: money in yuan, counts, bed-days

DIMENSIONS = {
    "close_knit": "紧密型",
    "homogenisation": "同质化",
    "division_of_labour": "促分工",
    "efficiency": "提效能",
    "health_outcomes": "保健康",
    "resources": "医疗资源",
    "outpatient": "门诊",
    "examination": "检查",
    "laboratory": "检验",
    "inpatient": "住院",
    "surgery": "手术",
    "chronic_disease": "慢病管理",
    "maternal_child": "妇幼健康",
    "vaccination": "预防接种",
    "family_doctor": "家庭医生签约",
    "referral": "双向转诊",
    "revenue": "医疗收入",
}
DIRECTIONS = {"up": "越高越好", "down": "越低越好", "monitor": "监测"}
PERIODS = {"month": "月", "quarter": "季", "year": "年"}
COLLECTIONS = {"automatic": "自动采集", "manual": "手工填报", "mixed": "自动+手工"}
# Who reports the facts: institutions (lead hospitals and member institutions) or county bureaus (county-wide
# facts from insurance settlements and statistics).
REPORTING_LEVELS = {"institution": "医疗卫生机构", "county": "县（市、区）"}
KINDS = {
    "rate": "比率",  # numerator ÷ denominator × scale
    "count": "数量",  # numerator only
    "qualitative": "定性",  # an assessor's verdict per unit: numerator 1 (达标) or 0, denominator 1
}
SUBMISSION_KINDS = {"feed": "系统推送", "automatic": "平台自动采集", "manual": "手工填报"}
SUBMISSION_STATES = {"pending": "待审批", "accepted": "已计入", "refused": "已退回"}


class Indicator(Model):
    __tablename__ = "indicators"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    code: orm.Mapped[str] = orm.mapped_column(sa.String(32), unique=True)  # NCM-07, FD-COVERAGE
    national_no: orm.Mapped[int | None] = orm.mapped_column()  # 1..14 in the 2024 national set
    name: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    dimension: orm.Mapped[str] = orm.mapped_column(sa.String(24), index=True)  # DIMENSIONS
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(12))  # KINDS
    numerator_definition: orm.Mapped[str] = orm.mapped_column(sa.Text)
    denominator_definition: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    unit: orm.Mapped[str] = orm.mapped_column(sa.String(16))  # %, ‰, 人, 元, 人/万人, 天
    scale: orm.Mapped[int] = orm.mapped_column(default=1)  # 100 for %, 1000 for ‰, 10000 per 万人
    direction: orm.Mapped[str] = orm.mapped_column(sa.String(8))  # DIRECTIONS
    period: orm.Mapped[str] = orm.mapped_column(sa.String(8))  # PERIODS: the finest period it is reported for
    collection: orm.Mapped[str] = orm.mapped_column(sa.String(12))  # COLLECTIONS
    source: orm.Mapped[str] = orm.mapped_column(sa.String(120))  # 数据来源: HIS, 医保结算, 平台：家庭医生签约 …
    reporting_level: orm.Mapped[str] = orm.mapped_column(sa.String(12))  # REPORTING_LEVELS
    # Where numerator > denominator is impossible (a share of a whole), the feed refuses it.
    bounded: orm.Mapped[bool] = orm.mapped_column(default=True)
    # False where sums mean nothing above the reporting unit (a life-table probability): shown per unit only.
    additive: orm.Mapped[bool] = orm.mapped_column(default=True)
    # The platform computation that fills it (supervision/intake.py AUTOMATIC), for automatic and mixed ones.
    automatic_source: orm.Mapped[str | None] = orm.mapped_column(sa.String(48))
    note: orm.Mapped[str | None] = orm.mapped_column(sa.Text)  # 口径说明: what is UNCONFIRMED, legacy aliases
    active: orm.Mapped[bool] = orm.mapped_column(default=True)
    version: orm.Mapped[int] = orm.mapped_column(default=1)
    updated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    updated_by: orm.Mapped[str] = orm.mapped_column(sa.String(100), default="migration")


class IndicatorVersion(Model):
    """The definition an edit replaced (all catalog fields as JSON), so a figure can be read with the definition
    it was computed under."""

    __tablename__ = "indicator_versions"
    __table_args__ = (sa.UniqueConstraint("indicator_id", "version"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    indicator_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("indicators.id"))
    version: orm.Mapped[int] = orm.mapped_column()
    definition: orm.Mapped[dict] = orm.mapped_column(JSON)
    valid_until: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    changed_by: orm.Mapped[str] = orm.mapped_column(sa.String(100))  # who made the edit that replaced it
    reason: orm.Mapped[str] = orm.mapped_column(sa.String(500))


class IndicatorTarget(Model):
    """A region's target for a year, in the indicator's display unit (65 for 65%); the direction says which side
    of it is a breach."""

    __tablename__ = "indicator_targets"
    __table_args__ = (sa.UniqueConstraint("indicator_id", "node_id", "year"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    indicator_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("indicators.id"))
    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    year: orm.Mapped[int] = orm.mapped_column()
    value: orm.Mapped[Decimal] = orm.mapped_column(AMOUNT)
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class FeedSystem(Model):
    """An external system allowed to post statistics (a hospital's HIS, the insurance settlement platform) for the
    subtree of `node_id`, authenticated by an API key of which only the SHA-256 is kept."""

    __tablename__ = "feed_systems"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100), unique=True)
    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    key_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
    key_hint: orm.Mapped[str] = orm.mapped_column(sa.String(8))  # the key's last 4 characters, to tell keys apart
    active: orm.Mapped[bool] = orm.mapped_column(default=True)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    key_rotated_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())


class IndicatorSubmission(Model):
    """Values that arrived together. A feed batch is idempotent by (source, batch_key); a manual report counts
    once approved (`approval_id`, the bot's approval)."""

    __tablename__ = "indicator_submissions"
    __table_args__ = (sa.UniqueConstraint("source", "batch_key"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(12))  # SUBMISSION_KINDS
    source: orm.Mapped[str] = orm.mapped_column(sa.String(64))  # feed:<system id> | auto:<source> | manual
    batch_key: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    system_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("feed_systems.id"))
    unit_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))  # a manual report's unit
    state: orm.Mapped[str] = orm.mapped_column(sa.String(12), default="accepted")  # SUBMISSION_STATES
    items: orm.Mapped[int] = orm.mapped_column(default=0)
    changed: orm.Mapped[int] = orm.mapped_column(default=0)  # new values and corrections; the rest were repeats
    submitted_by: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    received_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    approval_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("bot_approvals.id"))
    decided_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    decision_reason: orm.Mapped[str | None] = orm.mapped_column(sa.String(500))
    # A manual report's items until it is decided ([{indicator_id, period, numerator, denominator, verdict}]):
    # they become values only when approved.
    payload: orm.Mapped[list | None] = orm.mapped_column(JSON)


class IndicatorEvidence(Model):
    """A document behind a qualitative verdict (制度文件, 会议纪要, photos of the shared centre): kept with its
    type, size and SHA-256, attached to the manual report that carries the verdict."""

    __tablename__ = "indicator_evidence"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    submission_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("indicator_submissions.id"), index=True)
    indicator_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("indicators.id"))
    filename: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    content_type: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    size: orm.Mapped[int] = orm.mapped_column()
    sha256: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    content: orm.Mapped[bytes] = orm.mapped_column(sa.LargeBinary)
    uploaded_by: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    uploaded_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class IndicatorValue(Model):
    """One unit's numerator and denominator for an indicator and period. Exactly one row per (indicator, unit,
    period) is `is_current`; corrections add a row and retire the old one, which is kept."""

    __tablename__ = "indicator_values"
    __table_args__ = (
        sa.Index(
            "uq_indicator_values_current",
            "indicator_id",
            "unit_id",
            "period",
            unique=True,
            sqlite_where=sa.text("is_current"),
            postgresql_where=sa.text("is_current"),
        ),
        # Recomputation reads one period's current values of every indicator.
        sa.Index("ix_indicator_values_period", "period", "indicator_id", "unit_id"),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    indicator_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("indicators.id"))
    unit_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    period: orm.Mapped[str] = orm.mapped_column(sa.String(8))
    period_start: orm.Mapped[date] = orm.mapped_column(sa.Date)
    numerator: orm.Mapped[Decimal] = orm.mapped_column(AMOUNT)
    denominator: orm.Mapped[Decimal | None] = orm.mapped_column(AMOUNT)
    verdict: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))  # qualitative: the assessor's words
    source: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    submission_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("indicator_submissions.id"), index=True)
    is_current: orm.Mapped[bool] = orm.mapped_column(default=True)
    # Indexed: the foreign key's check on deleting a value would otherwise scan the table per row.
    supersedes_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("indicator_values.id"), index=True)
    recorded_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class IndicatorRollup(Model):
    """A node's figure for an indicator and period, recomputed set-based from the current values.

    Derived entirely from `indicators`, `org_nodes` and `indicator_values` in the statement that writes it, so no
    foreign keys: their per-row checks were half of a first recompute's time (bench/supervision.py)."""

    __tablename__ = "indicator_rollups"

    indicator_id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    node_id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    period: orm.Mapped[str] = orm.mapped_column(sa.String(8), primary_key=True)
    numerator: orm.Mapped[Decimal | None] = orm.mapped_column(AMOUNT)
    denominator: orm.Mapped[Decimal | None] = orm.mapped_column(AMOUNT)
    value: orm.Mapped[Decimal | None] = orm.mapped_column(AMOUNT)  # in the display unit; None without data
    units_expected: orm.Mapped[int] = orm.mapped_column(default=0)
    units_reported: orm.Mapped[int] = orm.mapped_column(default=0)
    computed_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


# -- alerting (Alertmanager semantics, reference/peers.md §A2) ------------------------------------------------------

RULE_KINDS = {
    "threshold": "阈值",  # value <operator> threshold
    "target_gap": "未达目标",  # value misses the effective target by more than `threshold` (display units)
    "trend": "趋势",  # value changed against the comparison period by more than `threshold` percent, the bad way
}
OPERATORS = ("<", "<=", ">", ">=")
COMPARISONS = {"previous": "环比", "last_year": "同比"}
SEVERITIES = {"critical": "严重", "warning": "警告", "info": "提示"}
ALERT_STATES = {"firing": "告警中", "resolved": "已恢复"}


class AlertRule(Model):
    """A rule on one indicator, evaluated at the nodes of `levels` after every recomputation of a period."""

    __tablename__ = "alert_rules"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    indicator_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("indicators.id"), index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(200))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(12))  # RULE_KINDS
    levels: orm.Mapped[list] = orm.mapped_column(JSON)  # org levels evaluated: ["county_bureau", ...]
    operator: orm.Mapped[str | None] = orm.mapped_column(sa.String(2))  # threshold rules: OPERATORS
    threshold: orm.Mapped[Decimal] = orm.mapped_column(AMOUNT, default=0)
    comparison: orm.Mapped[str | None] = orm.mapped_column(sa.String(12))  # trend rules: COMPARISONS
    # Nodes where fewer of the expected units reported are not judged (a half-reported county reads wrong).
    min_completeness: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(5, 4), default=Decimal("0.8"))
    severity: orm.Mapped[str] = orm.mapped_column(sa.String(8), default="warning")  # SEVERITIES
    repeat_interval_hours: orm.Mapped[int] = orm.mapped_column(default=24)
    send_resolved: orm.Mapped[bool] = orm.mapped_column(default=True)
    active: orm.Mapped[bool] = orm.mapped_column(default=True)
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)


class AlertRoute(Model):
    """Where a node's alerts go: a group chat and the people to @. A node without its own route uses the nearest
    ancestor's (routes inherit down the tree)."""

    __tablename__ = "alert_routes"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), unique=True)
    conversation_id: orm.Mapped[str] = orm.mapped_column(sa.String(128))  # openConversationId of the group
    mention_userids: orm.Mapped[list] = orm.mapped_column(JSON, default=list)
    set_by: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    set_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Alert(Model):
    """One alert instance: a rule breached at a node for a period (the fingerprint); deduplicated by it."""

    __tablename__ = "alerts"
    __table_args__ = (sa.UniqueConstraint("rule_id", "node_id", "period"),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    rule_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("alert_rules.id"))
    node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"), index=True)
    period: orm.Mapped[str] = orm.mapped_column(sa.String(8))
    state: orm.Mapped[str] = orm.mapped_column(sa.String(8), default="firing")  # ALERT_STATES
    value: orm.Mapped[Decimal | None] = orm.mapped_column(AMOUNT)
    reference: orm.Mapped[Decimal | None] = orm.mapped_column(AMOUNT)  # the threshold, target or earlier value
    started_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    evaluated_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    notified_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())  # last firing notice sent
    resolved_notified_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())
    inhibited_by_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("alerts.id"))
    silenced_by_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("alert_silences.id"))


class AlertSilence(Model):
    """Mutes matching alerts (by rule, indicator and/or node subtree) from `starts_at` until `ends_at`."""

    __tablename__ = "alert_silences"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    rule_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("alert_rules.id"))
    indicator_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("indicators.id"))
    node_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))  # the subtree muted
    starts_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    ends_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime())
    reason: orm.Mapped[str] = orm.mapped_column(sa.String(500))
    created_by: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    created_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
    expired_at: orm.Mapped[datetime | None] = orm.mapped_column(UTCDateTime())  # ended early by someone


class AlertNotification(Model):
    """Every grouped message sent (or queued) to a chat: which alerts it carried and whether firing or resolved."""

    __tablename__ = "alert_notifications"

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    route_node_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey("org_nodes.id"))
    conversation_id: orm.Mapped[str] = orm.mapped_column(sa.String(128))
    period: orm.Mapped[str] = orm.mapped_column(sa.String(8))
    kind: orm.Mapped[str] = orm.mapped_column(sa.String(8))  # firing | resolved
    alert_ids: orm.Mapped[list] = orm.mapped_column(JSON)
    outbox_id: orm.Mapped[int | None] = orm.mapped_column(sa.ForeignKey("bot_outbox.id"))
    sent_at: orm.Mapped[datetime] = orm.mapped_column(UTCDateTime(), default=utcnow)
