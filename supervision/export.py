"""What the supervision dashboard needs besides the figures API: where it opens (the caller's widest node, the way
back up to it, the latest complete period of each kind), and the Excel export of a node's figures for a period.

The export is built from `supervision.figures` itself (the same function the API answers with), so the workbook's
numbers are the API's by construction: one sheet per dimension (the node, then its children, as rows; per
indicator a group of columns under its name, the unit in each header, numbers stored as numbers) and a
completeness sheet (the units that have not reported, per indicator).
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from sqlalchemy import orm

from org_sync.models import OrgNode, path_ids
from org_sync.rollup import REPORTED_LEVELS
from supervision import figures
from supervision.models import DIMENSIONS
from supervision.periods import last_complete
from workbench import audit
from workbench.auth.principal import Principal
from workbench.errors import ApiError

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Missing units listed in the completeness sheet at most: a province's every institution for every indicator
# would be a six-figure sheet nobody reads; the counts per node are on the dimension sheets anyway.
MAX_MISSING_ROWS = 20_000
LEVELS = {
    "province_commission": "省卫健委",
    "city_commission": "市卫健委",
    "county_bureau": "县卫健局",
    "medical_community_lead": "医共体牵头医院",
    "member_institution": "成员单位",
}
PERIOD_KINDS = ("month", "quarter", "year")
# Per indicator, the columns of a dimension sheet: header (with the unit where it has one) and the figure's key.
COLUMNS = (
    ("数值", "value", True),
    ("目标", "target", True),
    ("是否达标", "met", False),
    ("上期", "previous", True),
    ("去年同期", "last_year", True),
    ("分子", "numerator", False),
    ("分母", "denominator", False),
    ("已报单位", "units_reported", False),
    ("应报单位", "units_expected", False),
)
MET = {True: "达标", False: "未达标", None: "无目标"}


# -- where the dashboard opens -----------------------------------------------------------------------------------


def home(principal: Principal, session: orm.Session, *, node_id: Any = None) -> dict[str, Any]:
    """The node the dashboard shows (`node_id`, else the caller's widest node with figures), the breadcrumbs from
    the outermost node the caller may read down to it, its children with figures (the node picker), and the
    latest complete period of each kind (the default period)."""
    node = _widest(principal, session) if node_id is None else figures.readable_node(principal, session, node_id)
    scope = principal.scope(*figures.READER_ROLES)
    ancestors = {
        n.id: n
        for n in session.scalars(
            sa.select(OrgNode).where(
                OrgNode.id.in_(path_ids(node.path)), OrgNode.level.in_(REPORTED_LEVELS), OrgNode.deleted_at.is_(None)
            )
        )
    }
    trail = [ancestors[i] for i in path_ids(node.path) if i in ancestors and scope.covers_path(ancestors[i].path)]
    today = datetime.now(figures.CHINA).date()
    return {
        "node": _view(node),
        "trail": [_view(n) for n in trail],
        "children": [_view(child) for child in _children(session, node)],
        "periods": {kind: last_complete(today, kind).code for kind in PERIOD_KINDS},
    }


def _widest(principal: Principal, session: orm.Session) -> OrgNode:
    """The reader role's node nearest the root (the operator: the first root); ties go to the first by path."""
    if principal.operator:
        stmt = sa.select(OrgNode).where(OrgNode.parent_id.is_(None))
    else:
        paths = [role.path for role in principal.roles if role.code in figures.READER_ROLES]
        if not paths:
            raise ApiError("forbidden", "您没有查看监管指标的权限", status=403)
        stmt = sa.select(OrgNode).where(OrgNode.path.in_(paths))
    candidates = session.scalars(
        stmt.where(OrgNode.deleted_at.is_(None), OrgNode.level.in_(REPORTED_LEVELS)).order_by(OrgNode.path)
    ).all()
    if not candidates:
        # Reader roles over internal departments only, or over deleted nodes: nothing with figures to open at.
        raise ApiError("not_found", "没有可查看指标的组织节点", status=404, field="node_id")
    return min(candidates, key=lambda n: (len(path_ids(n.path)), n.path))


def _children(session: orm.Session, node: OrgNode) -> list[OrgNode]:
    # The same children, in the same order, as the figures API drills down to.
    return list(
        session.scalars(
            sa.select(OrgNode)
            .where(OrgNode.parent_id == node.id, OrgNode.deleted_at.is_(None), OrgNode.level.in_(REPORTED_LEVELS))
            .order_by(OrgNode.sort_order, OrgNode.id)
        )
    )


def _view(node: OrgNode) -> dict[str, Any]:
    return {"node_id": node.id, "name": node.name, "level": node.level, "parent_id": node.parent_id}


# -- the Excel export ----------------------------------------------------------------------------------------------


def export(principal: Principal, session: orm.Session, *, node_id: Any, period: Any) -> tuple[bytes, str]:
    """The node's figures for the period as an .xlsx workbook, and a file name for it; audited (a bulk read)."""
    data = figures.figures(principal, session, node_id=node_id, period=period)
    node = data["node"]
    rows = [node, *data["children"]]
    book = Workbook()
    book.remove(book.active)
    dimensions = [d for d in DIMENSIONS if any(i["dimension"] == d for n in rows for i in n["indicators"])]
    for dimension in dimensions:
        _dimension_sheet(book, data, rows, dimension)
    if not dimensions:
        sheet = book.create_sheet("指标")
        sheet.append([f"{node['name']} {data['period']} 没有该周期的指标"])
    missing = _completeness_sheet(book, principal, session, data)
    buffer = io.BytesIO()
    book.save(buffer)
    audit.record(
        principal,
        "supervision.export",
        resource_type="org_node",
        resource_id=node["node_id"],
        node_id=node["node_id"],
        detail={"period": data["period"], "nodes": len(rows), "missing_rows": missing},
    )
    return buffer.getvalue(), f"监管指标_{node['name']}_{data['period']}.xlsx"


HEADER = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="F0F6FF")
CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)


def _unit(header: str, unit: str, with_unit: bool) -> str:
    return f"{header}（{unit}）" if with_unit and unit else header


def _dimension_sheet(book: Workbook, data: dict, rows: list[dict], dimension: str) -> None:
    """Rows: the node then its children; per indicator of the dimension a group of columns under its name."""
    sheet = book.create_sheet(DIMENSIONS[dimension][:31])
    indicators: dict[str, dict] = {}
    for n in rows:
        for item in n["indicators"]:
            if item["dimension"] == dimension:
                indicators.setdefault(item["code"], item)
    top = ["单位", "层级"]
    sub = ["", ""]
    for item in indicators.values():
        title = f"{item['name']}（{item['unit']}）" if item["unit"] else item["name"]
        top += [f"{item['code']} {title}"] + [""] * (len(COLUMNS) - 1)
        sub += [_unit(header, item["unit"], with_unit) for header, _key, with_unit in COLUMNS]
    sheet.append(
        [
            f"{data['node']['name']} · 统计期 {data['period']} · 上期 {data['previous_period']} · "
            f"去年同期 {data['last_year_period']}"
        ]
    )
    sheet.append(top)
    sheet.append(sub)
    for n in rows:
        by_code = {item["code"]: item for item in n["indicators"]}
        line: list[Any] = [n["name"], LEVELS.get(n["level"], n["level"])]
        for code in indicators:
            item = by_code.get(code)
            for _header, key, _with_unit in COLUMNS:
                if item is None:
                    line.append(None)  # an indicator the node does not have (county-wide at an institution)
                elif key == "met":
                    # No verdict with a target: a monitored indicator, or no value yet.
                    line.append(MET[item["met"]] if item["target"] is None or item["met"] is not None else "—")
                else:
                    line.append(item[key])
        sheet.append(line)
    sheet.merge_cells(start_row=2, start_column=1, end_row=3, end_column=1)
    sheet.merge_cells(start_row=2, start_column=2, end_row=3, end_column=2)
    for index in range(len(indicators)):
        first = 3 + index * len(COLUMNS)
        sheet.merge_cells(start_row=2, start_column=first, end_row=2, end_column=first + len(COLUMNS) - 1)
    for row in sheet.iter_rows(min_row=2, max_row=3):
        for cell in row:
            cell.font, cell.fill, cell.alignment = HEADER, HEADER_FILL, CENTER
    sheet["A1"].font = HEADER
    sheet.freeze_panes = "C4"
    sheet.column_dimensions["A"].width = 28
    sheet.column_dimensions["B"].width = 14
    for column in range(3, 3 + len(indicators) * len(COLUMNS)):
        sheet.column_dimensions[get_column_letter(column)].width = 12


def _completeness_sheet(book: Workbook, principal: Principal, session: orm.Session, data: dict) -> int:
    """Per indicator of the node: reported of expected, then the units that have not reported (paged through
    `figures.completeness`, so the list is the API's). Returns how many missing units were listed."""
    sheet = book.create_sheet("上报完整性")
    sheet.append(["指标编码", "指标", "已报单位", "应报单位", "未上报单位", "层级", "上级单位"])
    for cell in sheet[1]:
        cell.font, cell.fill = HEADER, HEADER_FILL
    listed = 0
    for item in data["node"]["indicators"]:
        sheet.append([item["code"], item["name"], item["units_reported"], item["units_expected"]])
        page = 1
        while listed < MAX_MISSING_ROWS:
            found = figures.completeness(
                principal,
                session,
                code=item["code"],
                node_id=data["node"]["node_id"],
                period=data["period"],
                page=page,
                per_page=figures.MAX_PER_PAGE,
            )
            for unit in found["items"][: MAX_MISSING_ROWS - listed]:
                sheet.append(
                    [item["code"], None, None, None, unit["name"], LEVELS.get(unit["level"]), unit["parent_name"]]
                )
                listed += 1
            if page * figures.MAX_PER_PAGE >= found["total"]:
                break
            page += 1
    if listed >= MAX_MISSING_ROWS:
        sheet.append([f"未上报单位仅列出前 {MAX_MISSING_ROWS} 条"])
    sheet.freeze_panes = "A2"
    for column, width in zip("ABCDEFG", (14, 30, 10, 10, 30, 14, 30), strict=True):
        sheet.column_dimensions[column].width = width
    return listed
