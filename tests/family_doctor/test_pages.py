"""The team's H5 pages (`/h5/apps/family_doctor/`) and the list filters they need.

API (both backends): the residents list filters by overdue follow-up (an open follow-up past its due date on the
resident's current team) and returns counts for the filter chips; the pages are static shells served like the
workbench's own. Browser (Playwright on Debian's Chromium, the embedded SQLite like the shell's browser tests): a
team doctor signs in through the sandbox picker, sees exactly their team's residents, filters them, opens a card,
renews, signs a new resident (the server's field errors next to the fields); a doctor of another team of the same
institution sees none of them; the county administrator picks among teams.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from mini_apps.family_doctor import service
from mini_apps.family_doctor.models import Contract, FollowUp
from tests.family_doctor.conftest import World, id_number
from tests.h5 import test_browser
from tests.h5.test_browser import Member, pick
from tests.support.pages import page_config, static_shell
from workbench import db
from workbench.audit import AuditRecord

API = "/api/family-doctor"
PAGES = "/h5/apps/family_doctor/"

browser = test_browser.browser  # the shell's Chromium fixture, under the same name


@dataclass
class Residents:
    team2_id: int
    ids: dict[str, int]  # by key: A B C G on the world's team; D E on team 2
    numbers: dict[str, str]  # the full ID numbers typed in (never to be seen on a page)


def _sign(client, headers, team_id: int, n: int, name: str, tags: list[str], **over) -> dict:
    born = over.pop("born", date(1950, 3, 7))
    body = {
        "name": name,
        "id_number": id_number(n, born=born),
        "phone": "13812345678",
        "address": "某县某镇某村1号",
        "tags": tags,
        "team_id": team_id,
        **over,
    }
    reply = client.post(f"{API}/contracts", json=body, headers=headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json() | {"number": body["id_number"]}


def _follow_up(app, resident_id: int, team_id: int, due: date, done: date | None = None, kind: str = "diabetes"):
    with app.app_context():
        session = db.session()
        session.add(FollowUp(resident_id=resident_id, team_id=team_id, kind=kind, due_date=due, done_on=done))
        session.commit()


@pytest.fixture
def residents(tree_app, tree_client, world: World) -> Residents:
    """On the world's team: A (elderly, hypertension; a follow-up due later and one done late), B (diabetes; a
    follow-up 5 days overdue), C (a child), G (elderly, contract ending in 9 days). A second team of the same
    institution with the colleague on it: D (overdue follow-up) and E, who moved there from the first team and left
    an overdue follow-up behind on it."""
    client, today = tree_client, service.today()
    reply = client.post(
        f"{API}/teams",
        json={"institution_id": world.institution_id, "name": "第二家庭医生团队"},
        headers=world.county_admin,
    )
    assert reply.status_code == 201, reply.get_json()
    team2 = reply.get_json()["id"]
    colleague = client.get("/api/me", headers=world.colleague).get_json()["member"]["userid"]
    reply = client.post(
        f"{API}/teams/{team2}/members", json={"userid": colleague, "role": "doctor"}, headers=world.county_admin
    )
    assert reply.status_code == 200, reply.get_json()

    t1 = world.team_id
    signed = {
        "A": _sign(client, world.doctor, t1, 401, "王建国", ["elderly", "hypertension"]),
        "B": _sign(client, world.doctor, t1, 402, "李秀英", ["diabetes"]),
        "C": _sign(client, world.doctor, t1, 403, "赵小宝", ["child"], born=date(2020, 6, 1)),
        "G": _sign(client, world.doctor, t1, 404, "孙桂兰", ["elderly"], start_date=str(today - timedelta(days=356))),
        "D": _sign(client, world.colleague, team2, 405, "钱多多", ["diabetes"]),
        "E": _sign(client, world.doctor, t1, 406, "周转移", ["hypertension"]),
    }
    ids = {key: r["id"] for key, r in signed.items()}
    _follow_up(tree_app, ids["A"], t1, today + timedelta(days=20), kind="hypertension")
    _follow_up(tree_app, ids["A"], t1, today - timedelta(days=40), done=today - timedelta(days=30), kind="hypertension")
    _follow_up(tree_app, ids["B"], t1, today - timedelta(days=5))
    _follow_up(tree_app, ids["D"], team2, today - timedelta(days=1))
    _follow_up(tree_app, ids["E"], t1, today - timedelta(days=3), kind="hypertension")
    reply = client.post(
        f"{API}/contracts/{signed['E']['contract']['id']}/renew", json={"team_id": team2}, headers=world.county_admin
    )
    assert reply.status_code == 201, reply.get_json()
    return Residents(team2, ids, {key: r["number"] for key, r in signed.items()})


def _list(client, headers, **query) -> dict:
    reply = client.get(f"{API}/residents", query_string=query, headers=headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def _ids(data: dict, residents: Residents) -> set[str]:
    by_id = {v: k for k, v in residents.ids.items()}
    return {by_id.get(item["id"], str(item["id"])) for item in data["items"]}


# -- the API ----------------------------------------------------------------------------------------------------


def test_residents_filter_by_overdue_follow_up_with_counts(tree_app, tree_client, world: World, residents):
    client = tree_client
    mine = _list(client, world.doctor)
    assert _ids(mine, residents) == {"A", "B", "C", "G"}
    assert {item["id"]: item["overdue_follow_up"] for item in mine["items"]} == {
        residents.ids["A"]: False,
        residents.ids["B"]: True,
        residents.ids["C"]: False,
        residents.ids["G"]: False,
    }
    assert mine["counts"] == {"all": 4, "states": {"active": 3, "expiring": 1}, "overdue_follow_up": 1}

    assert _ids(_list(client, world.doctor, overdue_follow_up="true"), residents) == {"B"}
    assert _ids(_list(client, world.doctor, overdue_follow_up="false"), residents) == {"A", "C", "G"}
    # A done follow-up, or one not yet due, is not overdue; filters combine; counts follow the team and tag only.
    tagged = _list(client, world.doctor, overdue_follow_up="true", tag="elderly")
    assert tagged["items"] == [] and tagged["total"] == 0
    assert tagged["counts"] == {"all": 2, "states": {"active": 1, "expiring": 1}, "overdue_follow_up": 0}
    by_state = _list(client, world.doctor, state="expiring")
    assert _ids(by_state, residents) == {"G"} and by_state["counts"]["all"] == 4

    # The colleague's team: D is overdue; E's overdue follow-up stayed with the team E left.
    theirs = _list(client, world.colleague)
    assert _ids(theirs, residents) == {"D", "E"}
    assert theirs["counts"]["overdue_follow_up"] == 1
    assert _ids(_list(client, world.colleague, overdue_follow_up="true"), residents) == {"D"}
    # The county administrator: every team of the county, or one of them.
    assert _ids(_list(client, world.county_admin, overdue_follow_up="true"), residents) == {"B", "D"}
    one = _list(client, world.county_admin, team_id=residents.team2_id)
    assert _ids(one, residents) == {"D", "E"} and one["counts"]["all"] == 2
    assert _list(client, world.other_county_admin, overdue_follow_up="true")["counts"]["all"] == 0

    # Done: B is no longer overdue. A terminated contract is counted under its state.
    with tree_app.app_context():
        session = db.session()
        session.execute(
            sa.update(FollowUp).where(FollowUp.resident_id == residents.ids["B"]).values(done_on=service.today())
        )
        session.commit()
        c_contract = session.scalar(sa.select(Contract.id).where(Contract.resident_id == residents.ids["C"]))
    reply = client.post(f"{API}/contracts/{c_contract}/terminate", json={"reason": "迁出"}, headers=world.doctor)
    assert reply.status_code == 200, reply.get_json()
    after = _list(client, world.doctor)
    assert after["counts"] == {
        "all": 4,
        "states": {"active": 2, "expiring": 1, "terminated": 1},
        "overdue_follow_up": 0,
    }
    assert _ids(_list(client, world.doctor, state="terminated"), residents) == {"C"}

    # Every list is audited with its filters (ids only).
    with tree_app.app_context():
        records = db.session().scalars(sa.select(AuditRecord).where(AuditRecord.action == "resident.list")).all()
    overdue = [r for r in records if (r.detail or {}).get("filters", {}).get("overdue_follow_up") is True]
    assert overdue and residents.ids["B"] in overdue[0].detail["resident_ids"]

    reply = client.get(f"{API}/residents", query_string={"overdue_follow_up": "sometimes"}, headers=world.doctor)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "overdue_follow_up"


def test_pages_are_static_shells_with_hashed_gzipped_scripts(tree_client):
    for path, script in ((PAGES, "residents.js"), (PAGES + "residents/12", "resident.js"), (PAGES + "sign", "sign.js")):
        static_shell(tree_client, path, ["common.js", script])
    assert page_config(tree_client.get(PAGES + "residents/12").get_data(as_text=True))["residentId"] == 12
    icon = tree_client.get("/h5/static/icons/family-doctor.svg")
    assert icon.status_code == 200 and icon.get_data(as_text=True).startswith("<svg")


# -- in a browser -----------------------------------------------------------------------------------------------


def _member(client, headers) -> Member:
    member = client.get("/api/me", headers=headers).get_json()["member"]
    return Member(member["userid"], member["name"], "", "")


def _shown(page) -> set[int]:
    return {int(i) for i in page.locator("#people li").evaluate_all("els => els.map(e => e.dataset.id)")}


def _list_url(live: str) -> re.Pattern:
    return re.compile(re.escape(live + PAGES) + r"(\?.*)?$")


def _sign_in_here(page, live: str, member: Member) -> None:
    """Open the app not signed in: the shell's picker, then back to the app."""
    page.goto(live + PAGES)
    page.wait_for_url(re.compile(r"/h5/\?next="))
    pick(page, member)
    page.wait_for_url(_list_url(live))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_team_doctor_lists_filters_opens_renews_and_signs(tree_app, tree_client, world, residents, live, phone):
    expect = test_browser.expect
    page, ids = phone, residents.ids
    team1 = {ids[k] for k in "ABCG"}
    _sign_in_here(page, live, _member(tree_client, world.doctor))

    # Exactly the team's residents; one team, so no picker; the chips count them.
    expect(page.locator("#people li")).to_have_count(4)
    assert _shown(page) == team1
    expect(page.locator("#f-team")).to_be_hidden()
    expect(page.locator("#team-name")).to_have_text(world.team_name)
    expect(page.locator('#counts [data-filter=""] b')).to_have_text("4")
    expect(page.locator('#counts [data-filter="overdue"] b')).to_have_text("1")
    expect(page.locator('#counts [data-filter="expiring"] b')).to_have_text("1")
    expect(page.locator("#total")).to_have_text("共 4 人")
    row_a = page.locator(f'#people li[data-id="{ids["A"]}"]')
    expect(row_a).to_contain_text("王建国")
    expect(row_a).to_contain_text("138****5678")
    expect(row_a.locator(".chip")).to_have_text(["老年人", "高血压"])
    expect(row_a.locator(".badge.active")).to_have_text("有效")
    text = page.locator("body").inner_text()
    assert not any(number in text for number in residents.numbers.values()), "ID numbers only masked"
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "fits a 375 px phone"

    # Filters: key population, overdue follow-up, expiring contract.
    page.select_option("#f-tag", "diabetes")
    expect(page.locator("#people li")).to_have_count(1)
    assert _shown(page) == {ids["B"]}
    page.select_option("#f-tag", "")
    expect(page.locator("#people li")).to_have_count(4)
    page.locator('#counts [data-filter="overdue"]').click()
    expect(page.locator("#people li")).to_have_count(1)
    expect(page.locator(f'#people li[data-id="{ids["B"]}"] .badge.overdue')).to_have_text("随访逾期")
    page.locator('#counts [data-filter="expiring"]').click()
    expect(page.locator("#people li")).to_have_count(1)
    expect(page.locator(f'#people li[data-id="{ids["G"]}"] .badge.expiring')).to_have_text("即将到期")
    page.locator('#counts [data-filter=""]').click()
    expect(page.locator("#people li")).to_have_count(4)

    # A resident's card: masked details, tags, contracts, follow-ups when the app serves them.
    row_a.locator("a").click()
    page.wait_for_url(f"{live}{PAGES}residents/{ids['A']}")
    expect(page.locator("#name")).to_have_text("王建国")
    masked = tree_client.get(f"{API}/residents/{ids['A']}", headers=world.doctor).get_json()["id_number"]
    expect(page.locator('#fields [data-field="id_number"]')).to_have_text(masked)
    expect(page.locator('#fields [data-field="phone"]')).to_have_text("138****5678")
    expect(page.locator('#fields [data-field="tags"] .chip')).to_have_text(["老年人", "高血压"])
    assert residents.numbers["A"] not in page.locator("body").inner_text()
    expect(page.locator("#contracts li")).to_have_count(1)
    follow_ups = tree_client.get(f"{API}/residents/{ids['A']}/follow-ups", headers=world.doctor)
    if follow_ups.status_code == 200:
        expect(page.locator("#follow-up-rows li")).to_have_count(len(follow_ups.get_json()["items"]))
        expect(page.locator("#follow-ups")).to_contain_text("高血压随访")
    else:
        assert follow_ups.status_code == 404
        expect(page.locator("#follow-ups")).to_be_hidden()

    # 续约: the defaults (same team and package, from the day after the old end, one year).
    old_end = date.fromisoformat(page.locator('#contract [data-field="period"]').inner_text().split(" 至 ")[1])
    page.locator("#renew-open").click()
    expect(page.locator("#renew-package")).to_have_value("基础包")
    page.locator("#renew-submit").click()
    expect(page.locator("#notice")).to_contain_text("续约成功")
    expect(page.locator("#contracts li")).to_have_count(2)
    expect(page.locator('#contracts li[data-state="renewed"]')).to_have_count(1)
    new_start = old_end + timedelta(days=1)
    expect(page.locator('#contract [data-field="period"]')).to_contain_text(new_start.isoformat())
    with tree_app.app_context():
        contracts = db.session().scalars(sa.select(Contract).where(Contract.resident_id == ids["A"])).all()
    assert sorted(c.status for c in contracts) == ["active", "renewed"]

    # 签约: the server's errors next to their fields (format first, then the ID checksum), then it succeeds.
    page.locator("#back").click()
    page.wait_for_url(_list_url(live))
    page.locator("#sign-link").click()
    page.wait_for_url(re.compile(r"/sign"))
    good = id_number(407, born=date(1961, 8, 15))
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    page.fill("#name", "吴新签")
    page.fill("#id_number", bad)
    expect(page.locator("#id-hint")).to_have_text("校验码不符，请核对身份证号")
    page.fill("#phone", "12345")
    page.locator('#tags input[value="hypertension"]').check()
    page.locator("#sign-submit").click()
    expect(page.locator('[data-error-for="phone"]')).to_have_text("联系电话格式不正确")
    expect(page.locator("#phone")).to_have_attribute("aria-invalid", "true")
    page.fill("#phone", "13900001111")
    page.locator("#sign-submit").click()
    expect(page.locator('[data-error-for="id_number"]')).to_have_text("身份证号校验码错误")
    expect(page.locator('[data-error-for="phone"]')).to_have_text("")
    expect(page.locator("#id_number")).to_have_attribute("aria-invalid", "true")
    page.fill("#id_number", good)
    expect(page.locator("#id-hint")).to_have_text("出生日期 1961-08-15 · 男")
    page.locator("#sign-submit").click()
    page.wait_for_url(re.compile(r"/residents/\d+$"))
    expect(page.locator("#notice")).to_have_text("签约成功")
    expect(page.locator("#name")).to_have_text("吴新签")
    expect(page.locator('#fields [data-field="phone"]')).to_have_text("139****1111")
    new_id = int(page.url.rsplit("/", 1)[1])
    page.locator("#back").click()
    expect(page.locator("#people li")).to_have_count(5)
    assert _shown(page) == team1 | {new_id}
    expect(page.locator(f'#people li[data-id="{new_id}"]')).to_contain_text("吴新签")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_another_team_sees_none_of_them_and_the_county_picks_teams(tree_client, world, residents, live, desk):
    expect = test_browser.expect
    page, ids = desk, residents.ids
    _sign_in_here(page, live, _member(tree_client, world.colleague))
    expect(page.locator("#people li")).to_have_count(2)
    assert _shown(page) == {ids["D"], ids["E"]}
    expect(page.locator('#counts [data-filter="overdue"] b')).to_have_text("1")
    # Another team's resident, opened by address: not found, like a missing one.
    page.goto(f"{live}{PAGES}residents/{ids['A']}")
    expect(page.locator("#status-text")).to_have_text("未找到该记录，或不在您的团队范围内")
    expect(page.locator("#app")).to_be_hidden()

    # The county administrator (signed in afresh): all teams in pages of 20, or one team picked.
    for n in range(15):
        _sign(tree_client, world.colleague, residents.team2_id, 500 + n, f"居民{n}", [])
    page.evaluate("sessionStorage.clear()")
    _sign_in_here(page, live, _member(tree_client, world.county_admin))
    expect(page.locator("#people li")).to_have_count(20)
    expect(page.locator("#total")).to_have_text("共 21 人")
    expect(page.locator("#page-of")).to_have_text("第 1 / 2 页")
    expect(page.locator("#prev")).to_be_disabled()
    page.locator("#next").click()
    expect(page.locator("#people li")).to_have_count(1)
    expect(page.locator("#next")).to_be_disabled()
    assert "page=2" in page.url
    expect(page.locator("#f-team")).to_be_visible()
    expect(page.locator("#f-team option")).to_have_count(3)
    page.select_option("#f-team", str(residents.team2_id))
    expect(page.locator("#people li")).to_have_count(17)
    assert {ids["D"], ids["E"]} <= _shown(page) and not _shown(page) & {ids[k] for k in "ABCG"}
    assert f"team_id={residents.team2_id}" in page.url and "page=" not in page.url
    expect(page.locator("#pager button")).to_have_count(0)
    # Signing starts on the picked team.
    page.locator("#sign-link").click()
    expect(page.locator("#team_id")).to_have_value(str(residents.team2_id))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_expired_token_is_refreshed_once_and_a_dead_session_signs_in_again(
    tree_app, tree_client, world, residents, live, phone
):
    """The card's two parallel calls share one refresh (session.js); a refused refresh goes to the shell, which
    comes back to the card."""
    import dataclasses

    from workbench.auth.tokens import issue_access_token

    expect = test_browser.expect
    page, doctor = phone, _member(tree_client, world.doctor)
    card = f"{live}{PAGES}residents/{residents.ids['B']}"
    _sign_in_here(page, live, doctor)
    expect(page.locator("#people li")).to_have_count(4)
    stored = page.evaluate("JSON.parse(sessionStorage.getItem('wb.tokens'))")
    settings = tree_app.config["SETTINGS"]
    member_id = tree_client.get("/api/me", headers=world.doctor).get_json()["member"]["id"]
    stale = issue_access_token(
        dataclasses.replace(settings, access_token_seconds=-60),
        member_id=member_id,
        corp_id=settings.dingtalk.corp_id,
        userid=doctor.userid,
    )
    page.evaluate("t => sessionStorage.setItem('wb.tokens', JSON.stringify(t))", {**stored, "access_token": stale})
    refreshes: list[str] = []
    page.on("request", lambda r: refreshes.append(r.url) if r.url.endswith("/api/auth/refresh") else None)
    page.goto(card)
    expect(page.locator("#name")).to_have_text("李秀英")
    assert len(refreshes) == 1

    # A refresh token that no longer works: the shell's picker, then straight back to the card.
    page.evaluate(
        "t => sessionStorage.setItem('wb.tokens', JSON.stringify(t))",
        {"access_token": stale, "refresh_token": "revoked", "token_type": "Bearer"},
    )
    page.goto(card)
    page.wait_for_url(re.compile(r"/h5/\?next="))
    pick(page, doctor)
    page.wait_for_url(card)
    expect(page.locator("#name")).to_have_text("李秀英")
