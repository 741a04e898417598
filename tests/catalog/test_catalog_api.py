"""The catalog over HTTP, signed in as members of the sandbox's province: the workbench's app list across levels
and layers, and administrators registering, changing, withdrawing and restoring apps within their subtree."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from config.settings import DEV_ADMIN_TOKEN
from mini_apps.catalog import service
from org_sync.models import OrgMember
from tests.support.auth import bearer, sign_in
from tests.support.tree import Tree, node_id
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.principal import load_principal

OPERATOR = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
BUILT_IN = {"referral", "precision_control", "compensation", "family_doctor", "supervision", "supervision_reports"}


@pytest.fixture
def t(tree) -> Tree:
    return Tree(tree)


@pytest.fixture
def client(tree_client):
    return tree_client


def headers_for(client, sandbox, user: dict) -> dict[str, str]:
    return bearer(sign_in(client, sandbox, user["userid"]))


def workbench(client, headers) -> dict[str, list[str]]:
    reply = client.get("/api/workbench/apps", headers=headers)
    assert reply.status_code == 200, reply.get_json()
    return {group["name"]: [app["code"] for app in group["apps"]] for group in reply.get_json()["groups"]}


def codes(client, headers) -> set[str]:
    return {code for apps in workbench(client, headers).values() for code in apps}


def audit_rows(app, action: str) -> list[AuditRecord]:
    with app.app_context():
        return db.session().scalars(sa.select(AuditRecord).where(AuditRecord.action == action)).all()


def regional(code: str, owner: int, **over) -> dict:
    return {
        "code": code,
        "name": "县域心电诊断",
        "icon": "https://apps.example.com/ecg.png",
        "entry_url": "https://apps.example.com/ecg/",
        "group": "clinical",
        "owner_node_id": owner,
        **over,
    }


# -- the workbench ----------------------------------------------------------------------------------------------


def test_built_in_apps_follow_levels_and_layers(client, sandbox, t):
    county_admin = t.member_at("county_bureau")
    city_member = t.member_at("city_commission")
    doctor = t.member_at("internal_department", "member_institution")  # a department of a township clinic
    province_staff = t.member_at("internal_department", "province_commission")  # a 处室 of the commission

    administrators = {"precision_control", "compensation", "family_doctor", "supervision", "supervision_reports"}
    assert codes(client, headers_for(client, sandbox, county_admin)) == administrators
    assert codes(client, headers_for(client, sandbox, city_member)) == administrators
    assert codes(client, headers_for(client, sandbox, province_staff)) == administrators
    assert workbench(client, headers_for(client, sandbox, doctor)) == {
        "医疗临床": ["referral"],
        "公共卫生": ["family_doctor", "precision_control"],
    }
    # The operator sees every active app; sections come in the workbench's order.
    reply = client.get("/api/workbench/apps", headers=OPERATOR).get_json()
    assert [g["name"] for g in reply["groups"]] == ["行政办公", "医疗临床", "公共卫生", "监管考核"]
    assert reply["groups"][1]["apps"][0] == {
        "code": "referral",
        "name": "预约转诊 · 双向转诊",
        "icon": "referral",
        "entry_url": "/h5/apps/referral/",
        "description": reply["groups"][1]["apps"][0]["description"],
    }
    assert client.get("/api/workbench/apps").status_code == 401


def test_an_institution_leader_sees_compensation_a_clinician_of_a_lead_hospital_does_not(client, sandbox, t):
    leaders = [
        u
        for u in t.users
        if any(
            x["leader"] and t.level(x["dept_id"]) in ("member_institution", "medical_community_lead")
            for x in u.get("leader_in_dept", [])
        )
    ]
    assert codes(client, headers_for(client, sandbox, leaders[0])) == BUILT_IN
    clinician = t.member_at("internal_department", "medical_community_lead")
    assert codes(client, headers_for(client, sandbox, clinician)) == {"referral", "precision_control", "family_doctor"}


def test_a_regional_app_reaches_its_county_only_and_withdrawn_apps_disappear(tree_app, client, sandbox, t):
    county, other = t.counties()[:2]
    admin_user = t.member_at("county_bureau", county=county)
    admin = headers_for(client, sandbox, admin_user)
    doctor = headers_for(client, sandbox, t.member_at("internal_department", "member_institution", county=county))
    far_doctor = headers_for(client, sandbox, t.member_at("internal_department", "member_institution", county=other))

    body = regional("ecg", node_id(tree_app, county), visibility={"levels": ["member_institution"]})
    created = client.post("/api/catalog/apps", json=body, headers=admin)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["owner_kind"] == "regional" and created.get_json()["can_manage"]

    assert "ecg" in codes(client, doctor)  # level matched through the doctor's unit (a member institution)
    assert "ecg" not in codes(client, far_doctor)
    assert "ecg" not in codes(client, admin)  # a bureau is not a member institution

    assert client.post("/api/catalog/apps/ecg/withdraw", headers=admin).status_code == 200
    assert "ecg" not in codes(client, doctor)
    again = client.post("/api/catalog/apps/ecg/withdraw", headers=admin)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "invalid_state"
    listed = {a["code"]: a for a in client.get("/api/catalog/apps", headers=admin).get_json()["items"]}
    assert listed["ecg"]["state"] == "withdrawn" and listed["ecg"]["withdrawn_by"].endswith(":" + admin_user["userid"])
    assert listed["ecg"]["withdrawn_at"]

    restored = client.post("/api/catalog/apps/ecg/restore", headers=admin)
    assert restored.status_code == 200 and restored.get_json()["withdrawn_at"] is None
    assert "ecg" in codes(client, doctor)

    # A province app withdrawn by the operator disappears for everyone.
    assert client.post("/api/catalog/apps/precision_control/withdraw", headers=OPERATOR).status_code == 200
    assert "precision_control" not in codes(client, doctor)
    assert "precision_control" not in codes(client, OPERATOR)

    for action in ("catalog.app.create", "catalog.app.withdraw", "catalog.app.restore"):
        rows = [r for r in audit_rows(tree_app, action) if r.resource_id == "ecg"]
        assert len(rows) == 1 and rows[0].outcome == "ok", action
        assert rows[0].node_id == node_id(tree_app, county)
        assert rows[0].resource_type == "catalog_app"
    assert [r.actor for r in audit_rows(tree_app, "catalog.app.withdraw") if r.resource_id == "precision_control"] == [
        "operator"
    ]


def test_visibility_subtrees_narrow_an_app_to_one_institution(tree_app, client, sandbox, t):
    county = t.counties()[0]
    institution = t.institution_in(county)
    inside = next(
        u for u in t.users if u["dept_id_list"] and all(institution in t.ancestors(d) for d in u["dept_id_list"])
    )
    elsewhere = next(
        u
        for u in t.users
        if u["dept_id_list"]
        and all(t.county_of(d) == county and institution not in t.ancestors(d) for d in u["dept_id_list"])
        and all(t.level(t.unit_of(d)) == "member_institution" for d in u["dept_id_list"])
    )
    admin = headers_for(client, sandbox, t.member_at("county_bureau", county=county))
    body = regional("pilot", node_id(tree_app, county), visibility={"subtrees": [node_id(tree_app, institution)]})
    assert client.post("/api/catalog/apps", json=body, headers=admin).status_code == 201
    assert "pilot" in codes(client, headers_for(client, sandbox, inside))
    assert "pilot" not in codes(client, headers_for(client, sandbox, elsewhere))


# -- administration ---------------------------------------------------------------------------------------------


def test_an_admin_cannot_reach_outside_their_subtree(tree_app, client, sandbox, t):
    county, other = t.counties()[:2]
    admin = headers_for(client, sandbox, t.member_at("county_bureau", county=county))
    other_admin = headers_for(client, sandbox, t.member_at("county_bureau", county=other))

    # Owner or visible subtree in another county: 404, like a node that does not exist; the attempt is audited.
    reply = client.post("/api/catalog/apps", json=regional("x1", node_id(tree_app, other)), headers=admin)
    assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "owner_node_id"
    body = regional("x2", node_id(tree_app, county), visibility={"subtrees": [node_id(tree_app, other)]})
    reply = client.post("/api/catalog/apps", json=body, headers=admin)
    assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "visibility.subtrees"
    reply = client.post("/api/catalog/apps", json=regional("x3", 99999999), headers=admin)
    assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "owner_node_id"
    denied = [r for r in audit_rows(tree_app, "catalog.app.create") if r.outcome == "denied"]
    assert {r.resource_id for r in denied} == {"x1", "x2"}

    # Another county's app is invisible to this admin: not listed, 404 to read, change or withdraw.
    assert client.post("/api/catalog/apps", json=regional("theirs", node_id(tree_app, other)), headers=other_admin)
    listed = {a["code"] for a in client.get("/api/catalog/apps", headers=admin).get_json()["items"]}
    assert "theirs" not in listed and listed >= BUILT_IN
    assert client.get("/api/catalog/apps/theirs", headers=admin).status_code == 404
    assert client.patch("/api/catalog/apps/theirs", json={"name": "改"}, headers=admin).status_code == 404
    assert client.post("/api/catalog/apps/theirs/withdraw", headers=admin).status_code == 404
    assert client.get("/api/catalog/apps/theirs", headers=other_admin).status_code == 200
    assert client.get("/api/catalog/apps/nothing-here", headers=admin).status_code == 404

    # Clinicians are not administrators at all.
    doctor = headers_for(client, sandbox, t.member_at("internal_department", "member_institution"))
    assert client.get("/api/catalog/apps", headers=doctor).status_code == 403


def test_only_province_admins_change_province_apps(tree_app, client, sandbox, t):
    county_admin = headers_for(client, sandbox, t.member_at("county_bureau"))
    city_admin = headers_for(client, sandbox, t.member_at("city_commission"))
    province_admin = headers_for(client, sandbox, t.member_at("province_commission"))

    listed = {a["code"]: a for a in client.get("/api/catalog/apps", headers=county_admin).get_json()["items"]}
    assert listed["referral"]["owner_kind"] == "province" and listed["referral"]["can_manage"] is False
    for headers in (county_admin, city_admin):
        reply = client.patch("/api/catalog/apps/referral", json={"name": "转诊"}, headers=headers)
        assert reply.status_code == 403 and reply.get_json()["error"]["code"] == "forbidden"
        assert client.post("/api/catalog/apps/referral/withdraw", headers=headers).status_code == 403
        body = {**regional("prov", None), "owner_kind": "province", "entry_url": "/h5/apps/prov/"}
        assert client.post("/api/catalog/apps", json=body, headers=headers).status_code == 403
    assert [r.outcome for r in audit_rows(tree_app, "catalog.app.change")] == ["denied", "denied"]

    reply = client.patch(
        "/api/catalog/apps/referral",
        json={"sort_order": 5, "visibility": {"layers": ["service"]}},
        headers=province_admin,
    )
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["visibility"]["layers"] == ["service"] and reply.get_json()["sort_order"] == 5
    assert reply.get_json()["can_manage"] is True
    changes = [r for r in audit_rows(tree_app, "catalog.app.change") if r.outcome == "ok"]
    assert len(changes) == 1 and changes[0].detail["changes"] == {
        "sort_order": [10, 5],
        "visibility.layers": [["operational", "service"], ["service"]],
    }
    # The operator may too; a change that changes nothing is not recorded.
    assert client.patch("/api/catalog/apps/referral", json={"sort_order": 5}, headers=OPERATOR).status_code == 200
    assert len([r for r in audit_rows(tree_app, "catalog.app.change") if r.outcome == "ok"]) == 1

    body = {**regional("prov", None), "owner_kind": "province", "entry_url": "/h5/apps/prov/"}
    assert client.post("/api/catalog/apps", json=body, headers=province_admin).status_code == 201


def test_bad_input_is_422_naming_the_field_and_duplicates_409(tree_app, client, sandbox, t):
    county = t.counties()[0]
    admin = headers_for(client, sandbox, t.member_at("county_bureau", county=county))
    owner = node_id(tree_app, county)
    cases = [
        ({k: v for k, v in regional("a1", owner).items() if k != "name"}, "name"),
        (regional("A B", owner), "code"),
        (regional("a2", owner, entry_url="javascript:alert(1)"), "entry_url"),
        (regional("a3", owner, entry_url="http://apps.example.com/"), "entry_url"),
        (regional("a4", owner, entry_url="/h5/apps/ecg/"), "entry_url"),  # regional apps are external
        (regional("a5", owner, icon="<svg>"), "icon"),
        (regional("a6", owner, group="no_such_group"), "group"),
        (regional("a7", owner, visibility={"levels": ["hamlet"]}), "visibility.levels.0"),
        (regional("a8", owner, visibility={"layers": "service"}), "visibility.layers"),
        (regional("a9", owner, owner_node_id="x"), "owner_node_id"),
        (regional("a10", None), "owner_node_id"),
    ]
    for body, field in cases:
        reply = client.post("/api/catalog/apps", json=body, headers=admin)
        assert reply.status_code == 422, (field, reply.get_json())
        assert reply.get_json()["error"]["field"] == field, (field, reply.get_json())

    assert client.post("/api/catalog/apps", json=regional("ecg", owner), headers=admin).status_code == 201
    reply = client.post("/api/catalog/apps", json=regional("ecg", owner), headers=admin)
    assert reply.status_code == 409 and reply.get_json()["error"]["field"] == "code"
    reply = client.post("/api/catalog/apps", json=regional("referral", owner), headers=admin)
    assert reply.status_code == 409

    for body, field in (
        ({"code": "other"}, "code"),  # the code is the app's identity
        ({"entry_url": "/h5/x/"}, "entry_url"),
        ({"name": " "}, "name"),
    ):
        reply = client.patch("/api/catalog/apps/ecg", json=body, headers=admin)
        assert reply.status_code == 422 and reply.get_json()["error"]["field"] == field, reply.get_json()
    assert len(audit_rows(tree_app, "catalog.app.create")) == 1


def test_the_workbench_list_takes_at_most_two_queries(tree_app, client, sandbox, t):
    county = t.counties()[0]
    admin = headers_for(client, sandbox, t.member_at("county_bureau", county=county))
    body = regional("pilot", node_id(tree_app, county), visibility={"layers": ["service"]})
    assert client.post("/api/catalog/apps", json=body, headers=admin).status_code == 201
    doctor = t.member_at("internal_department", "member_institution", county=county)

    with tree_app.app_context():
        session = db.session()
        member_id = session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == doctor["userid"]))
        principal = load_principal(session, member_id)
        statements: list[str] = []
        engine = session.get_bind()

        def listener(_conn, _cursor, statement, *_rest) -> None:
            statements.append(statement)

        sa.event.listen(engine, "before_cursor_execute", listener)
        try:
            apps = service.workbench_apps(principal, session)
        finally:
            sa.event.remove(engine, "before_cursor_execute", listener)
    assert {a["code"] for g in apps["groups"] for a in g["apps"]} == {
        "referral",
        "precision_control",
        "family_doctor",
        "pilot",
    }
    assert len(statements) <= 2, statements
