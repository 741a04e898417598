"""app catalog: workbench sections, apps with visibility rules, and the product's three apps

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Registered here (province-built, owner = the whole tree):

- referral 预约转诊 · 双向转诊 (医疗临床): the 运营层 and 服务层 — medical communities and their institutions refer
  patients; commissions and bureaus follow referral through supervision indicators, not this app.
- precision_control 精密智控 (公共卫生): every layer — rosters are pushed down from commissions and bureaus and
  worked by institutions and doctors.
- compensation 补偿机制改革 (行政办公): administrators only — role `admin` (commission and bureau staff, who set
  prices per 当量 and approve settlements), `institution_admin` (the leaders of medical-community leads and member
  institutions, who confirm their workload and settlements) and `finance_officer` (granted). Placed under 行政办公
  rather than 监管考核: it is the settlement work of those administrators, while 监管考核 is the section of the
  supervision dashboards (监管在线). Clinicians do not see it: their workload comes from verified intake.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

GROUPS = [
    {"code": "office", "name": "行政办公", "sort_order": 10},
    {"code": "clinical", "name": "医疗临床", "sort_order": 20},
    {"code": "public_health", "name": "公共卫生", "sort_order": 30},
    {"code": "supervision", "name": "监管考核", "sort_order": 40},
    {"code": "other", "name": "其他应用", "sort_order": 90},
]

APPS = [
    {
        "code": "referral",
        "name": "预约转诊 · 双向转诊",
        "icon": "referral",
        "entry_url": "/h5/apps/referral/",
        "group_code": "clinical",
        "sort_order": 10,
        "description": "上转、下转与急诊绿色通道，预约号源，病历资料随患者流转",
        "visible_layers": ["operational", "service"],
        "visible_roles": [],
    },
    {
        "code": "precision_control",
        "name": "精密智控",
        "icon": "precision-control",
        "entry_url": "/h5/apps/precision_control/",
        "group_code": "public_health",
        "sort_order": 10,
        "description": "重点人群名单下发、任务派发与闭环，逾期督办",
        "visible_layers": [],
        "visible_roles": [],
    },
    {
        "code": "compensation",
        "name": "补偿机制改革",
        "icon": "compensation",
        "entry_url": "/h5/apps/compensation/",
        "group_code": "office",
        "sort_order": 10,
        "description": "基层标化工作当量核算、绩效系数与补偿结算审批",
        "visible_layers": [],
        "visible_roles": ["admin", "institution_admin", "finance_officer"],
    },
]


def upgrade() -> None:
    groups = op.create_table(
        "catalog_groups",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_catalog_groups")),
    )
    apps = op.create_table(
        "catalog_apps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("icon", sa.String(length=500), nullable=False),
        sa.Column("entry_url", sa.String(length=1000), nullable=False),
        sa.Column("group_code", sa.String(length=32), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("owner_kind", sa.String(length=16), nullable=False),
        sa.Column("owner_node_id", sa.Integer(), nullable=True),
        sa.Column("visible_subtrees", JSON, nullable=False),
        sa.Column("visible_levels", JSON, nullable=False),
        sa.Column("visible_layers", JSON, nullable=False),
        sa.Column("visible_roles", JSON, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("withdrawn_at", workbench.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=140), nullable=True),
        sa.Column("created_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=140), nullable=False),
        sa.Column("updated_at", workbench.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=140), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_code"], ["catalog_groups.code"], name=op.f("fk_catalog_apps_group_code_catalog_groups")
        ),
        sa.ForeignKeyConstraint(
            ["owner_node_id"], ["org_nodes.id"], name=op.f("fk_catalog_apps_owner_node_id_org_nodes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_apps")),
        sa.UniqueConstraint("code", name=op.f("uq_catalog_apps_code")),
    )
    op.create_index(op.f("ix_catalog_apps_group_code"), "catalog_apps", ["group_code"])
    op.create_index(op.f("ix_catalog_apps_owner_node_id"), "catalog_apps", ["owner_node_id"])
    op.create_index(op.f("ix_catalog_apps_state"), "catalog_apps", ["state"])

    op.bulk_insert(groups, GROUPS)
    now = datetime.now(UTC)
    op.bulk_insert(
        apps,
        [
            {
                **app,
                "owner_kind": "province",
                "owner_node_id": None,
                "visible_subtrees": [],
                "visible_levels": [],
                "state": "active",
                "withdrawn_at": None,
                "withdrawn_by": None,
                "created_at": now,
                "created_by": "system",
                "updated_at": now,
                "updated_by": "system",
            }
            for app in APPS
        ],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_catalog_apps_state"), table_name="catalog_apps")
    op.drop_index(op.f("ix_catalog_apps_owner_node_id"), table_name="catalog_apps")
    op.drop_index(op.f("ix_catalog_apps_group_code"), table_name="catalog_apps")
    op.drop_table("catalog_apps")
    op.drop_table("catalog_groups")
