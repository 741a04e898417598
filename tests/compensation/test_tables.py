"""当量 tables: a province table created, filled, published; overlaps refused; a published table immutable; county
adjustments inside and outside the province's bounds; the resolution `values_for` against expected Decimals (two
counties, adjustments, tiers and tier fallback, periods outside every table) in a constant number of statements;
scope; Excel export → import round trip and bad rows."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from openpyxl import Workbook, load_workbook

from mini_apps.compensation import catalog
from mini_apps.compensation.models import EquivalentValue, ServiceItem
from org_sync.models import OrgNode
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.principal import INSTITUTION_LEVELS

API = "/api/compensation"
D = Decimal

# The province table every test starts from: (item, tier) → value. B01 and C01 leave tiers out (tier 1 applies).
PROVINCE_VALUES = [
    {"item_code": "A01", "tier": 1, "value": "1"},
    {"item_code": "A01", "tier": 2, "value": "1.5"},
    {"item_code": "A01", "tier": 3, "value": 2},
    {"item_code": "B01", "value": 1.7},  # tier defaults to 1
    {"item_code": "C01", "tier": 1, "value": "3.0000"},
    {"item_code": "C01", "tier": 3, "value": "3.5"},
]
ITEMS = [
    ("A01", "门诊诊疗", "basic_medical", "人次"),
    ("B01", "高血压规范随访", "public_health", "人次"),
    ("C01", "家庭医生签约", "contract", "人年"),
]


@dataclass
class Setup:
    items: dict[str, int]  # code → id
    province_table: int
    mine: list[int]  # institutions of pc_world's county
    theirs: list[int]  # institutions of the other county


def _institutions_under(app, county_id: int) -> list[int]:
    with app.app_context():
        session = db.session()
        path = session.get(OrgNode, county_id).path
        return list(
            session.scalars(
                sa.select(OrgNode.id)
                .where(
                    OrgNode.path.startswith(path), OrgNode.level.in_(INSTITUTION_LEVELS), OrgNode.deleted_at.is_(None)
                )
                .order_by(OrgNode.id)
            )
        )


def _ok(reply, status: int = 200) -> dict:
    assert reply.status_code == status, reply.get_json()
    return reply.get_json()


def _error(reply, status: int, field: str | None = None) -> dict:
    assert reply.status_code == status, reply.get_json()
    error = reply.get_json()["error"]
    if field is not None:
        assert error["field"] == field, error
    return error


def create_table(client, headers, region: int, version: str, valid_from: str, valid_to: str | None, **extra) -> dict:
    body = {"region_node_id": region, "version": version, "name": f"当量表 {version}", "valid_from": valid_from}
    body["valid_to"] = valid_to
    body.update(extra)
    return _ok(client.post(f"{API}/tables", json=body, headers=headers), 201)


def province_table(client, w, version: str, valid_from: str, valid_to: str | None, values=None, publish=True) -> int:
    table = create_table(
        client,
        w.province_admin.headers,
        w.province_id,
        version,
        valid_from,
        valid_to,
        adjust_min_pct=-20,
        adjust_max_pct="20",
    )
    _ok(
        client.put(
            f"{API}/tables/{table['id']}/values",
            json={"values": values or PROVINCE_VALUES},
            headers=w.province_admin.headers,
        )
    )
    if publish:
        _ok(client.post(f"{API}/tables/{table['id']}/publish", headers=w.province_admin.headers))
    return table["id"]


@pytest.fixture
def setup(tree_app, tree_client, pc_world) -> Setup:
    items = {}
    for code, name, package, unit in ITEMS:
        body = {"code": code, "name": name, "package": package, "unit": unit}
        items[code] = _ok(tree_client.post(f"{API}/items", json=body, headers=pc_world.province_admin.headers), 201)[
            "id"
        ]
    table = province_table(tree_client, pc_world, "2026", "2026-01-01", "2026-12-31")
    return Setup(
        items,
        table,
        _institutions_under(tree_app, pc_world.county_id),
        _institutions_under(tree_app, pc_world.other_county_id),
    )


def test_province_table_created_filled_published(tree_app, tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    detail = _ok(c.get(f"{API}/tables/{setup.province_table}", headers=w.county_admin.headers))
    assert detail["state"] == "published" and detail["kind"] == "province"
    assert (detail["adjust_min_pct"], detail["adjust_max_pct"]) == ("-20.00", "20.00")
    assert {row["item_code"]: row["values"] for row in detail["rows"]} == {
        "A01": {"1": "1.0000", "2": "1.5000", "3": "2.0000"},
        "B01": {"1": "1.7000", "2": None, "3": None},
        "C01": {"1": "3.0000", "2": None, "3": "3.5000"},
    }
    listed = _ok(c.get(f"{API}/tables", query_string={"kind": "province"}, headers=w.county_admin.headers))
    assert [t["id"] for t in listed["items"]] == [setup.province_table]
    with tree_app.app_context():
        actions = set(
            db.session().scalars(
                sa.select(AuditRecord.action).where(AuditRecord.resource_id == str(setup.province_table))
            )
        )
        table = catalog.table_for(db.session(), w.province_id, date(2026, 12, 31))
        assert table is not None and table.id == setup.province_table
        assert catalog.table_for(db.session(), w.province_id, date(2027, 1, 1)) is None
    assert {"comp.table.create", "comp.table.values", "comp.table.publish"} <= actions


def test_publish_needs_every_active_item_at_tier_one(tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    _ok(
        c.post(
            f"{API}/items",
            json={"code": "D01", "name": "出诊", "package": "basic_medical", "unit": "人次"},
            headers=w.province_admin.headers,
        ),
        201,
    )
    table = province_table(c, w, "2027", "2027-01-01", None, publish=False)
    error = _error(c.post(f"{API}/tables/{table}/publish", headers=w.province_admin.headers), 422, "values")
    assert "D01" in error["message"] and error["missing"] == ["D01"]
    # Deactivated, the item is no longer required.
    _ok(c.post(f"{API}/items/D01/deactivate", headers=w.province_admin.headers))
    _ok(c.post(f"{API}/tables/{table}/publish", headers=w.province_admin.headers))


def test_overlapping_publication_refused(tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    for version, start, end in (("2026b", "2026-12-31", None), ("2026c", "2025-01-01", "2026-01-01")):
        table = province_table(c, w, version, start, end, publish=False)
        error = _error(c.post(f"{API}/tables/{table}/publish", headers=w.province_admin.headers), 422, "valid_from")
        assert "2026" in error["message"] and error["overlapping_table_id"] == setup.province_table
        assert _ok(c.get(f"{API}/tables/{table}", headers=w.province_admin.headers))["state"] == "draft"
    # Adjacent is not overlapping.
    table = province_table(c, w, "2027", "2027-01-01", None)
    assert _ok(c.get(f"{API}/tables/{table}", headers=w.province_admin.headers))["state"] == "published"


def test_published_table_is_immutable(tree_app, tree_client, pc_world, setup):
    w, c, table = pc_world, tree_client, setup.province_table
    headers = w.province_admin.headers
    _error(c.put(f"{API}/tables/{table}/values", json={"values": PROVINCE_VALUES[:1]}, headers=headers), 409)
    _error(c.patch(f"{API}/tables/{table}", json={"valid_to": "2026-06-30"}, headers=headers), 409, "valid_to")
    _error(c.patch(f"{API}/tables/{table}", json={"adjust_max_pct": 50}, headers=headers), 409, "adjust_max_pct")
    _error(c.post(f"{API}/tables/{table}/publish", headers=headers), 409)
    renamed = _ok(c.patch(f"{API}/tables/{table}", json={"name": "浙江省当量表2026"}, headers=headers))
    assert renamed["name"] == "浙江省当量表2026" and renamed["valid_to"] == "2026-12-31"
    with tree_app.app_context():
        count = db.session().scalar(
            sa.select(sa.func.count()).select_from(EquivalentValue).where(EquivalentValue.table_id == table)
        )
    assert count == len(PROVINCE_VALUES)


@pytest.mark.parametrize(
    ("values", "field", "fragment"),
    [
        ([{"item_code": "ZZ9", "value": 1}], "values.0.item_code", "ZZ9"),
        ([{"item_code": "A01", "value": 1}, {"item_code": "A01", "tier": 1, "value": 2}], "values.1", "重复"),
        ([{"item_code": "A01", "value": "1.00001"}], "values.0.value", "4位小数"),
        ([{"item_code": "A01", "value": 0}], "values.0.value", "大于0"),
        ([{"item_code": "A01", "value": "1000.0001"}], "values.0.value", "1000"),
        ([{"item_code": "A01", "value": True}], "values.0.value", "数值"),
        ([{"item_code": "A01", "tier": 4, "value": 1}], "values.0.tier", "1、2 或 3"),
        ([{"item_code": "A01", "value": 1, "price": 2}], "values.0.price", "未知"),
    ],
)
def test_bad_values_refused_nothing_stored(tree_client, pc_world, setup, values, field, fragment):
    w, c = pc_world, tree_client
    table = province_table(c, w, "2027", "2027-01-01", None, publish=False)
    error = _error(
        c.put(f"{API}/tables/{table}/values", json={"values": values}, headers=w.province_admin.headers), 422, field
    )
    assert fragment in error["message"]
    rows = _ok(c.get(f"{API}/tables/{table}", headers=w.province_admin.headers))["rows"]
    assert len(rows) == 3 and rows[0]["values"]["1"] == "1.0000"  # the earlier values are still there


def test_inactive_item_refused(tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    table = province_table(c, w, "2027", "2027-01-01", None, publish=False)
    _ok(c.post(f"{API}/items/C01/deactivate", headers=w.province_admin.headers))
    error = _error(
        c.put(f"{API}/tables/{table}/values", json={"values": PROVINCE_VALUES}, headers=w.province_admin.headers),
        422,
        "values.4.item_code",
    )
    assert "停用" in error["message"]


def test_county_adjustment_within_bounds(tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    county = create_table(
        c,
        w.county_admin.headers,
        w.county_id,
        "2026-县",
        "2026-01-01",
        "2026-06-30",
        base_table_id=setup.province_table,
    )
    url = f"{API}/tables/{county['id']}/values"
    # A01 tier 1 base 1 → 0.8 … 1.2; B01 tier 2 falls back to the base's tier 1 (1.7 → 1.36 … 2.04).
    error = _error(
        c.put(url, json={"values": [{"item_code": "A01", "value": "1.2001"}]}, headers=w.county_admin.headers),
        422,
        "values.0.value",
    )
    assert "0.8 至 1.2" in error["message"]
    error = _error(
        c.put(
            url,
            json={"values": [{"item_code": "A01", "value": "1.1"}, {"item_code": "B01", "tier": 2, "value": "1.3599"}]},
            headers=w.county_admin.headers,
        ),
        422,
        "values.1.value",
    )
    assert "1.36 至 2.04" in error["message"]
    body = {"values": [{"item_code": "A01", "value": "0.8"}, {"item_code": "B01", "tier": 2, "value": "2.04"}]}
    detail = _ok(c.put(url, json=body, headers=w.county_admin.headers))
    rows = {row["item_code"]: row for row in detail["rows"]}
    assert rows["A01"]["values"] == {"1": "0.8000", "2": None, "3": None}
    assert rows["A01"]["base_values"] == {"1": "1.0000", "2": "1.5000", "3": "2.0000"}
    assert rows["A01"]["change_pct"] == {"1": "-20.00", "2": None, "3": None}
    assert rows["B01"]["change_pct"]["2"] == "20.00"
    assert rows["C01"]["values"] == {"1": None, "2": None, "3": None}
    _ok(c.post(f"{API}/tables/{county['id']}/publish", headers=w.county_admin.headers))


def test_county_adjustment_validity_and_base(tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    body = {"region_node_id": w.county_id, "version": "x", "name": "调整", "base_table_id": setup.province_table}
    for dates, field in (
        ({"valid_from": "2025-12-31", "valid_to": "2026-03-31"}, "valid_from"),
        ({"valid_from": "2026-01-01", "valid_to": "2027-01-01"}, "valid_to"),
        ({"valid_from": "2026-01-01", "valid_to": None}, "valid_to"),
        ({"valid_from": "2026-03-01", "valid_to": "2026-02-01"}, "valid_to"),
    ):
        _error(c.post(f"{API}/tables", json=body | dates, headers=w.county_admin.headers), 422, field)
    draft = province_table(c, w, "2027", "2027-01-01", None, publish=False)
    dates = {"valid_from": "2027-01-01", "valid_to": None}
    _error(
        c.post(f"{API}/tables", json=body | dates | {"base_table_id": draft}, headers=w.county_admin.headers),
        422,
        "base_table_id",
    )
    no_base = {k: v for k, v in body.items() if k != "base_table_id"} | dates
    _error(c.post(f"{API}/tables", json=no_base, headers=w.county_admin.headers), 422, "base_table_id")
    _error(
        c.post(
            f"{API}/tables",
            json=body | dates | {"valid_from": "2026-01-01", "valid_to": "2026-02-01", "adjust_max_pct": 5},
            headers=w.county_admin.headers,
        ),
        422,
        "adjust_max_pct",
    )


def test_scope(tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    # A county administrator cannot create a province table nor write the province's.
    body = {
        "region_node_id": w.province_id,
        "version": "x",
        "name": "x",
        "valid_from": "2027-01-01",
        "adjust_min_pct": 0,
        "adjust_max_pct": 0,
    }
    _error(c.post(f"{API}/tables", json=body, headers=w.county_admin.headers), 404, "region_node_id")
    _error(
        c.put(f"{API}/tables/{setup.province_table}/values", json={"values": []}, headers=w.county_admin.headers), 403
    )
    _error(c.post(f"{API}/tables/{setup.province_table}/withdraw", headers=w.county_admin.headers), 403)
    # Another county's administrator neither sees nor writes this county's adjustment, nor creates one for it.
    county = create_table(
        c,
        w.county_admin.headers,
        w.county_id,
        "2026-县",
        "2026-01-01",
        "2026-12-31",
        base_table_id=setup.province_table,
    )
    other = w.other_county_admin.headers
    _error(c.get(f"{API}/tables/{county['id']}", headers=other), 404)
    _error(c.put(f"{API}/tables/{county['id']}/values", json={"values": []}, headers=other), 404)
    _error(c.post(f"{API}/tables/{county['id']}/publish", headers=other), 404)
    _error(c.get(f"{API}/tables/{county['id']}/export.xlsx", headers=other), 404)
    assert county["id"] not in [t["id"] for t in _ok(c.get(f"{API}/tables", headers=other))["items"]]
    body = {
        "region_node_id": w.county_id,
        "version": "y",
        "name": "y",
        "valid_from": "2026-01-01",
        "valid_to": "2026-12-31",
        "base_table_id": setup.province_table,
    }
    _error(c.post(f"{API}/tables", json=body, headers=other), 404, "region_node_id")
    # A clinician reads no table at all.
    _error(c.get(f"{API}/tables/{setup.province_table}", headers=w.clinician.headers), 403)
    # The same version twice in one region is a conflict.
    _error(c.post(f"{API}/tables", json=body | {"version": "2026-县"}, headers=w.county_admin.headers), 409, "version")


def test_withdraw(tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    county = create_table(
        c,
        w.county_admin.headers,
        w.county_id,
        "2026-县",
        "2026-01-01",
        "2026-12-31",
        base_table_id=setup.province_table,
    )
    _ok(
        c.put(
            f"{API}/tables/{county['id']}/values",
            json={"values": [{"item_code": "A01", "value": 1.1}]},
            headers=w.county_admin.headers,
        )
    )
    _ok(c.post(f"{API}/tables/{county['id']}/publish", headers=w.county_admin.headers))
    error = _error(c.post(f"{API}/tables/{setup.province_table}/withdraw", headers=w.province_admin.headers), 409)
    assert "2026-县" in error["message"]
    assert _ok(c.post(f"{API}/tables/{county['id']}/withdraw", headers=w.county_admin.headers))["state"] == "withdrawn"
    withdrawn = _ok(c.post(f"{API}/tables/{setup.province_table}/withdraw", headers=w.province_admin.headers))
    assert withdrawn["state"] == "withdrawn"
    # A withdrawn table no longer counts for overlaps: a replacement for the same year can be published.
    replacement = province_table(c, w, "2026-修订", "2026-01-01", "2026-12-31")
    assert _ok(c.get(f"{API}/tables/{replacement}", headers=w.county_admin.headers))["state"] == "published"


# -- resolution ---------------------------------------------------------------------------------------------------


def _resolution_world(c, w, setup) -> None:
    """This county adjusts A01 tier 1 and B01 tier 2 for the first half of 2026; tiers: mine[1] is 2, theirs[0] 3."""
    county = create_table(
        c, w.county_admin.headers, w.county_id, "2026H1", "2026-01-01", "2026-06-30", base_table_id=setup.province_table
    )
    body = {"values": [{"item_code": "A01", "value": "1.1"}, {"item_code": "B01", "tier": 2, "value": "1.9"}]}
    _ok(c.put(f"{API}/tables/{county['id']}/values", json=body, headers=w.county_admin.headers))
    _ok(c.post(f"{API}/tables/{county['id']}/publish", headers=w.county_admin.headers))
    _ok(c.put(f"{API}/institution-tiers/{setup.mine[1]}", json={"tier": 2}, headers=w.county_admin.headers))
    _ok(c.put(f"{API}/institution-tiers/{setup.theirs[0]}", json={"tier": 3}, headers=w.other_county_admin.headers))


def test_values_for(tree_app, tree_client, pc_world, setup):
    w = pc_world
    _resolution_world(tree_client, w, setup)
    a, b, cc = setup.items["A01"], setup.items["B01"], setup.items["C01"]
    mine_1, mine_2, theirs_3, theirs_1 = setup.mine[0], setup.mine[1], setup.theirs[0], setup.theirs[1]
    with tree_app.app_context():
        session = db.session()
        march = catalog.values_for(session, [mine_1, mine_2, theirs_3, theirs_1], "2026-03")
        assert march == {
            mine_1: {a: D("1.1000"), b: D("1.7000"), cc: D("3.0000")},  # the county's A01
            mine_2: {a: D("1.5000"), b: D("1.9000"), cc: D("3.0000")},  # the county's B01 tier 2; C01 falls back
            theirs_3: {a: D("2.0000"), b: D("1.7000"), cc: D("3.5000")},  # no adjustment there
            theirs_1: {a: D("1.0000"), b: D("1.7000"), cc: D("3.0000")},
        }
        assert all(isinstance(v, Decimal) for per in march.values() for v in per.values())
        # July: the county's adjustment has ended, the province's table alone applies.
        july = catalog.values_for(session, [mine_1, mine_2], "2026-07")
        assert july == {
            mine_1: {a: D("1.0000"), b: D("1.7000"), cc: D("3.0000")},
            mine_2: {a: D("1.5000"), b: D("1.7000"), cc: D("3.0000")},
        }
        # Outside every table: empty per institution.
        assert catalog.values_for(session, [mine_1, theirs_3], "2027-01") == {mine_1: {}, theirs_3: {}}
        assert catalog.values_for(session, [mine_1], "2025-12") == {mine_1: {}}
        assert catalog.values_for(session, [], "2026-03") == {}
        with pytest.raises(catalog.ApiError):
            catalog.values_for(session, [mine_1], "2026-13")


def test_values_for_constant_statements(tree_app, tree_client, pc_world, setup):
    _resolution_world(tree_client, pc_world, setup)
    with tree_app.app_context():
        session = db.session()
        every = setup.mine + setup.theirs
        more = list(
            session.scalars(sa.select(OrgNode.id).where(OrgNode.level.in_(INSTITUTION_LEVELS)).order_by(OrgNode.id))
        )
        twelve = list(dict.fromkeys(every + more))[:12]
        assert len(twelve) == 12
        statements: list[str] = []

        def count(*args) -> None:
            statements.append(args[2])

        engine = db.get_db().engine
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            two = catalog.values_for(session, twelve[:2], "2026-03")
            for_two = len(statements)
            statements.clear()
            many = catalog.values_for(session, twelve, "2026-03")
            for_twelve = len(statements)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        assert for_two == for_twelve <= 5
        assert len(two) == 2 and len(many) == 12
        assert all(len(per) == 3 for per in many.values())


def test_institution_tiers(tree_app, tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    target = setup.mine[0]
    _error(c.put(f"{API}/institution-tiers/{target}", json={"tier": 4}, headers=w.county_admin.headers), 422, "tier")
    _error(c.put(f"{API}/institution-tiers/{target}", json={"tier": 2}, headers=w.other_county_admin.headers), 404)
    _error(c.put(f"{API}/institution-tiers/{w.county_id}", json={"tier": 2}, headers=w.county_admin.headers), 404)
    _ok(c.put(f"{API}/institution-tiers/{target}", json={"tier": 2}, headers=w.county_admin.headers))
    again = _ok(c.put(f"{API}/institution-tiers/{target}", json={"tier": 3}, headers=w.county_admin.headers))
    assert again["tier"] == 3 and again["explicit"] is True
    listed = _ok(
        c.get(f"{API}/institution-tiers", query_string={"node_id": w.county_id}, headers=w.county_admin.headers)
    )
    tiers = {row["institution_id"]: (row["tier"], row["explicit"]) for row in listed["items"]}
    assert set(tiers) == set(setup.mine)
    assert tiers[target] == (3, True) and tiers[setup.mine[1]] == (1, False)
    _error(
        c.get(f"{API}/institution-tiers", query_string={"node_id": w.county_id}, headers=w.other_county_admin.headers),
        404,
    )
    with tree_app.app_context():
        details = (
            db.session()
            .scalars(
                sa.select(AuditRecord.detail).where(AuditRecord.action == "comp.tier.set").order_by(AuditRecord.id)
            )
            .all()
        )
    assert details == [{"tier": 2, "previous": None}, {"tier": 3, "previous": 2}]


# -- Excel --------------------------------------------------------------------------------------------------------


def _workbook(response) -> Workbook:
    assert response.status_code == 200, response.get_json()
    assert response.mimetype.endswith("spreadsheetml.sheet")
    return load_workbook(io.BytesIO(response.data))


def _upload(c, table: int, content: bytes, headers, filename: str = "当量表.xlsx"):
    return c.post(
        f"{API}/tables/{table}/import",
        data={"file": (io.BytesIO(content), filename)},
        headers=headers,
        content_type="multipart/form-data",
    )


def _values(tree_app, table: int) -> set[tuple[int, int, Decimal]]:
    with tree_app.app_context():
        rows = db.session().execute(
            sa.select(EquivalentValue.item_id, EquivalentValue.tier, EquivalentValue.value).where(
                EquivalentValue.table_id == table
            )
        )
        return {(item, tier, Decimal(value).quantize(Decimal("0.0001"))) for item, tier, value in rows}


def test_excel_round_trip_province(tree_app, tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    book = _workbook(c.get(f"{API}/tables/{setup.province_table}/export.xlsx", headers=w.county_admin.headers))
    sheet = book["当量表"]
    header = [cell.value for cell in sheet[1]]
    assert header == ["项目编码", "项目名称", "服务包", "单位", "一类", "二类", "三类"]
    assert all(cell.font.bold for cell in sheet[1]) and sheet.freeze_panes == "A2"
    assert [cell.value for cell in sheet[3]][:5] == ["B01", "高血压规范随访", "基本公共卫生服务包", "人次", 1.7]
    buffer = io.BytesIO()
    book.save(buffer)

    copy = province_table(c, w, "2027", "2027-01-01", None, values=[{"item_code": "A01", "value": 9}], publish=False)
    imported = _ok(_upload(c, copy, buffer.getvalue(), w.province_admin.headers))
    assert imported["imported"] == len(PROVINCE_VALUES)
    assert _values(tree_app, copy) == _values(tree_app, setup.province_table)
    with tree_app.app_context():
        assert (
            "comp.table.import"
            in db.session().scalars(sa.select(AuditRecord.action).where(AuditRecord.resource_id == str(copy))).all()
        )


def test_excel_round_trip_county(tree_app, tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    _resolution_world(c, w, setup)
    county = next(
        t["id"]
        for t in _ok(c.get(f"{API}/tables", query_string={"kind": "county"}, headers=w.county_admin.headers))["items"]
    )
    book = _workbook(c.get(f"{API}/tables/{county}/export.xlsx", headers=w.county_admin.headers))
    sheet = book["当量表"]
    assert [cell.value for cell in sheet[1]][4:] == [
        "一类",
        "二类",
        "三类",
        "省表一类",
        "省表二类",
        "省表三类",
        "调整%一类",
        "调整%二类",
        "调整%三类",
    ]
    a01 = [cell.value for cell in sheet[2]]
    assert a01[0] == "A01" and a01[4:] == [1.1, None, None, 1, 1.5, 2, 10, None, None]
    buffer = io.BytesIO()
    book.save(buffer)
    copy = create_table(
        c, w.county_admin.headers, w.county_id, "2026H2", "2026-07-01", "2026-12-31", base_table_id=setup.province_table
    )
    _ok(_upload(c, copy["id"], buffer.getvalue(), w.county_admin.headers))
    assert _values(tree_app, copy["id"]) == _values(tree_app, county) != set()


def test_excel_bad_rows_reported_nothing_stored(tree_app, tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    county = create_table(
        c,
        w.county_admin.headers,
        w.county_id,
        "2026-县",
        "2026-01-01",
        "2026-12-31",
        base_table_id=setup.province_table,
    )
    _ok(
        c.put(
            f"{API}/tables/{county['id']}/values",
            json={"values": [{"item_code": "C01", "value": 3.3}]},
            headers=w.county_admin.headers,
        )
    )
    book = Workbook()
    sheet = book.active
    sheet.title = "当量表"
    sheet.append(["项目编码", "项目名称", "服务包", "单位", "一类", "二类", "三类"])
    sheet.append(["A01", "门诊诊疗", "", "", 1.1, None, None])  # good
    sheet.append(["ZZ9", "", "", "", 1, None, None])  # unknown item
    sheet.append([None, "无编码", "", "", 1, None, None])  # no code
    sheet.append(["B01", "", "", "", "abc", -1, None])  # not a number; negative
    sheet.append(["A01", "", "", "", 1.0, None, 2.5])  # duplicate tier 1; 2.5 beyond 2 × 1.2 = 2.4
    sheet.append([None, None, None, None, None, None, None])  # blank: skipped
    sheet.append(["C01", "", "", "", 3.12345, None, None])  # five decimals
    buffer = io.BytesIO()
    book.save(buffer)
    error = _error(_upload(c, county["id"], buffer.getvalue(), w.county_admin.headers), 422, "file")
    assert [(p["row"], p["field"]) for p in error["rows"]] == [
        (3, "item_code"),
        (4, "item_code"),
        (5, "tier_1"),
        (5, "tier_2"),
        (6, "tier_1"),
        (6, "tier_3"),
        (8, "tier_1"),
    ]
    assert "2.4" in error["rows"][5]["message"] and "重复" in error["rows"][4]["message"]
    with tree_app.app_context():
        c01 = db.session().scalar(sa.select(ServiceItem.id).where(ServiceItem.code == "C01"))
    assert _values(tree_app, county["id"]) == {(c01, 1, Decimal("3.3000"))}

    # Not a workbook, whatever the name says; a CSV; too big; a published table.
    _error(_upload(c, county["id"], b"%PDF-1.7 not a workbook", w.county_admin.headers), 422, "file")
    _error(_upload(c, county["id"], b"PK\x03\x04garbage", w.county_admin.headers), 422, "file")
    _error(_upload(c, county["id"], b"a,b\n1,2\n", w.county_admin.headers, "values.csv"), 422, "file")
    _error(_upload(c, county["id"], b"PK\x03\x04" + b"0" * (5 * 1024 * 1024), w.county_admin.headers), 413, "file")
    _error(_upload(c, setup.province_table, buffer.getvalue(), w.province_admin.headers), 409)


def test_item_priced_only_at_other_tiers(tree_app, tree_client, pc_world, setup):
    """A (since deactivated) item with a tier-2 value and no tier-1 value is priced for tier-2 institutions only:
    the fallback never invents a value."""
    w, c = pc_world, tree_client
    body = {"code": "D01", "name": "出诊", "package": "basic_medical", "unit": "人次"}
    d01 = _ok(c.post(f"{API}/items", json=body, headers=w.province_admin.headers), 201)["id"]
    values = [*PROVINCE_VALUES, {"item_code": "D01", "tier": 2, "value": "7"}]
    table = province_table(c, w, "2027", "2027-01-01", None, values=values, publish=False)
    _ok(c.post(f"{API}/items/D01/deactivate", headers=w.province_admin.headers))
    _ok(c.post(f"{API}/tables/{table}/publish", headers=w.province_admin.headers))
    _ok(c.put(f"{API}/institution-tiers/{setup.mine[1]}", json={"tier": 2}, headers=w.county_admin.headers))
    with tree_app.app_context():
        resolved = catalog.values_for(db.session(), setup.mine[:2], "2027-05")
    assert d01 not in resolved[setup.mine[0]] and len(resolved[setup.mine[0]]) == 3
    assert resolved[setup.mine[1]][d01] == D("7.0000")


def test_edit_draft_table(tree_client, pc_world, setup):
    w, c = pc_world, tree_client
    table = province_table(c, w, "2027", "2027-01-01", None, publish=False)
    url, headers = f"{API}/tables/{table}", w.province_admin.headers
    _error(c.patch(url, json={"adjust_max_pct": -1}, headers=headers), 422, "adjust_max_pct")
    _error(c.patch(url, json={"adjust_min_pct": "-0.001"}, headers=headers), 422, "adjust_min_pct")
    _error(c.patch(url, json={"adjust_min_pct": -100}, headers=headers), 422, "adjust_min_pct")
    _error(c.patch(url, json={"valid_to": "2026-12-31"}, headers=headers), 422, "valid_to")
    _error(c.patch(url, json={"version": "2026"}, headers=headers), 409, "version")
    edited = _ok(
        c.patch(url, json={"version": "2027a", "valid_to": "2027-12-31", "adjust_max_pct": 15.5}, headers=headers)
    )
    assert (edited["version"], edited["valid_to"], edited["adjust_max_pct"]) == ("2027a", "2027-12-31", "15.50")
    _error(c.patch(url, json={"adjust_max_pct": 1}, headers=w.county_admin.headers), 403)
