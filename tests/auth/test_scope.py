"""Roles from positions, grants within one's own subtree, the scoping helper, and the audit log's reach."""

from __future__ import annotations

import sqlalchemy as sa

from org_sync.models import OrgMember
from tests.support.auth import bearer, sign_in
from tests.support.tree import Tree, node_id
from workbench import db
from workbench.auth.principal import load_principal


def two_county_admins(tree: Tree) -> tuple[tuple[dict, int], tuple[dict, int]]:
    admins = tree.at("county_bureau")
    first = admins[0]
    second = next(a for a in admins if a[1] != first[1])
    return first, second


def test_roles_come_from_positions(tree_app, tree):
    t = Tree(tree)
    (county_user, county), _ = two_county_admins(t)
    clinician, institution = t.at("member_institution")[0]
    with tree_app.app_context():
        session = db.session()

        def principal(user):
            member = session.scalar(sa.select(OrgMember).where(OrgMember.userid == user["userid"]))
            return load_principal(session, member.id)

        admin = principal(county_user)
        assert ("admin", node_id(tree_app, county)) in {(r.code, r.node_id) for r in admin.roles}
        doctor = principal(clinician)
        assert ("clinician", node_id(tree_app, institution)) in {(r.code, r.node_id) for r in doctor.roles}
        assert not doctor.has_role("admin")

        # The scope of a county admin is exactly the county's subtree.
        in_scope = set(session.scalars(admin.scope("admin").node_ids()))
        expected = {node_id(tree_app, d) for d in t.depts if county in t.ancestors(d)}
        assert in_scope == expected


def test_a_county_admin_grants_within_the_county_and_nowhere_else(tree_app, tree_client, sandbox, tree):
    t = Tree(tree)
    (admin_user, county), (_, other_county) = two_county_admins(t)
    hospital = t.institutions_under(county)[0]
    foreign = t.institutions_under(other_county)[0]
    colleague = next(u for u, d in t.at("member_institution") + t.at("medical_community_lead") if d == hospital)
    admin = bearer(sign_in(tree_client, sandbox, admin_user["userid"]))

    body = {"userid": colleague["userid"], "role": "referral_coordinator", "node_id": node_id(tree_app, hospital)}
    created = tree_client.post("/api/auth/grants", json=body, headers=admin)
    assert created.status_code == 201, created.get_json()
    again = tree_client.post("/api/auth/grants", json=body, headers=admin)
    assert again.get_json()["id"] == created.get_json()["id"]  # granting twice is one grant

    me = tree_client.get("/api/me", headers=bearer(sign_in(tree_client, sandbox, colleague["userid"]))).get_json()
    assert {"code": "referral_coordinator", "source": "grant"}.items() <= next(
        r for r in me["roles"] if r["code"] == "referral_coordinator"
    ).items()

    outside = tree_client.post("/api/auth/grants", json=body | {"node_id": node_id(tree_app, foreign)}, headers=admin)
    assert outside.status_code == 404  # another county's node does not exist for this admin
    for bad, field in (({"role": "clinician"}, "role"), ({"role": "root"}, "role"), ({"node_id": "x"}, "node_id")):
        reply = tree_client.post("/api/auth/grants", json=body | bad, headers=admin)
        assert reply.status_code == 422 and reply.get_json()["error"]["field"] == field, bad

    doctor = bearer(sign_in(tree_client, sandbox, t.at("member_institution")[0][0]["userid"]))
    assert tree_client.post("/api/auth/grants", json=body, headers=doctor).status_code == 403
    assert tree_client.get("/api/auth/grants", headers=doctor).status_code == 403

    listed = tree_client.get("/api/auth/grants", headers=admin).get_json()
    assert [g["id"] for g in listed] == [created.get_json()["id"]]
    revoked = tree_client.delete(f"/api/auth/grants/{created.get_json()['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    assert tree_client.get("/api/auth/grants", headers=admin).get_json() == []


def test_the_audit_log_shows_an_admin_their_subtree_and_own_actions_only(tree_app, tree_client, sandbox, tree):
    t = Tree(tree)
    (admin_user, county), (other_user, _) = two_county_admins(t)
    hospital = t.institutions_under(county)[0]
    colleague = next(u for u, d in t.at("member_institution") + t.at("medical_community_lead") if d == hospital)
    admin = bearer(sign_in(tree_client, sandbox, admin_user["userid"]))
    other = bearer(sign_in(tree_client, sandbox, other_user["userid"]))
    body = {"userid": colleague["userid"], "role": "supervisor", "node_id": node_id(tree_app, hospital)}
    assert tree_client.post("/api/auth/grants", json=body, headers=admin).status_code == 201

    mine = tree_client.get("/api/audit?action=auth.grant", headers=admin).get_json()
    assert mine["total"] == 1 and mine["items"][0]["actor"].endswith(admin_user["userid"])
    assert mine["items"][0]["ip"] and mine["items"][0]["request_id"]
    assert tree_client.get("/api/audit?action=auth.grant", headers=other).get_json()["total"] == 0
    own_logins = tree_client.get("/api/audit?action=auth.login", headers=other).get_json()
    assert {i["actor"] for i in own_logins["items"]} == {f"{own_logins['items'][0]['actor']}"}
    assert own_logins["items"][0]["actor"].endswith(other_user["userid"])

    bad = tree_client.get("/api/audit?since=yesterday", headers=admin)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "since"


def test_the_org_api_shows_each_caller_their_own_subtree_only(tree_app, tree_client, sandbox, tree):
    t = Tree(tree)
    (admin_user, county), (_, other_county) = two_county_admins(t)
    admin = bearer(sign_in(tree_client, sandbox, admin_user["userid"]))
    own, foreign = node_id(tree_app, county), node_id(tree_app, other_county)

    assert tree_client.get(f"/api/org/nodes/{own}", headers=admin).status_code == 200
    for url in (f"/api/org/nodes/{foreign}", f"/api/org/nodes/{foreign}/children", f"/api/org/export?root={foreign}"):
        reply = tree_client.get(url, headers=admin)
        assert reply.status_code == 404, url  # another county's node is not there for this admin, not "forbidden"
        assert reply.get_json()["error"]["code"] == "not_found"
    patch = tree_client.patch(f"/api/org/nodes/{foreign}", json={"level_override": None}, headers=admin)
    assert patch.status_code == 404

    # Search finds only the county's nodes; the export without a root is the county.
    found = tree_client.get("/api/org/nodes?q=卫生&page_size=200", headers=admin).get_json()["items"]
    assert found and all(t.county_of(n["dept_id"]) == county for n in found)
    exported = tree_client.get("/api/org/export", headers=admin).get_json()
    assert {d["dept_id"] for d in exported["departments"]} == {d for d in t.depts if county in t.ancestors(d)}

    # A member of another county, by userid: 404.
    stranger = next(u for u, d in t.at("member_institution") if t.county_of(d) == other_county)
    assert tree_client.get(f"/api/org/members/{stranger['userid']}", headers=admin).status_code == 404


def test_a_clinician_lists_only_their_institution(tree_app, tree_client, sandbox, tree):
    t = Tree(tree)
    user = t.member_at("member_institution")
    institution = user["dept_id_list"][0]
    doctor = bearer(sign_in(tree_client, sandbox, user["userid"]))
    found = tree_client.get("/api/org/nodes?q=卫生&page_size=200", headers=doctor).get_json()["items"]
    assert {n["dept_id"] for n in found} <= {d for d in t.depts if institution in t.ancestors(d)}
    county = t.county_of(institution)
    assert tree_client.get(f"/api/org/nodes/{node_id(tree_app, county)}", headers=doctor).status_code == 404
    # Not an administrator: no level corrections, no exports, no message outbox.
    own = node_id(tree_app, institution)
    assert tree_client.patch(f"/api/org/nodes/{own}", json={"level_override": None}, headers=doctor).status_code == 403
    assert tree_client.get("/api/org/export", headers=doctor).status_code == 403
    assert tree_client.get("/api/bot/outbox", headers=doctor).status_code == 403


def test_the_message_outbox_is_for_province_administrators(tree_client, sandbox, tree):
    t = Tree(tree)
    (county_user, _), _ = two_county_admins(t)
    county_admin = bearer(sign_in(tree_client, sandbox, county_user["userid"]))
    assert tree_client.get("/api/bot/outbox", headers=county_admin).status_code == 403
    province_user = t.member_at("province_commission")
    province_admin = bearer(sign_in(tree_client, sandbox, province_user["userid"]))
    assert tree_client.get("/api/bot/outbox", headers=province_admin).status_code == 200


def test_level_corrections_and_every_operator_request_are_audited(tree_app, tree_client, sandbox, tree):
    from config.settings import DEV_ADMIN_TOKEN

    t = Tree(tree)
    (admin_user, county), _ = two_county_admins(t)
    admin = bearer(sign_in(tree_client, sandbox, admin_user["userid"]))
    hospital = node_id(tree_app, t.institutions_under(county)[0])
    reply = tree_client.patch(
        f"/api/org/nodes/{hospital}", json={"level_override": "member_institution"}, headers=admin
    )
    assert reply.status_code == 200
    record = tree_client.get("/api/audit?action=org.level_override", headers=admin).get_json()["items"]
    assert len(record) == 1 and record[0]["node_id"] == hospital and record[0]["resource_id"] == str(hospital)

    operator = {"Authorization": f"Bearer {DEV_ADMIN_TOKEN}"}
    assert tree_client.get(f"/api/org/nodes/{hospital}", headers=operator).status_code == 200
    uses = tree_client.get("/api/audit?action=auth.operator", headers=operator).get_json()["items"]
    assert uses[-1]["actor"] == "operator" and uses[-1]["detail"] == {
        "method": "GET",
        "path": f"/api/org/nodes/{hospital}",
    }
