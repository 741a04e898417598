"""Free-login: JSAPI codes and browser OAuth codes in, access and refresh tokens out; refresh rotation, reuse
detection, sign-out, members who left."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from org_sync.models import OrgMember
from tests.support.auth import auth_code, bearer, sign_in
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.models import RefreshToken


def levels_of(tree: dict) -> dict[int, str]:
    return {d["dept_id"]: d["_level"] for d in tree["departments"]}


def user_at(tree: dict, level: str, nth: int = 0) -> dict:
    levels = levels_of(tree)
    found = [u for u in tree["users"] if u["active"] and any(levels[d] == level for d in u["dept_id_list"])]
    return found[nth]


def test_jsapi_code_signs_in_and_me_shows_positions_and_roles(tree_app, tree_client, sandbox, tree):
    user = user_at(tree, "county_bureau")
    tokens = sign_in(tree_client, sandbox, user["userid"])
    assert set(tokens) == {"access_token", "refresh_token", "expires_in", "token_type"}
    assert tokens["expires_in"] == 900 and tokens["token_type"] == "Bearer"

    me = tree_client.get("/api/me", headers=bearer(tokens)).get_json()
    assert me["member"]["userid"] == user["userid"] and me["member"]["name"] == user["name"]
    assert re.fullmatch(r"\d{3}\*{4}\d{4}", me["member"]["mobile"])  # masked, never the number
    assert {p["level"] for p in me["positions"]} >= {"county_bureau"}
    assert all(p["layer"] in {"administrative", "operational", "service"} for p in me["positions"])
    admin = [r for r in me["roles"] if r["code"] == "admin"]
    assert admin and admin[0]["name"] == "管理员" and admin[0]["node_name"].endswith("卫生健康局")

    with tree_app.app_context():
        login = db.session().scalars(sa.select(AuditRecord).where(AuditRecord.action == "auth.login")).all()
    assert [r.outcome for r in login] == ["ok"] and login[0].actor.endswith(user["userid"])


def test_a_code_works_once_and_unknown_or_expired_codes_are_401(tree_client, sandbox, tree):
    user = user_at(tree, "member_institution")
    code = auth_code(sandbox, user["userid"])
    assert tree_client.post("/api/auth/dingtalk", json={"code": code}).status_code == 200
    for bad in (code, "no-such-code"):
        reply = tree_client.post("/api/auth/dingtalk", json={"code": bad})
        assert reply.status_code == 401
        assert reply.get_json()["error"] | {"message": None} == {
            "code": "invalid_code",
            "field": "code",
            "message": None,
        }
    expiring = sandbox.admin("POST", "auth-code", json={"userid": user["userid"], "expires_in": 0.2}).json()["code"]
    time.sleep(0.4)
    assert tree_client.post("/api/auth/dingtalk", json={"code": expiring}).status_code == 401


def test_malformed_sign_in_bodies_are_422_naming_the_field(tree_client):
    for body in ({}, {"code": ""}, {"code": 12}, {"code": "x" * 600}):
        reply = tree_client.post("/api/auth/dingtalk", json=body)
        assert reply.status_code == 422, body
        assert reply.get_json()["error"]["field"] == "code"


def test_refresh_rotates_and_reusing_an_old_refresh_token_revokes_the_sign_in(tree_app, tree_client, sandbox, tree):
    first = sign_in(tree_client, sandbox, user_at(tree, "member_institution", 1)["userid"])
    second = tree_client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}).get_json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert tree_client.get("/api/me", headers=bearer(second)).status_code == 200
    third = tree_client.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]}).get_json()

    # The first token again: someone else holds it. The whole family goes, the latest token included.
    reused = tree_client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401 and reused.get_json()["error"]["code"] == "invalid_refresh_token"
    latest = tree_client.post("/api/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert latest.status_code == 401
    with tree_app.app_context():
        rows = db.session().scalars(sa.select(RefreshToken)).all()
        assert len(rows) == 3 and all(r.revoked_at is not None for r in rows)
        assert all(len(r.token_hash) == 64 and r.token_hash != third["refresh_token"] for r in rows)
        actions = db.session().scalars(sa.select(AuditRecord.action)).all()
    assert "auth.refresh_reuse" in actions


def test_logout_revokes_the_refresh_token_and_is_idempotent(tree_client, sandbox, tree):
    tokens = sign_in(tree_client, sandbox, user_at(tree, "member_institution", 2)["userid"])
    for _ in range(2):
        assert tree_client.post("/api/auth/logout", json={"refresh_token": tokens["refresh_token"]}).status_code == 204
    reply = tree_client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reply.status_code == 401
    assert tree_client.post("/api/auth/refresh", json={"refresh_token": "never-issued"}).status_code == 401


def test_a_member_missing_locally_is_fetched_and_one_who_left_cannot_sign_in(tree_app, tree_client, sandbox, tree):
    user = user_at(tree, "member_institution", 3)
    with tree_app.app_context():
        session = db.session()
        session.execute(sa.delete(OrgMember).where(OrgMember.userid == user["userid"]))
        session.commit()
    tokens = sign_in(tree_client, sandbox, user["userid"])  # not synced yet: fetched from DingTalk on the spot
    assert tree_client.get("/api/me", headers=bearer(tokens)).get_json()["positions"]

    # They leave (as an event would record); their access token stops working at once, and they cannot refresh.
    with tree_app.app_context():
        session = db.session()
        member = session.scalar(sa.select(OrgMember).where(OrgMember.userid == user["userid"]))
        member.active = False
        session.commit()
    reply = tree_client.get("/api/me", headers=bearer(tokens))
    assert reply.status_code == 401 and reply.get_json()["error"]["code"] == "account_inactive"
    assert tree_client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401


def test_browser_oauth_sign_in_binds_state_to_the_browser(tree_client, sandbox, tree):
    user = user_at(tree, "city_commission")
    start = tree_client.get("/api/auth/oauth/start?next=/h5/")
    assert start.status_code == 302
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    code = auth_code(sandbox, user["userid"], kind="oauth")
    tokens = tree_client.post("/api/auth/oauth", json={"code": code, "state": state})
    assert tokens.status_code == 200, tokens.get_json()
    me = tree_client.get("/api/me", headers=bearer(tokens.get_json())).get_json()
    assert me["member"]["userid"] == user["userid"]

    # A state minted for another browser (no nonce cookie here), a forged state, a used code.
    stranger = tree_client.application.test_client()
    other = stranger.post("/api/auth/oauth", json={"code": auth_code(sandbox, user["userid"], "oauth"), "state": state})
    assert other.status_code == 401 and other.get_json()["error"]["code"] == "invalid_state"
    forged = tree_client.post("/api/auth/oauth", json={"code": code, "state": state + "x"})
    assert forged.status_code == 401 and forged.get_json()["error"]["field"] == "state"
    used = tree_client.post("/api/auth/oauth", json={"code": code, "state": state})
    assert used.status_code == 401 and used.get_json()["error"]["code"] == "invalid_code"


def test_oauth_start_only_redirects_within_the_site(tree_client):
    reply = tree_client.get("/api/auth/oauth/start?next=https://evil.example/")
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "next"
    assert tree_client.get("/api/auth/oauth/start?next=//evil.example/").status_code == 422


def test_the_sandbox_picker_endpoints_name_bad_input(tree_client, tree, tree_app):
    user = user_at(tree, "member_institution")
    minted = tree_client.post("/api/auth/sandbox/code", json={"userid": user["userid"]})
    assert minted.status_code == 200
    code = minted.get_json()["code"]
    assert tree_client.post("/api/auth/dingtalk", json={"code": code}).status_code == 200
    unknown = tree_client.post("/api/auth/sandbox/code", json={"userid": "no-such-user"})
    assert unknown.status_code == 404 and unknown.get_json()["error"]["field"] == "userid"
    for body, field in (({}, "userid"), ({"userid": "x", "kind": "sms"}, "kind")):
        reply = tree_client.post("/api/auth/sandbox/code", json=body)
        assert reply.status_code == 422 and reply.get_json()["error"]["field"] == field
    assert tree_client.get("/api/auth/sandbox/members?limit=1000").status_code == 422
    found = tree_client.get("/api/auth/sandbox/members?level=member_institution&limit=5").get_json()["items"]
    assert found and all(p["unit_name"] for person in found for p in person["positions"])

    # With the sandbox gone, a clear 503 rather than a 500.
    import dataclasses

    settings = tree_app.config["SETTINGS"]
    gone = dataclasses.replace(settings.dingtalk, oapi_base="http://127.0.0.1:9")
    tree_app.config["SETTINGS"] = dataclasses.replace(settings, dingtalk=gone)
    reply = tree_client.post("/api/auth/sandbox/code", json={"userid": user["userid"]})
    assert reply.status_code == 503 and reply.get_json()["error"]["code"] == "sandbox_unavailable"
