"""The indicator catalog (指标库) and targets over HTTP on both backends: the seeded national set and automatic
indicators, versioned edits by province administrators only, field-named validation, targets inheriting down
the tree, and the seed migration's downgrade."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from supervision import catalog
from supervision.models import Indicator, IndicatorVersion
from tests.support.auth import bearer, sign_in
from tests.support.tree import node_id
from workbench import db
from workbench.audit import AuditRecord

API = "/api/supervision/indicators"

AUTOMATIC = {
    "FD-COVERAGE": "family_doctor.coverage",
    "FD-KEY-COVERAGE": "family_doctor.key_population_coverage",
    "FD-RENEWAL": "family_doctor.renewal_rate",
    "FD-OVERDUE-FOLLOW-UPS": "family_doctor.overdue_follow_ups",
    "REF-UP": "referral.up_out",
    "REF-DOWN": "referral.down_out",
    "REF-TIMELY-ACCEPT": "referral.timely_acceptance",
    "REF-ARRIVAL": "referral.arrival",
    "REF-CLOSURE": "referral.closure",
    "REF-DOWN-FOLLOW-UP": "referral.down_follow_up",
}


def audit_rows(app, action: str) -> list[AuditRecord]:
    with app.app_context():
        return db.session().scalars(sa.select(AuditRecord).where(AuditRecord.action == action)).all()


def new_indicator(**over) -> dict:
    return {
        "code": "ZJ-TEST-01",
        "name": "县域远程会诊例数占比",
        "dimension": "examination",
        "kind": "rate",
        "numerator_definition": "远程会诊例数",
        "denominator_definition": "会诊总例数",
        "unit": "%",
        "scale": 100,
        "direction": "up",
        "period": "month",
        "collection": "manual",
        "source": "机构填报",
        **over,
    }


def test_the_seed_holds_the_national_set_and_the_automatic_indicators(tree_client, sup_world):
    reply = tree_client.get(API, headers=sup_world.clinician.headers)
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert body["can_edit"] is False
    by_code = {item["code"]: item for item in body["items"]}

    national = [item for item in body["items"] if item["national_no"] is not None]
    assert [(item["code"], item["national_no"]) for item in national] == [(f"NCM-{n:02d}", n) for n in range(1, 15)], (
        "national indicators come first, by number"
    )
    for code in ("NCM-01", "NCM-02", "NCM-03"):
        item = by_code[code]
        assert (item["kind"], item["dimension"], item["collection"], item["reporting_level"]) == (
            "qualitative",
            "close_knit",
            "manual",
            "county",
        )
    assert by_code["NCM-14"]["additive"] is False and by_code["NCM-14"]["reporting_level"] == "county"
    assert {by_code[f"NCM-{n:02d}"]["reporting_level"] for n in (8, 9, 10, 11)} == {"county"}
    assert {by_code[f"NCM-{n:02d}"]["reporting_level"] for n in (7, 12)} == {"institution"}
    assert "UNCONFIRMED" in by_code["NCM-07"]["note"] and "门急诊占比" in by_code["NCM-07"]["note"]
    assert "县域内住院人次占比" in by_code["NCM-11"]["note"]

    automatic = {item["code"]: item["automatic_source"] for item in body["items"] if item["automatic_source"]}
    assert automatic == AUTOMATIC
    assert (
        by_code["FD-OVERDUE-FOLLOW-UPS"]["kind"] == "count" and by_code["FD-OVERDUE-FOLLOW-UPS"]["direction"] == "down"
    )
    assert by_code["REF-DOWN"]["direction"] == "up" and by_code["REF-UP"]["period"] == "month"
    for code in ("REF-TIMELY-ACCEPT", "REF-ARRIVAL", "REF-CLOSURE", "REF-DOWN-FOLLOW-UP", "FD-COVERAGE"):
        assert (by_code[code]["kind"], by_code[code]["unit"], by_code[code]["collection"]) == ("rate", "%", "automatic")

    # Every operational dimension of the brief is covered, and every seeded row obeys the catalog's own rules
    # (an operator re-saving a seeded indicator unchanged must not be refused).
    assert {item["dimension"] for item in body["items"]} >= {
        "resources", "outpatient", "examination", "laboratory", "inpatient", "surgery", "chronic_disease",
        "maternal_child", "vaccination", "family_doctor", "referral", "revenue",
    }  # fmt: skip
    assert len(body["items"]) >= 60
    for item in body["items"]:
        catalog.check_definition({field: item[field] for field in catalog.FIELDS})

    # Filters and lookup.
    only = tree_client.get(f"{API}?kind=qualitative", headers=sup_world.clinician.headers).get_json()
    assert [item["code"] for item in only["items"]] == ["NCM-01", "NCM-02", "NCM-03"]
    referral = tree_client.get(f"{API}?dimension=referral&collection=automatic", headers=sup_world.clinician.headers)
    assert {item["code"] for item in referral.get_json()["items"]} == {c for c in AUTOMATIC if c.startswith("REF-")}
    found = tree_client.get(API, query_string={"q": "续约"}, headers=sup_world.clinician.headers).get_json()
    assert [item["code"] for item in found["items"]] == ["FD-RENEWAL"]
    found = tree_client.get(API, query_string={"q": "ip-bed"}, headers=sup_world.clinician.headers).get_json()
    assert {item["code"] for item in found["items"]} == {"IP-BED-OCCUPANCY", "IP-BED-TURNOVER"}
    one = tree_client.get(f"{API}/SURG-GRADE34-SHARE", headers=sup_world.clinician.headers)
    assert one.status_code == 200 and one.get_json()["denominator_definition"] == "出院患者手术台次"
    missing = tree_client.get(f"{API}/NO-SUCH", headers=sup_world.clinician.headers)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert tree_client.get(API).status_code == 401


def test_an_edit_bumps_the_version_keeps_the_old_definition_and_is_audited(tree_app, tree_client, sup_world):
    admin = sup_world.province_admin.headers
    assert tree_client.get(API, headers=admin).get_json()["can_edit"] is True
    before = tree_client.get(f"{API}/NCM-07", headers=admin).get_json()
    assert before["version"] == 1

    reply = tree_client.patch(
        f"{API}/NCM-07",
        json={"denominator_definition": "县域内全部医疗卫生机构诊疗人次数（含民营）", "reason": "按省口径纳入民营机构"},
        headers=admin,
    )
    assert reply.status_code == 200, reply.get_json()
    after = reply.get_json()
    assert after["version"] == 2 and after["denominator_definition"].endswith("（含民营）")
    assert after["updated_by"].endswith(sup_world.province_admin.userid)

    history = tree_client.get(f"{API}/NCM-07/versions", headers=sup_world.clinician.headers).get_json()
    assert history["current"]["version"] == 2
    [old] = history["items"]
    assert old["version"] == 1 and old["reason"] == "按省口径纳入民营机构"
    assert old["definition"]["denominator_definition"] == before["denominator_definition"]
    assert old["definition"]["name"] == before["name"] and old["definition"]["updated_by"] == "migration"
    assert old["changed_by"].endswith(sup_world.province_admin.userid)
    [record] = audit_rows(tree_app, "supervision.indicator.edit")
    assert record.resource_id == "NCM-07" and record.detail == {"version": 2, "fields": ["denominator_definition"]}

    # Saving the same definition again changes nothing and keeps no version.
    same = tree_client.patch(f"{API}/NCM-07", json={"name": before["name"], "reason": "核对"}, headers=admin).get_json()
    assert same["version"] == 2

    # Deactivating is an edit of `active`; the list can show only inactive ones.
    off = tree_client.patch(f"{API}/NCM-07", json={"active": False, "reason": "暂停监测"}, headers=admin)
    assert off.status_code == 200 and off.get_json()["version"] == 3 and off.get_json()["active"] is False
    inactive = tree_client.get(f"{API}?active=false", headers=admin).get_json()["items"]
    assert [item["code"] for item in inactive] == ["NCM-07"]
    on = tree_client.patch(f"{API}/NCM-07", json={"active": True, "reason": "恢复监测"}, headers=admin).get_json()
    assert on["version"] == 4 and on["active"] is True
    with tree_app.app_context():
        versions = db.session().scalars(sa.select(IndicatorVersion.version).order_by(IndicatorVersion.version)).all()
    assert versions == [1, 2, 3]

    # A province's own indicator.
    created = tree_client.post(API, json=new_indicator(), headers=admin)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["version"] == 1 and created.get_json()["bounded"] is True
    assert [r.resource_id for r in audit_rows(tree_app, "supervision.indicator.create")] == ["ZJ-TEST-01"]
    again = tree_client.post(API, json=new_indicator(), headers=admin)
    assert again.status_code == 409 and again.get_json()["error"]["field"] == "code"
    count = tree_client.post(
        API,
        json=new_indicator(code="ZJ-TEST-02", kind="count", unit="例", scale=1, denominator_definition=None),
        headers=admin,
    )
    assert count.status_code == 201 and count.get_json()["bounded"] is False, count.get_json()


def test_an_edit_of_how_it_is_computed_rolls_its_periods_up_again(tree_app, tree_client, sup_world):
    from decimal import Decimal

    from supervision import periods, rollup, values
    from supervision.models import IndicatorRollup, IndicatorSubmission
    from tests.conftest import run_jobs

    unit = sup_world.institution_ids[0]
    with tree_app.app_context():
        session = db.session()
        indicator = session.scalar(sa.select(Indicator).where(Indicator.code == "NCM-07"))
        submission = IndicatorSubmission(kind="feed", source="test", batch_key="b1", submitted_by="test")
        row = values.ValueRow(indicator.id, unit, periods.parse("2026-01"), Decimal(30), Decimal(60))
        values.record(session, submission, [row])
        session.commit()
        indicator_id = indicator.id
        rollup.recompute(session, "2026-01")

    def unit_value() -> Decimal:
        with tree_app.app_context():
            return db.session().scalar(
                sa.select(IndicatorRollup.value).where(
                    IndicatorRollup.indicator_id == indicator_id,
                    IndicatorRollup.node_id == unit,
                    IndicatorRollup.period == "2026-01",
                )
            )

    assert unit_value() == Decimal(50)
    reply = tree_client.patch(
        f"{API}/NCM-07",
        json={
            "kind": "count",
            "scale": 1,
            "unit": "人次",
            "denominator_definition": None,
            "bounded": False,
            "reason": "改为只看基层诊疗人次",
        },
        headers=sup_world.province_admin.headers,
    )
    assert reply.status_code == 200, reply.get_json()
    run_jobs(tree_app)
    assert unit_value() == Decimal(30)  # the numerator alone, as a count


def test_only_province_administrators_edit_the_catalog(tree_client, sup_world):
    for person in (sup_world.county_admin, sup_world.clinician):
        patch = tree_client.patch(f"{API}/NCM-07", json={"name": "改名", "reason": "试"}, headers=person.headers)
        assert patch.status_code == 403, patch.get_json()
        post = tree_client.post(API, json=new_indicator(), headers=person.headers)
        assert post.status_code == 403, post.get_json()
        assert tree_client.get(f"{API}/NCM-07", headers=person.headers).get_json()["version"] == 1
    # The catalog's rights come from the province commission, not from any admin role.
    assert tree_client.get(API, headers=sup_world.county_admin.headers).get_json()["can_edit"] is False
    unknown = tree_client.patch(
        f"{API}/NO-SUCH", json={"name": "x", "reason": "x"}, headers=sup_world.province_admin.headers
    )
    assert unknown.status_code == 404


CREATE_ERRORS = [
    ({"code": "zj-lower"}, 422, "code"),
    ({"dimension": "weather"}, 422, "dimension"),
    ({"scale": 50}, 422, "scale"),
    ({"scale": "100"}, 422, "scale"),
    ({"unit": "%", "scale": 1000}, 422, "scale"),
    ({"unit": "例", "scale": 100}, 422, "unit"),
    ({"denominator_definition": None}, 422, "denominator_definition"),
    ({"denominator_definition": "   "}, 422, "denominator_definition"),
    ({"kind": "count", "unit": "例", "scale": 1, "denominator_definition": None, "bounded": True}, 422, "bounded"),
    ({"kind": "count", "unit": "例", "scale": 1, "bounded": False}, 422, "denominator_definition"),
    ({"kind": "count", "unit": "人/万人", "scale": 10000, "denominator_definition": None}, 422, "scale"),
    ({"kind": "qualitative", "collection": "automatic"}, 422, "collection"),
    ({"automatic_source": "family_doctor.coverage"}, 422, "automatic_source"),  # collection is manual
    ({"collection": "automatic", "automatic_source": "family_doctor.nothing"}, 422, "automatic_source"),
    ({"collection": "automatic", "automatic_source": "Coverage"}, 422, "automatic_source"),
    ({"national_no": 7}, 409, "national_no"),
    ({"national_no": 0}, 422, "national_no"),
    ({"name": ""}, 422, "name"),
    ({"period": "week"}, 422, "period"),
    ({"direction": "sideways"}, 422, "direction"),
    ({"reporting_level": "village"}, 422, "reporting_level"),
    ({"bounded": "perhaps"}, 422, "bounded"),
]


def test_bad_input_is_refused_naming_the_field(tree_client, sup_world):
    admin = sup_world.province_admin.headers
    for change, status, field in CREATE_ERRORS:
        reply = tree_client.post(API, json=new_indicator(**change), headers=admin)
        body = reply.get_json()
        assert (reply.status_code, body["error"]["field"]) == (status, field), (change, body)
        assert body["error"]["message"]
    missing = new_indicator()
    del missing["name"]
    reply = tree_client.post(API, json=missing, headers=admin)
    assert (reply.status_code, reply.get_json()["error"]["field"]) == (422, "name")

    # A PATCH is judged on the whole definition it would leave.
    for change, field in [
        ({"name": "x"}, "reason"),
        ({"name": "x", "reason": "  "}, "reason"),
        ({"kind": "count", "reason": "改为计数"}, "denominator_definition"),
        ({"unit": "人", "reason": "改单位"}, "unit"),
        ({"code": "NCM-99", "reason": "改代码"}, "code"),
        ({"scale": None, "reason": "清空"}, "scale"),
        ({"collection": "automatic", "automatic_source": "referral.nothing", "reason": "x"}, "automatic_source"),
    ]:
        reply = tree_client.patch(f"{API}/NCM-07", json=change, headers=admin)
        assert (reply.status_code, reply.get_json()["error"]["field"]) == (422, field), (change, reply.get_json())
    assert tree_client.get(f"{API}/NCM-07", headers=admin).get_json()["version"] == 1

    # Targets.
    county, institution = sup_world.county_id, sup_world.institution_ids[0]
    for body, status, field in [
        ({"node_id": county, "year": 2026, "value": -1}, 422, "value"),
        ({"node_id": county, "year": 2026, "value": 120}, 422, "value"),
        ({"node_id": county, "year": 2026, "value": "abc"}, 422, "value"),
        ({"node_id": county, "year": 2026, "value": "NaN"}, 422, "value"),
        ({"node_id": county, "year": 1999, "value": 60}, 422, "year"),
        ({"node_id": county, "value": 60}, 422, "year"),
        ({"node_id": institution, "year": 2026, "value": 60}, 422, "node_id"),
        ({"node_id": 10**9, "year": 2026, "value": 60}, 404, "node_id"),
        ({"node_id": "x", "year": 2026, "value": 60}, 422, "node_id"),
    ]:
        reply = tree_client.put(f"{API}/NCM-07/targets", json=body, headers=admin)
        assert (reply.status_code, reply.get_json()["error"]["field"]) == (status, field), (body, reply.get_json())
    # Above 100 is fine where the unit is not a percentage.
    cost = tree_client.put(
        f"{API}/NCM-10/targets", json={"node_id": county, "year": 2026, "value": 8500.5}, headers=admin
    )
    assert cost.status_code == 200 and cost.get_json()["value"] == 8500.5
    unknown = tree_client.put(
        f"{API}/NO-SUCH/targets", json={"node_id": county, "year": 2026, "value": 1}, headers=admin
    )
    assert unknown.status_code == 404


def test_targets_inherit_down_the_tree(tree_app, tree_client, sandbox, sup_world):
    t = sup_world.tree
    admin, county_admin = sup_world.province_admin.headers, sup_world.county_admin.headers
    county = sup_world.county_id
    institution = sup_world.institution_ids[0]
    other_county_dept = next(c for c in t.counties() if node_id(tree_app, c) != county)
    other_county = node_id(tree_app, other_county_dept)
    other_institution = node_id(tree_app, t.institutions_under(other_county_dept)[0])
    city_dept = t.ancestors(other_county_dept)[1]
    assert t.level(city_dept) == "city_commission"
    city = node_id(tree_app, city_dept)
    city_admin = bearer(sign_in(tree_client, sandbox, t.member_at("city_commission")["userid"]))

    def put(headers, node, value, year=2026):
        return tree_client.put(
            f"{API}/NCM-07/targets", json={"node_id": node, "year": year, "value": value}, headers=headers
        )

    def effective(node, year=2026):
        reply = tree_client.get(
            f"{API}/NCM-07/targets", query_string={"node_id": node, "year": year}, headers=sup_world.clinician.headers
        )
        assert reply.status_code == 200, reply.get_json()
        found = reply.get_json()["effective"]
        return None if found is None else (found["value"], found["set_on_node_id"])

    assert effective(institution) is None
    assert put(admin, sup_world.province_id, 65).status_code == 200
    reply = put(county_admin, county, 70)
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["set_by"].endswith(sup_world.county_admin.userid)

    assert effective(institution) == (70, county)  # an institution takes its county's
    assert effective(county) == (70, county)
    assert effective(other_county) == (65, sup_world.province_id)  # another county the province's
    assert effective(other_institution) == (65, sup_world.province_id)
    assert effective(institution, year=2027) is None  # targets are per year

    # A county administrator cannot set the province's target, nor another county's; nothing changes.
    for node in (sup_world.province_id, other_county, city):
        refused = put(county_admin, node, 50)
        assert refused.status_code == 403 and refused.get_json()["error"]["field"] == "node_id", refused.get_json()
    assert effective(other_county) == (65, sup_world.province_id)

    # A city sets a stricter target for its counties; it cannot change the province's.
    assert put(city_admin, city, 68).status_code == 200
    assert put(city_admin, sup_world.province_id, 50).status_code == 403
    assert effective(other_institution) == (68, city)
    assert effective(institution) == (70, county)

    # Replacing keeps one row; deleting makes the county inherit again.
    assert put(county_admin, county, 72).get_json()["value"] == 72
    listed = tree_client.get(f"{API}/NCM-07/targets?year=2026", headers=admin).get_json()["items"]
    assert [(item["node_id"], item["value"]) for item in listed] == [
        (sup_world.province_id, 65),
        (city, 68),
        (county, 72),
    ]
    gone = tree_client.delete(
        f"{API}/NCM-07/targets", query_string={"node_id": county, "year": 2026}, headers=county_admin
    )
    assert gone.status_code == 204
    assert effective(institution) == (68, city)
    again = tree_client.delete(
        f"{API}/NCM-07/targets", query_string={"node_id": county, "year": 2026}, headers=county_admin
    )
    assert again.status_code == 404
    refused = tree_client.delete(
        f"{API}/NCM-07/targets", query_string={"node_id": city, "year": 2026}, headers=county_admin
    )
    assert refused.status_code == 403
    assert [r.node_id for r in audit_rows(tree_app, "supervision.target.set")] == [
        sup_world.province_id, county, city, county,
    ]  # fmt: skip
    assert [r.node_id for r in audit_rows(tree_app, "supervision.target.delete")] == [county]

    # The function the figures and alerts use: every node of the province in the same two queries as one node.
    with tree_app.app_context():
        session = db.session()
        ncm07, ncm11 = session.scalars(
            sa.select(Indicator.id).where(Indicator.code.in_(["NCM-07", "NCM-11"])).order_by(Indicator.code)
        ).all()
        from org_sync.models import OrgNode

        every = session.scalars(sa.select(OrgNode.id)).all()
        statements: list[str] = []

        def count(*args) -> None:
            statements.append(args[2])

        engine = db.get_db().engine
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            one = catalog.effective_targets(session, [ncm07, ncm11], [institution], 2026)
            queries_for_one = len(statements)
            statements.clear()
            everything = catalog.effective_targets(session, [ncm07, ncm11], every, 2026)
            queries_for_all = len(statements)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
    assert queries_for_one == queries_for_all == 2
    assert one == {(ncm07, institution): catalog.EffectiveTarget(68, city)}
    assert everything[(ncm07, other_institution)].node_id_set_on == city
    assert everything[(ncm07, sup_world.province_id)].value == 65
    assert not any(key[0] == ncm11 for key in everything)  # no target anywhere: absent
    assert len([key for key in everything if key[0] == ncm07]) == len(every)


def test_the_seed_migration_goes_down_and_up_and_refuses_to_drop_edit_history(app_env):
    from alembic import command

    from config import load_settings
    from tests.conftest import migrate
    from workbench.cli import alembic_config

    url = load_settings(app_env, read_dotenv=False).database_url
    migrate(url)
    engine = sa.create_engine(url)

    def seeded() -> int:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT count(*) FROM indicators"))

    total = seeded()
    assert total >= 60
    command.downgrade(alembic_config(url), "0012")
    assert seeded() == 0
    command.upgrade(alembic_config(url), "head")
    assert seeded() == total

    # A definition version (an operator's edit history) points at a seeded indicator: the downgrade refuses.
    with engine.begin() as conn:
        indicator = conn.scalar(sa.text("SELECT id FROM indicators WHERE code = 'NCM-07'"))
        conn.execute(
            sa.text(
                "INSERT INTO indicator_versions (indicator_id, version, definition, valid_until, changed_by, reason) "
                "VALUES (:i, 1, '{}', CURRENT_TIMESTAMP, 'test', 'test')"
            ),
            {"i": indicator},
        )
    with pytest.raises(RuntimeError, match="indicator_versions=1"):
        command.downgrade(alembic_config(url), "0012")
    assert seeded() == total
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM indicator_versions"))
    command.downgrade(alembic_config(url), "0012")
    assert seeded() == 0
    engine.dispose()
