"""Each family-doctor team's DingTalk scene group, kept in step with its members and contracts — against the
sandbox over real HTTP, with the queue running the sync jobs, on both backends."""

from __future__ import annotations

import csv
import dataclasses
import io
import threading
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mini_apps.family_doctor import chats, service
from mini_apps.family_doctor.chats import NO_TEMPLATE, sweep_team_chats, sync_team_chat, teams_out_of_step
from mini_apps.family_doctor.jobs import drop_departed_members
from mini_apps.family_doctor.models import ChatMember
from org_sync.models import OrgMember
from tests.conftest import run_jobs
from tests.family_doctor.conftest import World, id_number
from workbench import db
from workbench.db import utcnow

API = "/api/family-doctor"
GROUP_APIS = (
    "/topapi/im/chat/scenegroup/create",
    "/topapi/im/chat/scenegroup/member/add",
    "/topapi/im/chat/scenegroup/member/delete",
    "/topapi/im/chat/scenegroup/update",
)


def account(sandbox, name: str = "居民", userid: str | None = None) -> str:
    """A resident's DingTalk account in the sandbox."""
    reply = sandbox.admin("POST", "residents", json={"name": name, **({"userid": userid} if userid else {})})
    assert reply.status_code == 200, reply.text
    return reply.json()["userid"]


def me(client, headers) -> dict:
    return client.get("/api/me", headers=headers).get_json()["member"]


def sign(client, world: World, n: int, team_id: int | None = None, **over) -> dict:
    body = {"name": "李四", "id_number": id_number(n), "team_id": team_id or world.team_id, **over}
    reply = client.post(f"{API}/contracts", json=body, headers=world.county_admin)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["contract"]


def chat(client, headers, team_id: int) -> dict:
    reply = client.get(f"{API}/teams/{team_id}/chat", headers=headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def group(sandbox, cid: str) -> dict:
    reply = sandbox.admin("GET", f"groups/{cid}")
    assert reply.status_code == 200, reply.text
    return reply.json()


def members(sandbox, cid: str) -> set[str]:
    return set(group(sandbox, cid)["members"])


def group_calls(sandbox) -> dict[str, int]:
    apis = sandbox.admin("GET", "stats").json()["apis"]
    return {path: apis.get(path, {}).get("accepted", 0) for path in GROUP_APIS}


def test_the_sandbox_lists_groups_with_their_members(sandbox):
    resident = account(sandbox, "王五")
    reply = sandbox.admin("GET", "groups/cidnosuchgroup==")
    assert reply.status_code == 404
    listed = sandbox.admin("GET", "groups").json()["groups"]
    assert all({"open_conversation_id", "title", "owner", "member_count"} <= set(g) for g in listed)
    assert resident not in str(listed)


def test_a_teams_group_holds_exactly_its_staff_and_signed_residents_with_accounts(
    tree_app, tree_client, sandbox, world: World
):
    client = tree_client
    leader = me(client, world.doctor)["userid"]
    colleague = me(client, world.colleague)["userid"]
    r1, r2, r3 = account(sandbox), account(sandbox), account(sandbox)
    ghost = f"ghost{uuid.uuid4().hex[:10]}"  # an account DingTalk does not know (yet)

    a = sign(client, world, 1, dingtalk_userid=r1)
    b = sign(client, world, 2, dingtalk_userid=r2)
    sign(client, world, 3)  # no DingTalk account: reached by other channels
    sign(client, world, 4, dingtalk_userid=ghost)
    run_jobs(tree_app)

    view = chat(client, world.doctor, world.team_id)
    cid = view["open_conversation_id"]
    assert cid and view["owner_userid"] == leader and view["last_error"] and "1 个钉钉账号" in view["last_error"]
    assert (view["staff_count"], view["resident_count"], view["rejected_count"]) == (1, 2, 1)
    assert members(sandbox, cid) == {leader, r1, r2}  # the unknown account did not block the others
    assert group(sandbox, cid)["owner"] == leader

    # In step: a re-run makes no DingTalk call, and the daily sweep finds nothing to do.
    before = group_calls(sandbox)
    with tree_app.app_context():
        result = sync_team_chat(world.team_id)
        assert teams_out_of_step(db.session()) == []
    assert (result["calls"], result["added"], result["removed"], result["created"]) == (0, 0, 0, False)
    assert group_calls(sandbox) == before

    # Terminating a contract takes the resident out.
    reply = client.post(f"{API}/contracts/{a['id']}/terminate", json={"reason": "迁出"}, headers=world.county_admin)
    assert reply.status_code == 200, reply.get_json()
    run_jobs(tree_app)
    assert members(sandbox, cid) == {leader, r2}

    # Renewing (a new contract starting after the old ends) keeps the resident in.
    reply = client.post(f"{API}/contracts/{b['id']}/renew", json={}, headers=world.county_admin)
    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json()["start_date"] > service.today().isoformat()
    run_jobs(tree_app)
    assert members(sandbox, cid) == {leader, r2}

    # Switching team at renewal moves the resident to the other team's group.
    reply = client.post(
        f"{API}/teams",
        json={"institution_id": world.institution_id, "name": "第二家庭医生团队"},
        headers=world.county_admin,
    )
    assert reply.status_code == 201, reply.get_json()
    team2 = reply.get_json()["id"]
    reply = client.post(
        f"{API}/teams/{team2}/members", json={"userid": colleague, "role": "leader"}, headers=world.county_admin
    )
    assert reply.status_code == 200, reply.get_json()
    e = sign(client, world, 5, dingtalk_userid=r3)
    run_jobs(tree_app)
    assert members(sandbox, cid) == {leader, r2, r3}
    reply = client.post(f"{API}/contracts/{e['id']}/renew", json={"team_id": team2}, headers=world.county_admin)
    assert reply.status_code == 201, reply.get_json()
    run_jobs(tree_app)
    cid2 = chat(client, world.county_admin, team2)["open_conversation_id"]
    assert cid2 and cid2 != cid
    assert members(sandbox, cid) == {leader, r2}
    assert members(sandbox, cid2) == {colleague, r3} and group(sandbox, cid2)["owner"] == colleague

    # Team members come and go; when the owner leaves the team the group is handed over first.
    reply = client.post(
        f"{API}/teams/{world.team_id}/members", json={"userid": colleague, "role": "doctor"}, headers=world.county_admin
    )
    assert reply.status_code == 200, reply.get_json()
    run_jobs(tree_app)
    assert members(sandbox, cid) == {leader, colleague, r2}
    reply = client.delete(f"{API}/teams/{world.team_id}/members/{leader}", headers=world.county_admin)
    assert reply.status_code == 200, reply.get_json()
    run_jobs(tree_app)
    assert members(sandbox, cid) == {colleague, r2}
    assert group(sandbox, cid)["owner"] == colleague
    assert chat(client, world.county_admin, world.team_id)["owner_userid"] == colleague

    # A manual sync retries the account DingTalk refused, once it exists.
    account(sandbox, "赵六", userid=ghost)
    reply = client.post(f"{API}/teams/{world.team_id}/chat/sync", headers=world.county_admin)
    assert reply.status_code == 202, reply.get_json()
    run_jobs(tree_app)
    view = chat(client, world.county_admin, world.team_id)
    assert members(sandbox, cid) == {colleague, r2, ghost}
    assert (view["staff_count"], view["resident_count"], view["rejected_count"], view["last_error"]) == (
        1,
        2,
        0,
        None,
    )
    with tree_app.app_context():
        session = db.session()
        assert chats.in_chat(session, world.team_id, ghost) and not chats.in_chat(session, world.team_id, r1)
        assert chats.chat_of(session, world.team_id).open_conversation_id == cid
        rows = session.scalars(sa.select(ChatMember.userid).where(ChatMember.team_id == world.team_id)).all()
        assert set(rows) == {colleague, r2, ghost}


def test_the_daily_sweep_removes_residents_whose_contract_ended(tree_app, tree_client, sandbox, world: World):
    client = tree_client
    leader = me(client, world.doctor)["userid"]
    ending, staying = account(sandbox), account(sandbox)
    today = service.today()
    # A contract whose last day is today (one year back), and an ordinary one.
    start = service.add_years(today + timedelta(days=1), -1)
    sign(client, world, 11, dingtalk_userid=ending, start_date=start.isoformat(), end_date=today.isoformat())
    sign(client, world, 12, dingtalk_userid=staying)
    run_jobs(tree_app)
    cid = chat(client, world.doctor, world.team_id)["open_conversation_id"]
    assert members(sandbox, cid) == {leader, ending, staying}

    tomorrow = today + timedelta(days=1)
    with tree_app.app_context():
        assert teams_out_of_step(db.session(), today) == []
        assert teams_out_of_step(db.session(), tomorrow) == [world.team_id]  # no write happened: only a sweep sees it
        assert sweep_team_chats(tomorrow.isoformat()) == 1
    run_jobs(tree_app)
    assert members(sandbox, cid) == {leader, staying}
    with tree_app.app_context():
        assert teams_out_of_step(db.session(), tomorrow) == []
        assert sweep_team_chats(tomorrow.isoformat()) == 0


def test_chat_scope_and_a_missing_template(tree_app, tree_client, sandbox, world: World):
    client = tree_client
    # Seen like the team itself; synced on demand by its managers only.
    assert client.get(f"{API}/teams/{world.team_id}/chat", headers=world.other_county_admin).status_code == 404
    assert client.get(f"{API}/teams/{world.team_id}/chat", headers=world.colleague).status_code == 404
    assert client.post(f"{API}/teams/{world.team_id}/chat/sync", headers=world.doctor).status_code == 403
    assert client.post(f"{API}/teams/{world.team_id}/chat/sync", headers=world.other_county_admin).status_code == 404

    # Without a scene-group template no group is made, and the team's chat says why.
    settings = tree_app.config["SETTINGS"]
    tree_app.config["SETTINGS"] = dataclasses.replace(
        settings, dingtalk=dataclasses.replace(settings.dingtalk, scene_group_template_id=None)
    )
    reply = client.post(
        f"{API}/teams", json={"institution_id": world.institution_id, "name": "无模板团队"}, headers=world.county_admin
    )
    assert reply.status_code == 201, reply.get_json()
    team = reply.get_json()["id"]
    before = group_calls(sandbox)
    doctor = me(client, world.doctor)["userid"]
    reply = client.post(
        f"{API}/teams/{team}/members", json={"userid": doctor, "role": "leader"}, headers=world.county_admin
    )
    assert reply.status_code == 200, reply.get_json()
    run_jobs(tree_app)
    view = chat(client, world.county_admin, team)
    assert view["open_conversation_id"] is None and view["last_error"] == NO_TEMPLATE
    assert group_calls(sandbox) == before


def test_an_import_brings_its_residents_into_the_group(tree_app, tree_client, sandbox, world: World):
    leader = me(tree_client, world.doctor)["userid"]
    r1, r2 = account(sandbox), account(sandbox)
    start = service.today()
    end = service.default_end(start)
    out = io.StringIO()
    csv.writer(out).writerows(
        [
            ["姓名", "身份证号", "签约团队", "签约日期", "到期日期", "钉钉用户ID"],
            ["甲", id_number(21), world.team_name, start.isoformat(), end.isoformat(), r1],
            ["乙", id_number(22), world.team_name, start.isoformat(), end.isoformat(), r2],
            ["丙", id_number(23), world.team_name, start.isoformat(), end.isoformat(), ""],
        ]
    )

    def upload(dry_run: bool):
        reply = tree_client.post(
            f"{API}/imports?dry_run={'true' if dry_run else 'false'}",
            data={"file": (io.BytesIO(out.getvalue().encode("utf-8")), "签约.csv")},
            headers=world.doctor,
            content_type="multipart/form-data",
        )
        assert reply.status_code == 200, reply.get_json()
        return reply.get_json()

    run_jobs(tree_app)
    cid = chat(tree_client, world.doctor, world.team_id)["open_conversation_id"]
    assert members(sandbox, cid) == {leader}
    upload(dry_run=True)
    run_jobs(tree_app)
    assert members(sandbox, cid) == {leader}
    assert upload(dry_run=False)["created_contracts"] == 3
    run_jobs(tree_app)
    assert members(sandbox, cid) == {leader, r1, r2}


@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_syncs_of_one_team_create_one_group(tree_app, tree_client, sandbox, world: World):
    """Two workers syncing the same new team at once: the second waits for the first and then has nothing to do
    (PostgreSQL only: with SQLite, the in-process queue runs one job at a time)."""
    r1 = account(sandbox)
    sign(tree_client, world, 31, dingtalk_userid=r1)  # RQ: the queued syncs wait for run_jobs, which is not called
    before = group_calls(sandbox)
    results: list[dict] = []
    start = threading.Barrier(2)

    def worker() -> None:
        with tree_app.app_context():
            start.wait()
            results.append(sync_team_chat(world.team_id))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = group_calls(sandbox)
    assert sorted(r["created"] for r in results) == [False, True]
    assert sorted(r["calls"] for r in results) == [0, 2]  # create, then add the resident
    assert after["/topapi/im/chat/scenegroup/create"] - before["/topapi/im/chat/scenegroup/create"] == 1
    assert after["/topapi/im/chat/scenegroup/member/add"] - before["/topapi/im/chat/scenegroup/member/add"] == 1
    cid = chat(tree_client, world.doctor, world.team_id)["open_conversation_id"]
    assert members(sandbox, cid) == {me(tree_client, world.doctor)["userid"], r1}


def test_a_member_who_leaves_the_organisation_leaves_the_group(tree_app, tree_client, sandbox, world: World):
    leader = me(tree_client, world.doctor)["userid"]
    colleague = me(tree_client, world.colleague)
    reply = tree_client.post(
        f"{API}/teams/{world.team_id}/members",
        json={"userid": colleague["userid"], "role": "doctor"},
        headers=world.county_admin,
    )
    assert reply.status_code == 200, reply.get_json()
    run_jobs(tree_app)
    cid = chat(tree_client, world.doctor, world.team_id)["open_conversation_id"]
    assert members(sandbox, cid) == {leader, colleague["userid"]}
    with tree_app.app_context():
        session = db.session()
        session.get(OrgMember, colleague["id"]).deleted_at = utcnow()  # as org sync records a user_leave_org
        session.commit()
        assert drop_departed_members() == 1
    run_jobs(tree_app)
    assert members(sandbox, cid) == {leader}
