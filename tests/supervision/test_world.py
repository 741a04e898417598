"""The supervision world signs its people in with the roles the other tests rely on."""


def test_world_roles(tree_client, sup_world):
    me = tree_client.get("/api/me", headers=sup_world.province_admin.headers).get_json()
    assert any(role["code"] == "admin" and role["node_id"] == sup_world.province_id for role in me["roles"])
    me = tree_client.get("/api/me", headers=sup_world.county_admin.headers).get_json()
    assert any(role["code"] == "admin" and role["node_id"] == sup_world.county_id for role in me["roles"])
    me = tree_client.get("/api/me", headers=sup_world.clinician.headers).get_json()
    assert {role["code"] for role in me["roles"]} == {"clinician"}
    assert sup_world.institution_ids
