"""The settlement workbook on both backends, over the county world of test_settlement.py (20 institutions, a year
of workload, the gap variant): advances approved through the sandbox card and the annual true-up settled, then
exported and read back with openpyxl. Every institution row equals its `GET /settlements/<id>` figures, the 合计
row equals the Decimal sum of the API's figures and the independent computation of test_settlement.py, the 项目明细
rows equal the lines, the 计算过程 sheet writes each institution's figures out; scope (an institution's
administrator sees only their institution, a clinician 403, another county 404), 422 naming the field, 404 for a
period with nothing settled, the audit record, and a bounded number of queries."""

from __future__ import annotations

import io
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from openpyxl import load_workbook

from mini_apps.compensation.models import Assessment
from org_sync.models import OrgNode
from tests.compensation.test_settlement import (
    API,
    MONTHS,
    NO_ASSESSMENT,
    YEAR,
    World,
    _approve,
    _click,
    _list,
    _settle,
    _submit,
    expected,
)
from tests.support.auth import bearer, sign_in
from workbench import db
from workbench.audit import AuditRecord

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SHEETS = ["结算汇总表", "计算过程", "项目明细", "说明"]
Q2 = Decimal("0.01")
Q4 = Decimal("0.0001")
SHORT = {"basic_medical": "基本医疗", "public_health": "基本公卫", "contract": "签约"}


def _num(cell: Any, places: Decimal) -> Decimal:
    """A number cell as the Decimal it was written from: the float's shortest text, to the cell's places."""
    assert isinstance(cell, int | float) and not isinstance(cell, bool), cell
    return Decimal(repr(cell)).quantize(places)


def _export(client, world: World, kind: str, period: str, headers=None):
    return client.get(
        f"{API}/counties/{world.pc.county_id}/settlements/export.xlsx",
        query_string={"kind": kind, "period": period},
        headers=headers or world.pc.county_admin.headers,
    )


def _book(reply) -> Any:
    assert reply.status_code == 200, reply.get_data(as_text=True)[:500]
    assert reply.mimetype == XLSX
    book = load_workbook(io.BytesIO(reply.data))
    assert book.sheetnames == SHEETS
    return book


def _summary(book) -> tuple[str, dict[str, int], list[list[Any]], list[Any]]:
    """The title, the header's columns, the institution rows and the 合计 row of 结算汇总表."""
    rows = [list(row) for row in book["结算汇总表"].iter_rows(values_only=True)]
    title, header, body = rows[0][0], rows[1], rows[2:]
    assert body[-1][0] == "合计"
    return title, {name: i for i, name in enumerate(header)}, body[:-1], body[-1]


def _details(client, headers, items: list[dict]) -> dict[str, dict]:
    """`GET /settlements/<id>` of each, by institution name."""
    out = {}
    for s in items:
        reply = client.get(f"{API}/settlements/{s['id']}", headers=headers)
        assert reply.status_code == 200
        out[s["institution_name"]] = reply.get_json()
    return out


def _current(items: list[dict]) -> list[dict]:
    """The latest revision per institution that is not superseded (what the export lists)."""
    latest: dict[int, dict] = {}
    for s in items:
        if s["state"] != "superseded" and s["revision"] >= latest.get(s["institution_id"], {"revision": 0})["revision"]:
            latest[s["institution_id"]] = s
    return list(latest.values())


MONEY_COLUMNS = {  # summary column → API field
    "购买服务金额": "purchase_amount",
    "专项补助": "line_item_amount",
    "医疗服务收入": "fee_income",
    "差额补助": "gap_subsidy",
    "本期应拨": "payable",
}


def _check_workbook(book, details: dict[str, dict], kind: str) -> dict[str, Decimal]:
    """Every sheet against the API's figures; the 合计 row's money figures."""
    title, col, rows, total = _summary(book)
    money = dict(MONEY_COLUMNS)
    if kind == "annual":
        money["已预拨"] = "advances_paid"
    else:
        assert "已预拨" not in col
    assert set(money) <= set(col)
    # One row per institution, numbered, each equal to its GET /settlements/<id>.
    assert sorted(r[col["机构名称"]] for r in rows) == sorted(details)
    assert [r[col["序号"]] for r in rows] == list(range(1, len(rows) + 1))
    packages = sorted({p for d in details.values() for p in d["equivalents"]})
    for r in rows:
        d = details[r[col["机构名称"]]]
        assert r[col["状态"]] == d["state_label"] and r[col["版本"]] == d["revision"]
        for p in packages:
            assert _num(r[col[f"{SHORT[p]}当量"]], Q4) == Decimal(d["equivalents"][p])
            assert _num(r[col[f"{SHORT[p]}单价（元/当量）"]], Q4) == Decimal(d["prices"][p])
        assert _num(r[col["考核系数"]], Q4) == Decimal(d["coefficient"])
        for name, key in money.items():
            assert _num(r[col[name]], Q2) == Decimal(d[key]), (name, d["institution_name"])
    # 合计: the Decimal sum of the API's figures, column by column.
    sums = {}
    for name, key in money.items():
        sums[name] = _num(total[col[name]], Q2)
        assert sums[name] == sum((Decimal(d[key]) for d in details.values()), Decimal(0)), name
    for p in packages:
        assert _num(total[col[f"{SHORT[p]}当量"]], Q4) == sum(
            (Decimal(d["equivalents"][p]) for d in details.values()), Decimal(0)
        )
        assert total[col[f"{SHORT[p]}单价（元/当量）"]] is None  # a sum of prices means nothing
    states = defaultdict(int)
    for d in details.values():
        states[d["state_label"]] += 1
    assert all(f"{label} {n}" in title for label, n in states.items()), title

    # 项目明细: one row per line, equal to the API's lines.
    detail_rows = list(book["项目明细"].iter_rows(values_only=True))
    assert list(detail_rows[0]) == [
        "机构名称",
        "项目编码",
        "名称",
        "服务包",
        "核定数量",
        "剔除数量",
        "当量",
        "当量合计",
    ]
    got = sorted((r[0], r[1], _num(r[4], Q2), _num(r[5], Q2), _num(r[6], Q4), _num(r[7], Q4)) for r in detail_rows[1:])
    want = sorted(
        (
            name,
            line["item_code"],
            Decimal(line["quantity"]),
            Decimal(line["excluded"]),
            Decimal(line["equivalent"]),
            Decimal(line["equivalents"]),
        )
        for name, d in details.items()
        for line in d["lines"]
    )
    assert got == want
    # The 当量 of the lines add up to the summary's per package (traceable from the total to the items).
    for name, d in details.items():
        for p in packages:
            lines = [r for r in detail_rows[1:] if r[0] == name and r[1] in {x["item_code"] for x in d["lines"]}]
            codes = {x["item_code"] for x in d["lines"] if x["package"] == p}
            assert sum((_num(r[7], Q4) for r in lines if r[1] in codes), Decimal(0)) == Decimal(d["equivalents"][p])

    # 计算过程: each institution's figures written out, the result column equal to them.
    steps: dict[str, list[tuple]] = defaultdict(list)
    for r in list(book["计算过程"].iter_rows(values_only=True))[1:]:
        if r[0] in details:
            steps[r[0]].append(r)
    assert set(steps) == set(details)
    for name, d in details.items():
        text = "\n".join(str(r[3]) for r in steps[name])
        for key in ("purchase_amount", "line_item_amount", "payable", "gap_subsidy", "fee_income", "coefficient"):
            assert d[key] in text, (name, key)
        if kind == "annual":
            assert d["advances_paid"] in text
        for p in packages:
            assert d["equivalents"][p] in text and d["prices"][p] in text
        results = {r[1]: r[4] for r in steps[name]}
        assert _num(results["本期应拨"], Q2) == Decimal(d["payable"])
        assert _num(results["购买服务金额"], Q2) == Decimal(d["purchase_amount"])
        assert _num(results["差额补助"], Q2) == Decimal(d["gap_subsidy"])
        assert _num(results["专项补助合计"], Q2) == Decimal(d["line_item_amount"])
        # The per-package TE × P × K, unrounded, add up to the purchase once rounded to the cent.
        products = [r[4] for r in steps[name] if r[1] == "金额 TE × P × K"]
        assert len(products) == len(d["equivalents"])
        exact = sum((Decimal(repr(v)) if isinstance(v, float) else Decimal(str(v)) for v in products), Decimal(0))
        assert exact.quantize(Q2, rounding=ROUND_HALF_UP) == Decimal(d["purchase_amount"])
        # The line items by category add up to the total.
        categories = [r for r in steps[name] if r[1] == "专项补助"]
        assert sum((_num(r[4], Q2) for r in categories), Decimal(0)) == Decimal(d["line_item_amount"])
    return sums


def _about(book) -> dict[str, str]:
    return {r[0]: r[1] for r in list(book["说明"].iter_rows(values_only=True))[1:]}


# -- the figures ----------------------------------------------------------------------------------------------------


def test_the_county_workbooks_equal_the_api_and_the_independent_totals(
    tree_app, tree_client, sandbox, world: World, served
):
    pc = world.pc
    advances: dict[int, Decimal] = defaultdict(Decimal)
    for month in ("2026-01", "2026-02"):
        for s in _approve(tree_app, tree_client, sandbox, world, "advance", month):
            advances[s["institution_id"]] += Decimal(s["payable"])
    lonely = world.seed.institutions[NO_ASSESSMENT]
    with tree_app.app_context():
        session = db.session()
        session.add(Assessment(institution_id=lonely, year=YEAR, score=Decimal("95"), set_by="t"))
        session.commit()
        county_name = session.get(OrgNode, pc.county_id).name
    assert _settle(tree_client, world, "annual", str(YEAR)).status_code == 201

    # The advance of February: approved, every institution.
    reply = _export(tree_client, world, "advance", "2026-02")
    book = _book(reply)
    disposition = reply.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and 'filename="settlements-' in disposition
    assert f"filename*=UTF-8''{quote(f'结算汇总_{county_name}_月度预拨_2026-02.xlsx')}" in disposition
    items = _current(_list(tree_client, world, kind="advance", period="2026-02"))
    details = _details(tree_client, pc.county_admin.headers, items)
    assert len(details) == 20
    sums = _check_workbook(book, details, "advance")
    # The totals against the computation of test_settlement.py (it does not call the module): an export that
    # dropped, doubled or float-summed a row would differ.
    want = expected(world.seed, "advance", ["2026-02"])
    assert sums["本期应拨"] == sum((w["payable"] for w in want.values()), Decimal(0))
    assert sums["购买服务金额"] == sum((w["purchase"] for w in want.values()), Decimal(0))
    assert sums["专项补助"] == sum((w["line_items"] for w in want.values()), Decimal(0))
    assert sums["差额补助"] == sum((w["gap"] for w in want.values()), Decimal(0))
    title, _, _, _ = _summary(book)
    assert county_name in title and "月度预拨" in title and "2026-02" in title and "已审定 20" in title
    about = _about(book)
    assert about["导出人"] == pc.county_admin.name and pc.county_admin.userid not in "".join(map(str, about.values()))
    assert about["合计·本期应拨（精确值）"] == format(sums["本期应拨"], "f")
    assert "四舍五入" in about["舍入规则"]

    # The annual true-up: a draft of every institution, advances subtracted.
    book = _book(_export(tree_client, world, "annual", str(YEAR)))
    items = _current(_list(tree_client, world, kind="annual", period=str(YEAR)))
    details = _details(tree_client, pc.county_admin.headers, items)
    sums = _check_workbook(book, details, "annual")
    world.seed.scores[lonely] = Decimal("95")  # the advances were settled before it, with K = 1
    want = expected(world.seed, "annual", MONTHS, advances)
    assert sums["本期应拨"] == sum((w["payable"] for w in want.values()), Decimal(0))
    assert sums["已预拨"] == sum(advances.values(), Decimal(0))
    title, _, _, _ = _summary(book)
    assert "年度清算" in title and "草稿 20" in title

    # The audit: each export on record with its figures.
    with tree_app.app_context():
        audits = (
            db.session()
            .scalars(
                sa.select(AuditRecord)
                .where(AuditRecord.action == "compensation.settlement.export")
                .order_by(AuditRecord.id)
            )
            .all()
        )
    assert [(a.detail["kind"], a.detail["period"], a.detail["settlements"]) for a in audits] == [
        ("advance", "2026-02", 20),
        ("annual", str(YEAR), 20),
    ]
    assert Decimal(audits[1].detail["payable"]) == sums["本期应拨"]
    assert all(a.actor.endswith(pc.county_admin.userid) and a.node_id == pc.county_id for a in audits)


def test_mixed_states_list_the_current_revision_and_one_settlement_exports_alone(
    tree_app, tree_client, sandbox, world: World, served
):
    pc = world.pc
    # March refused then settled again: revision 2 drafts, the refused revision 1 superseded and not listed.
    assert _settle(tree_client, world, "advance", "2026-03").status_code == 201
    _click(tree_app, sandbox, _submit(tree_client, world, "advance", "2026-03").get_json(), "approval.refuse")
    refused = _book(_export(tree_client, world, "advance", "2026-03"))
    title, col, rows, _ = _summary(refused)
    assert "已退回 20" in title and {r[col["状态"]] for r in rows} == {"已退回"}
    assert _settle(tree_client, world, "advance", "2026-03").status_code == 201
    book = _book(_export(tree_client, world, "advance", "2026-03"))
    every = _list(tree_client, world, kind="advance", period="2026-03")
    assert len(every) == 40
    current = _current(every)
    assert {s["revision"] for s in current} == {2}
    details = _details(tree_client, pc.county_admin.headers, current)
    _check_workbook(book, details, "advance")
    title, col, rows, _ = _summary(book)
    assert "草稿 20" in title and "已退回" not in title and {r[col["版本"]] for r in rows} == {2}

    # One settlement: the same sheets for its institution alone.
    one = current[3]
    reply = tree_client.get(f"{API}/settlements/{one['id']}/export.xlsx", headers=pc.county_admin.headers)
    book = _book(reply)
    assert quote(one["institution_name"]) in reply.headers["Content-Disposition"]
    sums = _check_workbook(book, {one["institution_name"]: details[one["institution_name"]]}, "advance")
    assert sums["本期应拨"] == Decimal(one["payable"])
    # The superseded revision 1 can still be exported alone (its history), marked as such.
    old = next(s for s in every if s["revision"] == 1 and s["institution_id"] == one["institution_id"])
    _, col, rows, _ = _summary(
        _book(tree_client.get(f"{API}/settlements/{old['id']}/export.xlsx", headers=pc.county_admin.headers))
    )
    assert [(r[col["状态"]], r[col["版本"]]) for r in rows] == [("已作废", 1)]


def test_the_county_export_reads_in_a_bounded_number_of_queries(tree_app, tree_client, world: World):
    assert _settle(tree_client, world, "advance", "2026-04").status_code == 201
    with tree_app.app_context():
        engine = db.session().get_bind()
    statements: list[str] = []

    def listener(_conn, _cursor, statement, *_rest) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        reply = _export(tree_client, world, "advance", "2026-04")
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    _book(reply)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # One query for the settlements and one for the lines of all 20, whatever the county's size.
    assert sum("FROM comp_settlement_lines" in s for s in reads) == 1, reads
    assert sum("FROM comp_settlements" in s for s in reads) == 1, reads
    assert len(reads) <= 12, len(reads)


# -- scope and bad input --------------------------------------------------------------------------------------------


def test_exports_are_scoped_and_bad_input_names_the_field(tree_app, tree_client, sandbox, world: World):
    pc = world.pc
    assert _settle(tree_client, world, "advance", "2026-03").status_code == 201
    all_items = _list(tree_client, world, kind="advance", period="2026-03")
    # An institution's administrator: their institution only, in the county export and one by one.
    own = world.seed.institutions[-1]
    granted = tree_client.post(
        "/api/auth/grants",
        json={"userid": pc.clinician.userid, "role": "institution_admin", "node_id": own},
        headers=pc.county_admin.headers,
    )
    assert granted.status_code == 201, granted.get_json()
    headers = bearer(sign_in(tree_client, sandbox, pc.clinician.userid))
    book = _book(_export(tree_client, world, "advance", "2026-03", headers=headers))
    mine = [s for s in all_items if s["institution_id"] == own]
    details = _details(tree_client, headers, mine)
    sums = _check_workbook(book, details, "advance")
    _, _, rows, _ = _summary(book)
    assert len(rows) == 1 and sums["本期应拨"] == Decimal(mine[0]["payable"])
    other = next(s for s in all_items if s["institution_id"] != own)
    assert tree_client.get(f"{API}/settlements/{other['id']}/export.xlsx", headers=headers).status_code == 404
    assert tree_client.get(f"{API}/settlements/{mine[0]['id']}/export.xlsx", headers=headers).status_code == 200
    # Another county's administrator: the county does not exist for them, nor its settlements.
    assert _export(tree_client, world, "advance", "2026-03", headers=pc.other_county_admin.headers).status_code == 404
    assert (
        tree_client.get(
            f"{API}/settlements/{other['id']}/export.xlsx", headers=pc.other_county_admin.headers
        ).status_code
        == 404
    )
    # The province's administrator covers the county.
    assert _export(tree_client, world, "advance", "2026-03", headers=pc.province_admin.headers).status_code == 200
    # Bad input: 422 naming the field; a period with nothing settled: 404 naming the period.
    for kind, period, status, field in [
        ("weekly", "2026-03", 422, "kind"),
        (None, "2026-03", 422, "kind"),
        ("advance", "2026-13", 422, "period"),
        ("annual", "2026-03", 422, "period"),
        ("advance", None, 422, "period"),
        ("advance", "2026-09", 404, "period"),
        ("annual", "2026", 404, "period"),
    ]:
        query = {k: v for k, v in (("kind", kind), ("period", period)) if v is not None}
        reply = tree_client.get(
            f"{API}/counties/{pc.county_id}/settlements/export.xlsx",
            query_string=query,
            headers=pc.county_admin.headers,
        )
        assert reply.status_code == status, (kind, period, reply.get_json())
        assert reply.get_json()["error"]["field"] == field, (kind, period, reply.get_json())
    assert tree_client.get(f"{API}/settlements/999999/export.xlsx", headers=pc.county_admin.headers).status_code == 404


def test_a_clinician_without_a_reader_role_gets_403(tree_app, tree_client, world: World):
    pc = world.pc
    assert _settle(tree_client, world, "advance", "2026-03").status_code == 201
    item = _list(tree_client, world, kind="advance", period="2026-03")[0]
    assert _export(tree_client, world, "advance", "2026-03", headers=pc.clinician.headers).status_code == 403
    assert (
        tree_client.get(f"{API}/settlements/{item['id']}/export.xlsx", headers=pc.clinician.headers).status_code == 403
    )
    with tree_app.app_context():
        count = db.session().scalar(
            sa.select(sa.func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "compensation.settlement.export")
        )
    assert count == 0
