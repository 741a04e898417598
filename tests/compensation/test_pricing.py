"""Unit prices, coefficient bandings, assessments, line-item subsidies, fee income and county schemes: every rule's
422 names its field and stores nothing; bandings must tile 0–100 (gap, overlap, start, end) and are versioned;
`coefficient_from_bands` on boundaries, inside linear bands and at 100; scope (another county's administrator 404,
a clinician 403, an institution administrator reads only their institution, a finance officer writes); audit rows."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
import sqlalchemy as sa

from mini_apps.compensation.models import (
    Assessment,
    CoefficientBanding,
    CountyScheme,
    FeeIncome,
    LineItemSubsidy,
    UnitPrice,
)
from mini_apps.compensation.pricing import check_bands, coefficient_from_bands
from org_sync.models import OrgMember, OrgMembership, OrgNode
from tests.support.auth import bearer, sign_in
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.principal import INSTITUTION_LEVELS
from workbench.errors import ApiError

API = "/api/compensation"
D = Decimal
TABLES = (UnitPrice, CoefficientBanding, Assessment, LineItemSubsidy, FeeIncome, CountyScheme)

# 0–60 fixed 0.8; 60–90 linear 0.9 → 1.2; 90–100 fixed 1.3.
BANDS = [
    {"min": 0, "max": 60, "coefficient": "0.8"},
    {"min": 60, "max": 90, "from": "0.9", "to": "1.2"},
    {"min": 90, "max": 100, "coefficient": 1.3},
]


@dataclass
class World:
    pc: object  # tests.precision_control.conftest.ControlWorld
    institution_id: int  # the clinician's institution
    neighbour_id: int  # another institution of the county, neither above nor below it
    other_institution_id: int  # an institution of the other county

    @property
    def admin(self) -> dict[str, str]:
        return self.pc.county_admin.headers


@pytest.fixture
def world(tree_app, pc_world) -> World:
    with tree_app.app_context():
        session = db.session()
        paths = session.scalars(
            sa.select(OrgNode.path)
            .join(OrgMembership, OrgMembership.node_id == OrgNode.id)
            .join(OrgMember, OrgMember.id == OrgMembership.member_id)
            .where(OrgMember.userid == pc_world.clinician.userid)
        ).all()
        nodes = dict(
            session.execute(sa.select(OrgNode.id, OrgNode.path).where(OrgNode.id.in_(pc_world.institution_ids))).all()
        )
        other_path = session.get(OrgNode, pc_world.other_county_id).path
        other = session.scalar(
            sa.select(OrgNode.id)
            .where(OrgNode.path.startswith(other_path), OrgNode.level.in_(INSTITUTION_LEVELS))
            .order_by(OrgNode.id)
        )
    # The deepest institution on the clinician's path (a member institution lies below its lead hospital).
    own = max((i for i, path in nodes.items() if any(p.startswith(path) for p in paths)), key=lambda i: len(nodes[i]))
    neighbour = next(
        i for i, path in nodes.items() if not path.startswith(nodes[own]) and not nodes[own].startswith(path)
    )
    return World(pc=pc_world, institution_id=own, neighbour_id=neighbour, other_institution_id=other)


def _counts(app) -> dict[str, int]:
    """Rows of every table this module writes, and the audit rows of its actions."""
    with app.app_context():
        session = db.session()
        out = {model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model)) for model in TABLES}
        out["audit"] = session.scalar(
            sa.select(sa.func.count()).select_from(AuditRecord).where(AuditRecord.action.like("comp.%"))
        )
    return out


def _actions(app) -> list[str]:
    with app.app_context():
        return sorted(
            db.session()
            .scalars(
                sa.select(AuditRecord.action).where(AuditRecord.action.like("comp.%"), AuditRecord.outcome == "ok")
            )
            .all()
        )


def _error(reply, status: int = 422) -> dict:
    assert reply.status_code == status, reply.get_json()
    return reply.get_json()["error"]


def _grant(client, sandbox, world: World, role: str, node_id: int) -> dict[str, str]:
    """Grant the clinician `role` on `node_id` (by the county's administrator) and sign them in again."""
    granted = client.post(
        "/api/auth/grants",
        json={"userid": world.pc.clinician.userid, "role": role, "node_id": node_id},
        headers=world.admin,
    )
    assert granted.status_code == 201, granted.get_json()
    return bearer(sign_in(client, sandbox, world.pc.clinician.userid))


# -- coefficient_from_bands (pure) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        ("0", "0.8000"),
        ("59.99", "0.8000"),
        ("60", "0.9000"),  # a boundary belongs to the upper band
        ("75", "1.0500"),  # 0.9 + 0.3 × 15 / 30
        ("61.01", "0.9101"),  # 0.9 + 0.3 × 1.01 / 30 = 0.9101
        ("89.99", "1.1999"),  # 0.9 + 0.3 × 29.99 / 30
        ("90", "1.3000"),
        ("100", "1.3000"),  # 100 belongs to the last band
    ],
)
def test_coefficient_from_bands(score, expected):
    bands = check_bands(BANDS)
    assert coefficient_from_bands(bands, D(score)) == D(expected)
    assert str(coefficient_from_bands(bands, D(score))) == expected  # 4 places exactly


def test_coefficient_from_bands_linear_to_100_rounds_half_up_and_refuses_outside():
    bands = check_bands([{"min": 0, "max": 100, "from": "0.5", "to": "1.5"}])
    assert coefficient_from_bands(bands, D("100")) == D("1.5000")
    assert coefficient_from_bands(bands, D("0")) == D("0.5000")
    assert coefficient_from_bands(bands, D("33.33")) == D("0.8333")
    # 0.00005 exactly: half up gives 0.0001 (banker's rounding would give 0.0000).
    tiny = check_bands([{"min": 0, "max": 2, "from": 0, "to": "0.0001"}, {"min": 2, "max": 100, "coefficient": 1}])
    assert coefficient_from_bands(tiny, D("1")) == D("0.0001")
    # A falling linear band: 1.2 → 0.9 over 50–100.
    falling = check_bands([{"min": 0, "max": 50, "coefficient": 1}, {"min": 50, "max": 100, "from": 1.2, "to": 0.9}])
    assert coefficient_from_bands(falling, D("50")) == D("1.2000")
    assert coefficient_from_bands(falling, D("49.99")) == D("1.0000")
    assert coefficient_from_bands(falling, D("75")) == D("1.0500")
    assert coefficient_from_bands(falling, D("100")) == D("0.9000")
    for outside in ("100.01", "-0.01"):
        with pytest.raises(ValueError):
            coefficient_from_bands(bands, D(outside))


def test_check_bands_sorts_and_normalises():
    shuffled = [BANDS[2], BANDS[0], BANDS[1]]
    assert check_bands(shuffled) == [
        {"min": "0.00", "max": "60.00", "coefficient": "0.8000"},
        {"min": "60.00", "max": "90.00", "from": "0.9000", "to": "1.2000"},
        {"min": "90.00", "max": "100.00", "coefficient": "1.3000"},
    ]
    with pytest.raises(ApiError) as raised:
        check_bands([{"min": 0, "max": 50, "coefficient": 1}, {"min": 40, "max": 100, "coefficient": 1}])
    assert raised.value.field == "bands.1.min" and "第 0 段" in raised.value.message


# -- unit prices -------------------------------------------------------------------------------------------------


def test_prices_set_listed_updated_and_audited(tree_app, tree_client, world: World):
    c, w = tree_client, world
    url = f"{API}/counties/{w.pc.county_id}/prices/2026"
    budget = c.put(f"{url}/basic_medical", json={"method": "budget", "budget": "12000000.50"}, headers=w.admin)
    assert budget.status_code == 200, budget.get_json()
    assert budget.get_json()["budget"] == "12000000.50" and budget.get_json()["price"] is None
    fixed = c.put(f"{url}/public_health", json={"method": "fixed", "price": 2.1234}, headers=w.admin)
    assert fixed.status_code == 200 and fixed.get_json()["price"] == "2.1234"

    listed = c.get(url, headers=w.admin).get_json()
    assert [(p["package"], p["method"]) for p in listed["items"]] == [
        ("basic_medical", "budget"),
        ("public_health", "fixed"),
    ]
    assert listed["unset_packages"] == ["contract"]
    assert c.get(f"{API}/counties/{w.pc.county_id}/prices/2027", headers=w.admin).get_json()["items"] == []

    # Switching a package to a fixed price replaces the row (one per county, package and year).
    switched = c.put(f"{url}/basic_medical", json={"method": "fixed", "price": "1.5"}, headers=w.admin)
    assert switched.get_json()["budget"] is None and switched.get_json()["price"] == "1.5000"
    with tree_app.app_context():
        session = db.session()
        assert session.scalar(sa.select(sa.func.count()).select_from(UnitPrice)) == 2
        details = session.scalars(
            sa.select(AuditRecord.detail).where(AuditRecord.action == "comp.price.set").order_by(AuditRecord.id)
        ).all()
    assert len(details) == 3
    assert details[0]["previous"] is None and details[0]["budget"] == "12000000.50"
    assert details[2]["previous"] == {"method": "budget", "budget": "12000000.50", "price": None}
    assert details[2]["price"] == "1.5000"


@pytest.mark.parametrize(
    ("package", "body", "field"),
    [
        ("basic_medical", {"method": "budget", "budget": 0}, "budget"),
        ("basic_medical", {"method": "budget", "budget": "-1"}, "budget"),
        ("basic_medical", {"method": "budget", "budget": "100.001"}, "budget"),
        ("basic_medical", {"method": "budget", "budget": "abc"}, "budget"),
        ("basic_medical", {"method": "budget", "budget": "1e40"}, "budget"),
        ("basic_medical", {"method": "budget", "budget": "1e18"}, "budget"),
        ("basic_medical", {"method": "budget", "budget": True}, "budget"),
        ("basic_medical", {"method": "budget"}, "budget"),
        ("basic_medical", {"method": "budget", "budget": 100, "price": 1}, "price"),
        ("basic_medical", {"method": "fixed", "price": 0}, "price"),
        ("basic_medical", {"method": "fixed", "price": "1.00001"}, "price"),
        ("basic_medical", {"method": "fixed"}, "price"),
        ("basic_medical", {"method": "fixed", "price": 1, "budget": 100}, "budget"),
        ("basic_medical", {"method": "auction", "price": 1}, "method"),
        ("basic_medical", {"method": "fixed", "price": 1, "extra": 1}, "extra"),
        ("dental", {"method": "fixed", "price": 1}, "package"),
    ],
)
def test_price_rules_name_the_field_and_store_nothing(tree_app, tree_client, world: World, package, body, field):
    before = _counts(tree_app)
    reply = tree_client.put(
        f"{API}/counties/{world.pc.county_id}/prices/2026/{package}", json=body, headers=world.admin
    )
    assert _error(reply)["field"] == field
    assert _counts(tree_app) == before


def test_price_year_out_of_range(tree_app, tree_client, world: World):
    before = _counts(tree_app)
    reply = tree_client.put(
        f"{API}/counties/{world.pc.county_id}/prices/1999/contract",
        json={"method": "fixed", "price": 1},
        headers=world.admin,
    )
    assert _error(reply)["field"] == "year"
    assert _counts(tree_app) == before


# -- bandings --------------------------------------------------------------------------------------------------------


def test_bandings_are_versioned_and_the_new_one_is_current(tree_app, tree_client, world: World):
    c, w = tree_client, world
    url = f"{API}/counties/{w.pc.county_id}/bandings/2026"
    assert c.get(url, headers=w.admin).get_json() == {
        "county_id": w.pc.county_id,
        "year": 2026,
        "current": None,
        "versions": [],
    }
    first = c.put(url, json={"bands": [BANDS[1], BANDS[2], BANDS[0]]}, headers=w.admin)
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["version"] == 1 and first.get_json()["bands"][0] == {
        "min": "0.00",
        "max": "60.00",
        "coefficient": "0.8000",
    }
    second = c.put(url, json={"bands": [{"min": 0, "max": 100, "coefficient": 1}]}, headers=w.admin)
    assert second.get_json()["version"] == 2 and second.get_json()["is_current"] is True
    # Another year has its own versions.
    other_year = c.put(
        f"{API}/counties/{w.pc.county_id}/bandings/2027", json={"bands": BANDS}, headers=w.admin
    ).get_json()
    assert other_year["version"] == 1

    got = c.get(url, headers=w.admin).get_json()
    assert got["current"]["version"] == 2
    assert [(v["version"], v["is_current"]) for v in got["versions"]] == [(2, True), (1, False)]
    assert got["versions"][1]["bands"] == check_bands(BANDS)  # the old version kept as it was
    with tree_app.app_context():
        from mini_apps.compensation.pricing import current_banding

        current = current_banding(db.session(), w.pc.county_id, 2026)
        assert current.version == 2 and coefficient_from_bands(current.bands, D("75")) == D("1.0000")
        assert current_banding(db.session(), w.pc.county_id, 2025) is None
    assert _actions(tree_app) == ["comp.banding.set"] * 3


@pytest.mark.parametrize(
    ("bands", "field", "names"),
    [
        # A gap: 50–60 is covered by no band.
        (
            [{"min": 0, "max": 50, "coefficient": 1}, {"min": 60, "max": 100, "coefficient": 1}],
            "bands.1.min",
            "第 0 段",
        ),
        # The same gap sent in another order: the error names the request's indices.
        (
            [{"min": 60, "max": 100, "coefficient": 1}, {"min": 0, "max": 50, "coefficient": 1}],
            "bands.0.min",
            "第 1 段",
        ),
        # An overlap: 50–60 is in two bands.
        ([{"min": 0, "max": 60, "coefficient": 1}, {"min": 50, "max": 100, "coefficient": 1}], "bands.1.min", "重叠"),
        # Two bands starting at the same score.
        ([{"min": 0, "max": 100, "coefficient": 1}, {"min": 0, "max": 50, "coefficient": 1}], "bands.0.min", "重叠"),
        ([{"min": 10, "max": 100, "coefficient": 1}], "bands.0.min", "从 0 分开始"),
        ([{"min": 0, "max": 50, "coefficient": 1}, {"min": 50, "max": 99.99, "coefficient": 1}], "bands.1.max", "100"),
        ([{"min": 0, "max": 100, "coefficient": "2.0001"}], "bands.0.coefficient", "不大于2"),
        ([{"min": 0, "max": 100, "coefficient": -1}], "bands.0.coefficient", "不小于0"),
        ([{"min": 0, "max": 100, "coefficient": "1.00001"}], "bands.0.coefficient", "4位小数"),
        ([{"min": 0, "max": 100, "from": 1, "to": 3}], "bands.0.to", "不大于2"),
        ([{"min": 0, "max": 100, "from": 1}], "bands.0.to", "终止系数"),
        ([{"min": 0, "max": 100, "from": 1, "to": 1, "coefficient": 1}], "bands.0.coefficient", "二选一"),
        ([{"min": 0, "max": 100}], "bands.0.coefficient", "系数"),
        ([{"min": "0.001", "max": 100, "coefficient": 1}], "bands.0.min", "2位小数"),
        ([{"min": 0, "max": "100.5", "coefficient": 1}], "bands.0.max", "不大于100"),
        ([{"min": 0, "max": 0, "coefficient": 1}, {"min": 0, "max": 100, "coefficient": 1}], "bands.0.max", "大于下限"),
        ([{"min": 0, "max": 100, "coefficient": 1, "weight": 2}], "bands.0.weight", "未知"),
        ([{"max": 100, "coefficient": 1}], "bands.0.min", "下限"),
        (["0-100"], "bands.0", "每段"),
        ([], "bands", "非空"),
    ],
)
def test_banding_rules_name_the_band_and_store_nothing(tree_app, tree_client, world: World, bands, field, names):
    before = _counts(tree_app)
    reply = tree_client.put(
        f"{API}/counties/{world.pc.county_id}/bandings/2026", json={"bands": bands}, headers=world.admin
    )
    error = _error(reply)
    assert error["field"] == field and names in error["message"], error
    assert _counts(tree_app) == before


# -- assessments ---------------------------------------------------------------------------------------------------


def test_assessments_with_their_coefficient_from_the_current_banding(tree_app, tree_client, sandbox, world: World):
    c, w = tree_client, world
    mine = f"{API}/institutions/{w.institution_id}/assessments/2026"
    made = c.put(mine, json={"score": "75"}, headers=w.admin)
    assert made.status_code == 200, made.get_json()
    assert made.get_json()["score"] == "75.00" and made.get_json()["coefficient"] is None  # no banding yet
    assert (
        c.put(f"{API}/institutions/{w.neighbour_id}/assessments/2026", json={"score": 90}, headers=w.admin).status_code
        == 200
    )
    c.put(f"{API}/counties/{w.pc.county_id}/bandings/2026", json={"bands": BANDS}, headers=w.admin)

    listed = c.get(f"{API}/counties/{w.pc.county_id}/assessments/2026", headers=w.admin).get_json()
    by_id = {row["institution_id"]: row for row in listed["items"]}
    assert set(by_id) == set(w.pc.institution_ids)  # every institution of the county, assessed or not
    assert (by_id[w.institution_id]["score"], by_id[w.institution_id]["coefficient"]) == ("75.00", "1.0500")
    assert (by_id[w.neighbour_id]["score"], by_id[w.neighbour_id]["coefficient"]) == ("90.00", "1.3000")
    unassessed = [row for i, row in by_id.items() if i not in (w.institution_id, w.neighbour_id)]
    assert all(row["score"] is None and row["coefficient"] is None for row in unassessed)
    assert listed["banding_version"] == 1

    # A corrected score replaces the old one; a new banding version moves the coefficient.
    assert c.put(mine, json={"score": 60}, headers=w.admin).get_json()["coefficient"] == "0.9000"
    c.put(
        f"{API}/counties/{w.pc.county_id}/bandings/2026",
        json={"bands": [{"min": 0, "max": 100, "from": 0, "to": 2}]},
        headers=w.admin,
    )
    listed = c.get(f"{API}/counties/{w.pc.county_id}/assessments/2026", headers=w.admin).get_json()
    by_id = {row["institution_id"]: row for row in listed["items"]}
    assert (by_id[w.institution_id]["coefficient"], listed["banding_version"]) == ("1.2000", 2)
    with tree_app.app_context():
        assert db.session().scalar(sa.select(sa.func.count()).select_from(Assessment)) == 2

    # An institution administrator reads their own institution's row only, and writes nothing.
    own = _grant(c, sandbox, w, "institution_admin", w.institution_id)
    theirs = c.get(f"{API}/counties/{w.pc.county_id}/assessments/2026", headers=own).get_json()
    assert [row["institution_id"] for row in theirs["items"]] == [w.institution_id]
    assert _error(c.put(mine, json={"score": 99}, headers=own), 403)["code"] == "forbidden"
    # … and reads the terms of their county (the ones their institution is paid by), not another county's.
    for term in ("prices", "bandings", "schemes"):
        assert c.get(f"{API}/counties/{w.pc.county_id}/{term}/2026", headers=own).status_code == 200, term
        assert c.get(f"{API}/counties/{w.pc.other_county_id}/{term}/2026", headers=own).status_code == 404, term
    assert _actions(tree_app).count("comp.assessment.set") == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"score": "100.01"}, "score"),
        ({"score": -0.01}, "score"),
        ({"score": "80.005"}, "score"),
        ({"score": "eighty"}, "score"),
        ({"score": None}, "score"),
        ({}, "score"),
    ],
)
def test_assessment_rules_name_the_field_and_store_nothing(tree_app, tree_client, world: World, body, field):
    before = _counts(tree_app)
    reply = tree_client.put(
        f"{API}/institutions/{world.institution_id}/assessments/2026", json=body, headers=world.admin
    )
    assert _error(reply)["field"] == field
    assert _counts(tree_app) == before


# -- line items ------------------------------------------------------------------------------------------------------


def test_line_items_added_listed_by_period_and_deleted(tree_app, tree_client, sandbox, world: World):
    c, w = tree_client, world
    url = f"{API}/institutions/{w.institution_id}/line-items"
    made = []
    for period, category, amount in (
        ("2026-01", "equipment", "150000.00"),
        ("2026-03", "training", 2000.5),
        ("2026-06", "retirees", "300"),
    ):
        reply = c.post(url, json={"period": period, "category": category, "amount": amount}, headers=w.admin)
        assert reply.status_code == 201, reply.get_json()
        made.append(reply.get_json())
    assert made[1]["amount"] == "2000.50" and made[1]["category_label"] == "人才培养"

    everything = c.get(url, headers=w.admin).get_json()
    assert [row["period"] for row in everything["items"]] == ["2026-01", "2026-03", "2026-06"]
    assert everything["total"] == "152300.50"
    spring = c.get(url, query_string={"from": "2026-02", "to": "2026-06"}, headers=w.admin).get_json()
    assert [row["id"] for row in spring["items"]] == [made[1]["id"], made[2]["id"]]
    assert (spring["from"], spring["to"], spring["total"]) == ("2026-02", "2026-06", "2300.50")
    assert _error(c.get(url, query_string={"from": "2026-06", "to": "2026-02"}, headers=w.admin))["field"] == "to"
    assert _error(c.get(url, query_string={"from": "2026-6"}, headers=w.admin))["field"] == "from"

    # The institution's administrator reads them, cannot add or delete; a neighbour's are not theirs.
    own = _grant(c, sandbox, w, "institution_admin", w.institution_id)
    assert len(c.get(url, headers=own).get_json()["items"]) == 3
    assert c.get(f"{API}/institutions/{w.neighbour_id}/line-items", headers=own).status_code == 404
    assert c.post(url, json={"period": "2026-01", "category": "policy", "amount": 1}, headers=own).status_code == 403
    assert c.delete(f"{API}/line-items/{made[0]['id']}", headers=own).status_code == 403
    # Another county's administrator: the same 404 as a line item that does not exist.
    other = w.pc.other_county_admin.headers
    assert c.delete(f"{API}/line-items/{made[0]['id']}", headers=other).status_code == 404
    assert c.get(url, headers=other).status_code == 404

    assert c.delete(f"{API}/line-items/{made[0]['id']}", headers=w.admin).status_code == 204
    assert c.delete(f"{API}/line-items/{made[0]['id']}", headers=w.admin).status_code == 404
    assert c.get(url, headers=w.admin).get_json()["total"] == "2300.50"
    assert _actions(tree_app) == ["comp.line_item.create"] * 3 + ["comp.line_item.delete"]
    with tree_app.app_context():
        deleted = db.session().scalar(
            sa.select(AuditRecord.detail).where(AuditRecord.action == "comp.line_item.delete")
        )
    assert deleted["amount"] == "150000.00" and deleted["category"] == "equipment"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"period": "2026-13", "category": "equipment", "amount": 1}, "period"),
        ({"period": "2026/01", "category": "equipment", "amount": 1}, "period"),
        ({"period": "2026-01", "category": "bonus", "amount": 1}, "category"),
        ({"period": "2026-01", "category": "equipment", "amount": 0}, "amount"),
        ({"period": "2026-01", "category": "equipment", "amount": "-5"}, "amount"),
        ({"period": "2026-01", "category": "equipment", "amount": "1.001"}, "amount"),
        ({"period": "2026-01", "category": "equipment", "amount": "NaN"}, "amount"),
        ({"period": "2026-01", "category": "equipment", "amount": "Infinity"}, "amount"),
        ({"period": "2026-01", "category": "equipment"}, "amount"),
        ({"period": "2026-01", "category": "equipment", "amount": 1, "note": "长" * 201}, "note"),
    ],
)
def test_line_item_rules_name_the_field_and_store_nothing(tree_app, tree_client, world: World, body, field):
    before = _counts(tree_app)
    reply = tree_client.post(f"{API}/institutions/{world.institution_id}/line-items", json=body, headers=world.admin)
    assert _error(reply)["field"] == field
    assert _counts(tree_app) == before


# -- fee income ------------------------------------------------------------------------------------------------------


def test_fee_income_set_replaced_and_listed(tree_app, tree_client, world: World):
    c, w = tree_client, world
    url = f"{API}/institutions/{w.institution_id}/fee-income"
    assert c.put(f"{url}/2026-01", json={"amount": 0}, headers=w.admin).get_json()["amount"] == "0.00"
    assert c.put(f"{url}/2026-02", json={"amount": "88000.8"}, headers=w.admin).get_json()["amount"] == "88000.80"
    replaced = c.put(f"{url}/2026-01", json={"amount": "1234.56"}, headers=w.admin)
    assert replaced.status_code == 200 and replaced.get_json()["amount"] == "1234.56"
    listed = c.get(url, headers=w.admin).get_json()
    assert [(row["period"], row["amount"]) for row in listed["items"]] == [
        ("2026-01", "1234.56"),
        ("2026-02", "88000.80"),
    ]
    assert [
        row["period"] for row in c.get(url, query_string={"from": "2026-02"}, headers=w.admin).get_json()["items"]
    ] == ["2026-02"]
    with tree_app.app_context():
        session = db.session()
        assert session.scalar(sa.select(sa.func.count()).select_from(FeeIncome)) == 2
        details = session.scalars(
            sa.select(AuditRecord.detail).where(AuditRecord.action == "comp.fee_income.set").order_by(AuditRecord.id)
        ).all()
    assert [d["previous"] for d in details] == [None, None, {"amount": "0.00"}]
    assert c.get(url, headers=w.pc.other_county_admin.headers).status_code == 404
    assert c.get(url, headers=w.pc.clinician.headers).status_code == 403


@pytest.mark.parametrize(
    ("period", "body", "field"),
    [
        ("2026-01", {"amount": "-0.01"}, "amount"),
        ("2026-01", {"amount": "10.123"}, "amount"),
        ("2026-01", {"amount": None}, "amount"),
        ("2026-00", {"amount": 1}, "period"),
        ("202601", {"amount": 1}, "period"),
    ],
)
def test_fee_income_rules_name_the_field_and_store_nothing(tree_app, tree_client, world: World, period, body, field):
    before = _counts(tree_app)
    reply = tree_client.put(
        f"{API}/institutions/{world.institution_id}/fee-income/{period}", json=body, headers=world.admin
    )
    assert _error(reply)["field"] == field
    assert _counts(tree_app) == before


# -- county schemes --------------------------------------------------------------------------------------------------


def test_scheme_defaults_until_set(tree_app, tree_client, world: World):
    c, w = tree_client, world
    url = f"{API}/counties/{w.pc.county_id}/schemes/2026"
    default = c.get(url, headers=w.admin).get_json()
    assert (default["advance_share"], default["gap_subsidy"], default["is_default"]) == ("0.8000", False, True)
    assert "默认" in default["note"]
    made = c.put(url, json={"advance_share": "0.7", "gap_subsidy": True}, headers=w.admin)
    assert made.status_code == 200, made.get_json()
    assert (made.get_json()["advance_share"], made.get_json()["gap_subsidy"], made.get_json()["is_default"]) == (
        "0.7000",
        True,
        False,
    )
    assert made.get_json()["note"] is None
    c.put(url, json={"advance_share": 1, "gap_subsidy": False}, headers=w.admin)
    got = c.get(url, headers=w.admin).get_json()
    assert (got["advance_share"], got["gap_subsidy"]) == ("1.0000", False)
    assert c.get(f"{API}/counties/{w.pc.county_id}/schemes/2027", headers=w.admin).get_json()["is_default"] is True
    with tree_app.app_context():
        assert db.session().scalar(sa.select(sa.func.count()).select_from(CountyScheme)) == 1
    assert _actions(tree_app) == ["comp.scheme.set"] * 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"advance_share": 0, "gap_subsidy": False}, "advance_share"),
        ({"advance_share": "1.0001", "gap_subsidy": False}, "advance_share"),
        ({"advance_share": "0.12345", "gap_subsidy": False}, "advance_share"),
        ({"advance_share": "0.8", "gap_subsidy": "yes"}, "gap_subsidy"),
        ({"advance_share": "0.8", "gap_subsidy": 1}, "gap_subsidy"),
        ({"gap_subsidy": False}, "advance_share"),
        ({"advance_share": "0.8"}, "gap_subsidy"),
    ],
)
def test_scheme_rules_name_the_field_and_store_nothing(tree_app, tree_client, world: World, body, field):
    before = _counts(tree_app)
    reply = tree_client.put(f"{API}/counties/{world.pc.county_id}/schemes/2026", json=body, headers=world.admin)
    assert _error(reply)["field"] == field
    assert _counts(tree_app) == before


# -- scope ---------------------------------------------------------------------------------------------------------


def test_scope_other_county_404_clinician_403_province_and_finance_officer_write(
    tree_app, tree_client, sandbox, world: World
):
    c, w = tree_client, world
    county = f"{API}/counties/{w.pc.county_id}"
    writes = [
        ("put", f"{county}/prices/2026/contract", {"method": "fixed", "price": 3}),
        ("put", f"{county}/bandings/2026", {"bands": BANDS}),
        ("put", f"{county}/schemes/2026", {"advance_share": "0.8", "gap_subsidy": False}),
        ("put", f"{API}/institutions/{w.institution_id}/assessments/2026", {"score": 80}),
        (
            "post",
            f"{API}/institutions/{w.institution_id}/line-items",
            {"period": "2026-01", "category": "policy", "amount": 1},
        ),
        ("put", f"{API}/institutions/{w.institution_id}/fee-income/2026-01", {"amount": 1}),
    ]
    reads = [
        f"{county}/prices/2026",
        f"{county}/bandings/2026",
        f"{county}/schemes/2026",
        f"{county}/assessments/2026",
        f"{API}/institutions/{w.institution_id}/line-items",
        f"{API}/institutions/{w.institution_id}/fee-income",
    ]
    before = _counts(tree_app)
    for who, status in ((w.pc.other_county_admin.headers, 404), (w.pc.clinician.headers, 403)):
        for method, url, body in writes:
            assert getattr(c, method)(url, json=body, headers=who).status_code == status, (url, status)
        for url in reads:
            assert c.get(url, headers=who).status_code == status, (url, status)
    # A county id that is not a county bureau, an institution that is not an institution: 404.
    assert c.get(f"{API}/counties/{w.institution_id}/prices/2026", headers=w.admin).status_code == 404
    assert (
        c.put(f"{API}/institutions/{w.pc.county_id}/assessments/2026", json={"score": 1}, headers=w.admin).status_code
        == 404
    )
    # The other county's institution is not this county's administrator's either.
    assert (
        c.put(
            f"{API}/institutions/{w.other_institution_id}/fee-income/2026-01", json={"amount": 1}, headers=w.admin
        ).status_code
        == 404
    )
    assert _counts(tree_app) == before

    # A finance officer granted on the institution itself reads its rows but does not set them (404, as for
    # anything outside one's county).
    inside = _grant(c, sandbox, w, "finance_officer", w.institution_id)
    for method, url, body in writes:
        assert getattr(c, method)(url, json=body, headers=inside).status_code == 404, url
    for url in reads[-2:]:
        assert c.get(url, headers=inside).status_code == 200, url
    assert _counts(tree_app) == before

    # The province's administrator covers the county; a finance officer of the county writes too.
    for method, url, body in writes[:3]:
        assert getattr(c, method)(url, json=body, headers=w.pc.province_admin.headers).status_code == 200, url
    finance = _grant(c, sandbox, w, "finance_officer", w.pc.county_id)
    for method, url, body in writes:
        reply = getattr(c, method)(url, json=body, headers=finance)
        assert reply.status_code in (200, 201), (url, reply.get_json())
    for url in reads:
        assert c.get(url, headers=finance).status_code == 200, url
    with tree_app.app_context():
        actors = (
            db.session()
            .scalars(
                sa.select(AuditRecord.actor).where(AuditRecord.action == "comp.banding.set").order_by(AuditRecord.id)
            )
            .all()
        )
    assert len(actors) == 2 and actors[1].endswith(f":{w.pc.clinician.userid}")
