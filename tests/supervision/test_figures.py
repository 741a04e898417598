"""The figures API on both backends, over the roll-up of the synthetic province of test_rollup: the numbers equal
the roll-up rows, targets (inherited down the tree) and verdicts, drill-down to children, completeness names the
missing units, trends, recomputation on request, scope, and bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from org_sync.models import OrgMember, OrgNode
from supervision import rollup
from supervision.models import IndicatorRollup, IndicatorTarget
from supervision.periods import parse
from supervision.values import ValueRow
from tests.conftest import run_jobs
from tests.supervision.test_rollup import PERIOD, province, store, stored_rollup  # noqa: F401  (province: a fixture)
from workbench import db
from workbench.auth.models import RoleGrant

API = "/api/supervision"
REPORTED = ("province_commission", "city_commission", "county_bureau", "medical_community_lead", "member_institution")


@pytest.fixture
def computed(tree_app, province, sup_world):  # noqa: F811
    """The roll-up of May, April and last May, and targets: T-RATE 50% at the province (inherited below),
    T-NONADD ≤ 40% at the province (the county's first lead hospital reports 30%), T-COUNTY 300‰ at the world's
    county, which reports 200‰."""
    with tree_app.app_context():
        session = db.session()
        county = province.indicators["T-COUNTY"]
        store(session, [ValueRow(county.id, sup_world.county_id, parse(PERIOD), Decimal(100), Decimal(500))], "county")
        lead = session.scalar(
            sa.select(OrgNode.id)
            .where(OrgNode.parent_id == sup_world.county_id, OrgNode.level == "medical_community_lead")
            .order_by(OrgNode.id)
        )
        nonadd = province.indicators["T-NONADD"]
        store(session, [ValueRow(nonadd.id, lead, parse(PERIOD), Decimal(30), Decimal(100))], "lead")
        for period in (PERIOD, "2026-04", "2025-05"):
            rollup.recompute(session, period)
        targets = [
            ("T-RATE", sup_world.province_id, Decimal(50)),
            ("T-NONADD", sup_world.province_id, Decimal(40)),
            ("T-COUNTY", sup_world.county_id, Decimal(300)),
        ]
        for code, node, value in targets:
            session.add(
                IndicatorTarget(
                    indicator_id=province.indicators[code].id, node_id=node, year=2026, value=value, set_by="test"
                )
            )
        session.commit()
    return province


def _get(client, person, path: str, **query):
    return client.get(f"{API}{path}", query_string=query, headers=person.headers)


def _by_code(items: list[dict]) -> dict[str, dict]:
    return {item["code"]: item for item in items if item["code"].startswith("T-")}


def _assert_equals_rollup(session, province, item: dict, node_id: int, period: str = PERIOD) -> None:  # noqa: F811
    row = session.get(IndicatorRollup, (province.indicators[item["code"]].id, node_id, period))
    if row is None:
        assert item["value"] is None and item["numerator"] is None and item["units_expected"] == 0
        return
    for key in ("value", "numerator", "denominator"):
        stored = getattr(row, key)
        assert item[key] == (None if stored is None else float(stored)), (item["code"], node_id, key)
    assert (item["units_expected"], item["units_reported"]) == (row.units_expected, row.units_reported)


def test_figures_equal_the_rollup_with_targets_and_drill_down(tree_app, tree_client, sup_world, computed):
    reply = _get(tree_client, sup_world.province_admin, "/figures", node_id=sup_world.county_id, period=PERIOD)
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert (body["period"], body["previous_period"], body["last_year_period"]) == (PERIOD, "2026-04", "2025-05")
    node = body["node"]
    assert node["node_id"] == sup_world.county_id and node["level"] == "county_bureau"
    items = _by_code(node["indicators"])
    # The active monthly ones; not the quarterly or the inactive one.
    assert set(items) == {"T-RATE", "T-COUNT", "T-QUAL", "T-COUNTY", "T-NONADD"}
    with tree_app.app_context():
        session = db.session()
        for item in items.values():
            _assert_equals_rollup(session, computed, item, sup_world.county_id)
            april = stored_rollup(session, computed.indicators[item["code"]].id, "2026-04").get(sup_world.county_id)
            assert item["previous"] == (float(april["value"]) if april and april["value"] is not None else None)
            assert item["last_year"] is None  # recomputed, but nothing was reported a year ago

        rate = items["T-RATE"]
        assert rate["target"] == 50.0 and rate["target_node_id"] == sup_world.province_id  # inherited
        assert rate["met"] is (rate["value"] >= 50)
        assert rate["previous"] == 100.0  # April: every institution 999 of 999
        county = items["T-COUNTY"]
        assert county["value"] == 200.0 and county["target"] == 300.0
        assert county["target_node_id"] == sup_world.county_id and county["met"] is False
        # Non-additive: no figure above the reporting units, so no verdict either.
        assert items["T-NONADD"]["value"] is None and items["T-NONADD"]["met"] is None
        assert items["T-COUNT"]["target"] is None and items["T-COUNT"]["met"] is None

        # Drill-down: every live child of the county that has figures, each equal to its roll-up rows.
        children = session.scalars(
            sa.select(OrgNode.id).where(
                OrgNode.parent_id == sup_world.county_id, OrgNode.level.in_(REPORTED), OrgNode.deleted_at.is_(None)
            )
        ).all()
        assert children and {child["node_id"] for child in body["children"]} == set(children)
        verdicts = []
        for child in body["children"]:
            child_items = _by_code(child["indicators"])
            assert "T-COUNTY" not in child_items  # a county-wide figure has no meaning at an institution
            for item in child_items.values():
                _assert_equals_rollup(session, computed, item, child["node_id"])
            nonadd = child_items["T-NONADD"]
            assert nonadd["target"] == 40.0
            assert nonadd["met"] is (None if nonadd["value"] is None else nonadd["value"] <= 40)  # direction down
            verdicts.append(nonadd["met"])
        assert True in verdicts  # the lead hospital's 30%


def test_a_dimension_filters_the_indicators(tree_client, sup_world, computed):
    reply = _get(
        tree_client,
        sup_world.province_admin,
        "/figures",
        node_id=sup_world.province_id,
        period=PERIOD,
        dimension="close_knit",
    )
    assert reply.status_code == 200
    body = reply.get_json()
    assert {item["dimension"] for item in body["node"]["indicators"]} == {"close_knit"}
    assert "T-QUAL" in _by_code(body["node"]["indicators"])
    assert "T-RATE" not in _by_code(body["node"]["indicators"])


def test_completeness_lists_the_units_that_have_not_reported(tree_app, tree_client, sup_world, computed):
    t = computed.t
    county_dept = t.county_of(next(d for d in t.depts if computed.node_of[d] == sup_world.county_id))
    units = t.institutions_under(county_dept)
    missing = {computed.node_of[d] for d in units if ("T-RATE", d) not in computed.values}
    assert missing, "the synthetic data leaves some units of the world's county out"
    reply = _get(
        tree_client, sup_world.county_admin, "/figures/T-RATE/completeness", node_id=sup_world.county_id, period=PERIOD
    )
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert {item["node_id"] for item in body["items"]} == missing
    assert body["total"] == len(missing) and body["units_expected"] == len(units)
    assert all(item["name"] and item["parent_name"] for item in body["items"])
    with tree_app.app_context():
        row = stored_rollup(db.session(), computed.indicators["T-RATE"].id)[sup_world.county_id]
    assert (body["units_expected"], body["units_reported"]) == (row["units_expected"], row["units_reported"])

    # Paged, in a stable order, covering each missing unit once.
    seen = []
    for page in range(1, len(missing) + 1):
        reply = _get(
            tree_client,
            sup_world.county_admin,
            "/figures/T-RATE/completeness",
            node_id=sup_world.county_id,
            period=PERIOD,
            page=page,
            per_page=1,
        )
        seen += [item["node_id"] for item in reply.get_json()["items"]]
    assert sorted(seen) == sorted(missing)


def test_trend_over_periods_for_a_node_and_its_children(tree_app, tree_client, sup_world, computed):
    reply = _get(
        tree_client,
        sup_world.province_admin,
        "/figures/T-RATE/trend",
        node_id=sup_world.county_id,
        **{"from": "2026-03", "to": PERIOD, "children": "1"},
    )
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert body["periods"] == ["2026-03", "2026-04", PERIOD]
    assert body["series"][0]["node_id"] == sup_world.county_id
    assert len(body["series"]) > 1  # the children follow
    indicator_id = computed.indicators["T-RATE"].id
    with tree_app.app_context():
        session = db.session()
        for series in body["series"]:
            march, april, may = series["points"]
            assert march["value"] is None and march["units_expected"] == 0  # never computed
            assert april["value"] == 100.0 and april["units_reported"] == april["units_expected"]
            row = session.get(IndicatorRollup, (indicator_id, series["node_id"], PERIOD))
            assert may["value"] == (None if row.value is None else float(row.value))
            assert may["target"] == 50.0

    alone = _get(
        tree_client,
        sup_world.province_admin,
        "/figures/T-RATE/trend",
        node_id=sup_world.county_id,
        **{"from": "2026-04", "to": "2026-04"},
    ).get_json()
    assert [series["node_id"] for series in alone["series"]] == [sup_world.county_id]


def test_recompute_on_request(tree_app, tree_client, sup_world, province):  # noqa: F811
    reply = tree_client.post(f"{API}/recompute", json={"period": PERIOD}, headers=sup_world.province_admin.headers)
    assert reply.status_code == 202, reply.get_json()
    assert reply.get_json() == {"period": PERIOD, "job_id": f"supervision-recompute-{PERIOD}"}
    run_jobs(tree_app)
    with tree_app.app_context():
        stored = stored_rollup(db.session(), province.indicators["T-RATE"].id)
    assert stored[sup_world.county_id]["units_expected"] > 0

    refused = tree_client.post(f"{API}/recompute", json={"period": PERIOD}, headers=sup_world.county_admin.headers)
    assert refused.status_code == 403
    for period, field in (("2026-5", "period"), ("2999-01", "period"), (None, "period")):
        reply = tree_client.post(f"{API}/recompute", json={"period": period}, headers=sup_world.province_admin.headers)
        assert reply.status_code == 422 and reply.get_json()["error"]["field"] == field, (period, reply.get_json())


def test_scope(tree_app, tree_client, sup_world, computed, tree):
    t = computed.t
    other_county = next(computed.node_of[c] for c in t.counties() if computed.node_of[c] != sup_world.county_id)
    own = _get(tree_client, sup_world.county_admin, "/figures", node_id=sup_world.county_id, period=PERIOD)
    assert own.status_code == 200
    # Another county is outside the county admin's scope: the same 404 as a node that does not exist.
    for path in ("/figures", "/figures/T-RATE/completeness"):
        reply = _get(tree_client, sup_world.county_admin, path, node_id=other_county, period=PERIOD)
        assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "node_id"
    reply = _get(
        tree_client,
        sup_world.county_admin,
        "/figures/T-RATE/trend",
        node_id=other_county,
        **{"from": PERIOD, "to": PERIOD},
    )
    assert reply.status_code == 404
    # A clinician has no supervision role.
    reply = _get(tree_client, sup_world.clinician, "/figures", node_id=sup_world.county_id, period=PERIOD)
    assert reply.status_code == 403
    assert (
        tree_client.get(f"{API}/figures", query_string={"node_id": sup_world.county_id, "period": PERIOD}).status_code
        == 401
    )

    # As their institution's administrator, the same person reads that institution, not the county.
    user = next(u for u in t.users if u["userid"] == sup_world.clinician.userid)
    institution = computed.node_of[t.unit_of(user["dept_id_list"][0])]
    with tree_app.app_context():
        session = db.session()
        member = session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == user["userid"]))
        session.add(RoleGrant(member_id=member, role="institution_admin", node_id=institution, granted_by="test"))
        session.commit()
    reply = _get(tree_client, sup_world.clinician, "/figures", node_id=institution, period=PERIOD)
    assert reply.status_code == 200 and reply.get_json()["node"]["node_id"] == institution
    reply = _get(tree_client, sup_world.clinician, "/figures", node_id=sup_world.county_id, period=PERIOD)
    assert reply.status_code == 404


def test_bad_input_is_a_4xx_naming_the_field(tree_app, tree_client, sup_world, computed):
    admin = sup_world.province_admin
    county = sup_world.county_id
    with tree_app.app_context():
        department = db.session().scalar(
            sa.select(OrgNode.id).where(OrgNode.level == "internal_department").order_by(OrgNode.id)
        )
    cases = [
        ("/figures", {"node_id": county, "period": "2026-13"}, 422, "period"),
        ("/figures", {"node_id": county}, 422, "period"),
        ("/figures", {"node_id": "abc", "period": PERIOD}, 422, "node_id"),
        ("/figures", {"node_id": 10**9, "period": PERIOD}, 404, "node_id"),
        ("/figures", {"node_id": department, "period": PERIOD}, 422, "node_id"),
        ("/figures", {"node_id": county, "period": PERIOD, "dimension": "nope"}, 422, "dimension"),
        ("/figures/T-RATE/trend", {"node_id": county, "from": PERIOD, "to": "2026-01"}, 422, "from"),
        ("/figures/T-RATE/trend", {"node_id": county, "from": "2026-Q1", "to": PERIOD}, 422, "from"),
        ("/figures/T-RATE/trend", {"node_id": county, "from": "2000-01", "to": PERIOD}, 422, "to"),
        ("/figures/T-RATE/trend", {"node_id": county, "to": PERIOD}, 422, "from"),
        ("/figures/NOPE/trend", {"node_id": county, "from": PERIOD, "to": PERIOD}, 404, "code"),
        ("/figures/T-RATE/completeness", {"node_id": county, "period": "2026"}, 422, "period"),
        ("/figures/T-RATE/completeness", {"node_id": county, "period": PERIOD, "page": 0}, 422, "page"),
        ("/figures/T-RATE/completeness", {"node_id": county, "period": PERIOD, "per_page": 10**6}, 422, "per_page"),
        ("/figures/NOPE/completeness", {"node_id": county, "period": PERIOD}, 404, "code"),
    ]
    for path, query, status, field in cases:
        reply = _get(tree_client, admin, path, **query)
        assert reply.status_code == status, (path, query, reply.get_json())
        assert reply.get_json()["error"]["field"] == field, (path, query, reply.get_json())
    # A county-wide indicator has no trend at an institution.
    reply = _get(
        tree_client,
        admin,
        "/figures/T-COUNTY/trend",
        node_id=sup_world.institution_ids[0],
        **{"from": PERIOD, "to": PERIOD},
    )
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "node_id"
