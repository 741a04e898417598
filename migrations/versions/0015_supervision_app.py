"""supervision: the 监管在线 and 指标填报 apps in the catalog

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24

Registers the supervision dashboard (监管在线, group 监管考核) for the members who may read figures: administrators
and supervisors of a subtree and institution administrators (`supervision.figures.READER_ROLES`); and the manual
report form (指标填报) for those who file an institution's or a county's figures: institution administrators and
county administrators (any member of the unit may file by the form's address; listing it for every clinician would
put it in 300,000 workbenches). The icon is the app's own static file.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import workbench.db

SUPERVISION_APPS = [
    {
        "code": "supervision",
        "name": "监管在线",
        "icon": "/h5/apps/supervision/static/icon.svg",
        "entry_url": "/h5/apps/supervision/",
        "group_code": "supervision",
        "sort_order": 10,
        "description": "医共体监测指标：目标达成、趋势、下钻与上报完整性，导出 Excel",
        # Who may read figures: others would open a dashboard that answers 403.
        "visible_roles": ["admin", "supervisor", "institution_admin"],
    },
    {
        "code": "supervision_reports",
        "name": "指标填报",
        "icon": "/h5/apps/supervision/static/icon.svg",
        "entry_url": "/h5/apps/supervision/reports",
        "group_code": "supervision",
        "sort_order": 20,
        "description": "手工填报本单位的监测指标，经单位管理员审批后计入",
        "visible_roles": ["admin", "institution_admin"],
    },
]
COLUMNS = ("code", "name", "icon", "entry_url", "group_code", "sort_order", "description")

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    apps = sa.table(
        "catalog_apps",
        *(sa.column(name) for name in (*COLUMNS, "owner_kind", "owner_node_id", "state")),
        *(sa.column(name, json) for name in ("visible_subtrees", "visible_levels", "visible_layers", "visible_roles")),
        *(sa.column(name, workbench.db.UTCDateTime()) for name in ("created_at", "updated_at")),
        sa.column("created_by"),
        sa.column("updated_by"),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        apps,
        [
            {
                **app,
                "owner_kind": "province",
                "owner_node_id": None,
                "state": "active",
                "visible_subtrees": [],
                "visible_levels": [],
                "visible_layers": [],
                "created_at": now,
                "created_by": "system",
                "updated_at": now,
                "updated_by": "system",
            }
            for app in SUPERVISION_APPS
        ],
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM catalog_apps WHERE code IN ('supervision', 'supervision_reports')"))
