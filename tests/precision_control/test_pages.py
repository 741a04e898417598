"""The doctors' H5 task pages (`/h5/apps/precision_control/`): static shells like the other apps' pages, and in a
browser (Playwright on Debian's Chromium, the embedded SQLite like the other apps' browser tests) a doctor who
signs in through the sandbox picker, sees their tasks with the API's counts (not a task of another institution),
opens one (the person in the clear), submits the campaign's result form with a value out of range (the API's 422
next to the field) and then a good one (completed, the list's counts follow)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from mini_apps.precision_control.models import CampaignPerson, ControlTask, ControlTaskEvent
from org_sync.models import OrgMember
from tests.h5 import test_browser
from tests.h5.test_browser import Member, pick
from tests.precision_control.conftest import ControlWorld, campaign_body, id_number
from tests.support.pages import static_shell
from workbench import db
from workbench.auth.principal import load_principal

API = "/api/precision-control"
PAGES = "/h5/apps/precision_control/"

browser = test_browser.browser  # the shell's Chromium fixture, under the same name


@dataclass
class Worklist:
    campaign_id: int
    doctor: int  # member id of the clinician
    clinic: int  # the clinician's institution
    tasks: dict[str, int]  # by the person's division suffix: "001…" named doctor, "002…" clinic, "003…" elsewhere
    names: dict[str, str]  # the persons' full names, by the same keys


def doctor_and_clinic(app, world: ControlWorld) -> tuple[int, int]:
    """The clinician's member id and their institution's node id."""
    with app.app_context():
        session = db.session()
        doctor = session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == world.clinician.userid))
        return doctor, load_principal(session, doctor).institution_ids()[0]


def make_worklist(
    app,
    client,
    world: ControlWorld,
    codes: list[str],
    template: dict | None = None,
    rules: dict[str, dict] | None = None,
    **over,
) -> Worklist:
    """An active campaign of the county whose persons are routed by division: `…001…` to the clinician by name,
    `…002…` to their institution (nobody named), `…003…` to another institution of the county, and by `rules`
    ({prefix: target}); one task each. A code ending in 9 is urgent."""
    admin = world.county_admin.headers
    doctor, clinic = doctor_and_clinic(app, world)
    other = next(i for i in world.institution_ids if i != clinic)
    body = campaign_body(world.county_id, **over)
    if template is not None:
        body["task_template"] = template
    created = client.post(f"{API}/campaigns", json=body, headers=admin)
    assert created.status_code == 201, created.get_json()
    campaign_id = created.get_json()["id"]
    url = f"{API}/campaigns/{campaign_id}/dispatch-rules"
    for prefix, target in [
        ("001", {"node_id": clinic, "member_id": doctor}),
        ("002", {"node_id": clinic}),
        ("003", {"node_id": other}),
        *(rules or {}).items(),
    ]:
        reply = client.put(url, json={"division_prefix": world.division + prefix, **target}, headers=admin)
        assert reply.status_code == 200, reply.get_json()
    names = {code: f"赵{'甲乙丙丁戊己庚辛壬癸'[n]}{'明'[: n % 2]}" for n, code in enumerate(codes)}
    items = [
        {
            "name": names[code],
            "id_number": id_number(700 + n),
            "phone": f"1380000{n:04d}",
            "address": f"和平路{n}号",
            "division_code": world.division + code,
            "category": "发热",
            "priority": "urgent" if code.endswith("9") else "routine",
        }
        for n, code in enumerate(codes)
    ]
    pushed = client.post(f"{API}/campaigns/{campaign_id}/roster/items", json={"items": items}, headers=admin)
    assert pushed.status_code == 200, pushed.get_json()
    active = client.patch(f"{API}/campaigns/{campaign_id}", json={"state": "active"}, headers=admin)
    assert active.status_code == 200, active.get_json()
    with app.app_context():
        rows = db.session().execute(
            sa.select(CampaignPerson.division_code, ControlTask.id)
            .join(CampaignPerson, CampaignPerson.id == ControlTask.person_id)
            .where(ControlTask.campaign_id == campaign_id)
        )
        tasks = {code[6:]: task_id for code, task_id in rows}
    assert set(tasks) == set(codes)
    return Worklist(campaign_id, doctor, clinic, tasks, names)


# -- the shells -------------------------------------------------------------------------------------------------


def test_pages_are_static_shells_with_hashed_gzipped_scripts(tree_client):
    static_shell(tree_client, PAGES, ["common.js", "tasks.js"])
    _, config = static_shell(tree_client, PAGES + "tasks/12", ["common.js", "task.js"])
    assert config["taskId"] == 12 and config["api"] == "/api/precision-control"
    assert tree_client.get(PAGES + "tasks/x").status_code == 404


# -- in a browser -----------------------------------------------------------------------------------------------


def _sign_in_here(page, live: str, userid: str, name: str) -> None:
    """Open the app not signed in: the shell's picker, then back to the task list."""
    page.goto(live + PAGES)
    page.wait_for_url(re.compile(r"/h5/\?next="))
    pick(page, Member(userid, name, "", ""))
    page.wait_for_url(re.compile(re.escape(live + PAGES) + r"(\?.*)?$"))


def _shown(page) -> set[int]:
    return {int(i) for i in page.locator("#tasks li").evaluate_all("els => els.map(e => e.dataset.id)")}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_doctor_works_a_task_from_the_list_to_the_result(tree_app, tree_client, pc_world, live, phone):
    expect = test_browser.expect
    page, w = phone, pc_world
    work = make_worklist(tree_app, tree_client, w, ["001001", "001002", "002001", "003001"])
    mine = {work.tasks["001001"], work.tasks["001002"], work.tasks["002001"]}

    _sign_in_here(page, live, w.clinician.userid, w.clinician.name)
    # Their tasks (named, and the institution's unclaimed one); not the other institution's.
    expect(page.locator("#tasks li")).to_have_count(3)
    assert _shown(page) == mine and work.tasks["003001"] not in _shown(page)
    expect(page.locator('#counts [data-filter="open"] b')).to_have_text("3")
    expect(page.locator('#counts [data-filter="assigned"] b')).to_have_text("3")
    expect(page.locator('#counts [data-filter="overdue"] b')).to_have_text("0")
    expect(page.locator('#counts [data-filter="finished"] b')).to_have_text("0")
    expect(page.locator("#total")).to_have_text("共 3 项")
    expect(page.locator("#dashboard-link")).to_be_hidden()  # a clinician: no dashboard
    first = page.locator(f'#tasks li[data-id="{work.tasks["001001"]}"]')
    expect(first.locator(".name")).to_have_text(work.names["001001"][0] + "*")
    expect(first).to_contain_text("重点人群随访")
    expect(first).to_contain_text("截止 ")
    text = page.locator("body").inner_text()
    assert not any(name in text for name in work.names.values()), "names only masked in the list"
    assert "13800000000" not in text and id_number(700) not in text
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "fits a 375 px phone"
    page.locator('#counts [data-filter="finished"]').click()
    expect(page.locator("#empty")).to_be_visible()
    assert "filter=finished" in page.url
    page.locator('#counts [data-filter="assigned"]').click()
    expect(page.locator("#tasks li")).to_have_count(3)
    page.select_option("#f-campaign", str(work.campaign_id))
    # The list reloads for the campaign: let it finish before clicking into it (a click on the list being
    # replaced is lost, and the old list already has the three rows the count waits for).
    page.wait_for_load_state("networkidle")
    expect(page.locator("#tasks li")).to_have_count(3)
    assert f"campaign_id={work.campaign_id}" in page.url

    # One task: the person in the clear for the doctor who works it, the form from the template.
    first.locator("a").click()
    page.wait_for_url(f"{live}{PAGES}tasks/{work.tasks['001001']}")
    expect(page.locator('#person [data-field="name"]')).to_have_text(work.names["001001"])
    expect(page.locator('#person [data-field="id_number"]')).to_have_text(id_number(700))
    expect(page.locator('#person [data-field="phone"]')).to_have_text("13800000000")
    expect(page.locator('#person [data-field="address"]')).to_have_text("和平路0号")
    expect(page.locator("#state")).to_have_text("已分派")
    expect(page.locator("#step-accept")).to_be_visible()
    expect(page.locator('#result-fields [data-code="temperature"] input[type="number"]')).to_have_attribute("max", "43")
    expect(page.locator('#result-fields [data-code="result"] input[type="radio"]')).to_have_count(2)
    expect(page.locator("#timeline li")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    page.locator("#step-accept").click()
    expect(page.locator("#notice")).to_have_text("已接收")
    expect(page.locator("#state")).to_have_text("已接收")
    expect(page.locator("#step-accept")).to_have_count(0)
    expect(page.locator("#step-start")).to_be_visible()
    expect(page.locator('#timeline li[data-action="accept"]')).to_contain_text("接收 → 已接收")
    expect(page.locator('#details [data-field="member"]')).to_have_text(w.clinician.name)

    # A value out of range: the API's 422 next to the field, nothing stored.
    page.fill('[name="result.temperature"]', "50")
    page.locator('[name="result.result"][value="阴性"]').check()
    page.locator("#complete").click()
    expect(page.locator('[data-error-for="result.temperature"]')).to_have_text("“体温”不能大于 43")
    expect(page.locator('[name="result.temperature"]')).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#state")).to_have_text("已接收")
    with tree_app.app_context():
        assert db.session().get(ControlTask, work.tasks["001001"]).state == "accepted"
    # Then a good one: completed, the result shown, the form gone.
    page.fill('[name="result.temperature"]', "38.6")
    page.locator('[name="result.result"][value="阳性"]').check()
    page.fill("#note", "电话随访，建议就诊")
    page.locator("#complete").click()
    expect(page.locator("#notice")).to_have_text("已提交结果")
    expect(page.locator("#state")).to_have_text("已完成")
    expect(page.locator("#work-card")).to_be_hidden()
    expect(page.locator('#result [data-field="temperature"]')).to_have_text("38.6")
    expect(page.locator('#result [data-field="positive"]')).to_have_text("阳性发现")
    expect(page.locator('#timeline li[data-action="complete"]')).to_contain_text("备注：电话随访，建议就诊")
    with tree_app.app_context():
        session = db.session()
        task = session.get(ControlTask, work.tasks["001001"])
        assert (task.state, task.positive, task.result) == ("completed", True, {"temperature": 38.6, "result": "阳性"})
        steps = session.scalars(
            sa.select(ControlTaskEvent.action).where(ControlTaskEvent.task_id == task.id).order_by(ControlTaskEvent.id)
        ).all()
        assert steps == ["dispatch", "accept", "complete"]

    # Back to the list (same filters): the counts follow.
    page.locator("#back").click()
    page.wait_for_url(re.compile(re.escape(live + PAGES)))
    page.locator('#counts [data-filter="open"]').click()
    expect(page.locator("#tasks li")).to_have_count(2)
    expect(page.locator('#counts [data-filter="open"] b')).to_have_text("2")
    expect(page.locator('#counts [data-filter="assigned"] b')).to_have_text("2")
    expect(page.locator('#counts [data-filter="finished"] b')).to_have_text("1")
    page.locator('#counts [data-filter="finished"]').click()
    expect(page.locator("#tasks li")).to_have_count(1)
    expect(page.locator(f'#tasks li[data-id="{work.tasks["001001"]}"] .badge.positive')).to_have_text("阳性")

    # Another institution's task, opened by address: not found, like a missing one.
    page.goto(f"{live}{PAGES}tasks/{work.tasks['003001']}")
    expect(page.locator("#status-text")).to_have_text("未找到该任务，或不在您的范围内")
    expect(page.locator("#app")).to_be_hidden()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_county_sees_tasks_masked_with_the_dashboard_link_and_closes_one(
    tree_app, tree_client, pc_world, live, desk
):
    expect = test_browser.expect
    page, w = desk, pc_world
    work = make_worklist(tree_app, tree_client, w, ["001001", "003001"])
    admin = tree_client.get("/api/me", headers=w.county_admin.headers).get_json()["member"]
    _sign_in_here(page, live, admin["userid"], admin["name"])
    expect(page.locator("#tasks li")).to_have_count(2)  # the institutions' tasks it oversees
    expect(page.locator("#dashboard-link")).to_be_visible()
    expect(page.locator("#dashboard-link")).to_have_attribute("href", "/h5/apps/precision_control/dashboard/")
    page.locator("#f-mine").check()
    expect(page.locator("#empty")).to_be_visible()  # it works none of them itself
    page.locator("#f-mine").uncheck()
    expect(page.locator("#tasks li")).to_have_count(2)

    page.locator(f'#tasks li[data-id="{work.tasks["001001"]}"] a').click()
    expect(page.locator('#person [data-field="name"]')).to_have_text(work.names["001001"][0] + "*")
    expect(page.locator("#masked-hint")).to_be_visible()
    expect(page.locator('#person [data-field="address"]')).to_have_count(0)
    expect(page.locator("#work-card")).to_be_hidden()
    page.locator("#close").click()
    expect(page.locator('#close-form [data-error-for="reason"]')).to_have_text("请填写关闭原因")
    page.fill("#close-reason", "重复登记")
    page.locator("#close").click()
    expect(page.locator("#notice")).to_have_text("已关闭任务")
    expect(page.locator("#state")).to_have_text("已关闭")
    expect(page.locator("#close-card")).to_be_hidden()
    with tree_app.app_context():
        assert db.session().get(ControlTask, work.tasks["001001"]).state == "closed"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_doctor_starts_a_task_and_marks_another_unreachable_and_one_transferred(
    tree_app, tree_client, pc_world, live, phone
):
    expect = test_browser.expect
    page, w = phone, pc_world
    work = make_worklist(tree_app, tree_client, w, ["001001", "001002"])
    _sign_in_here(page, live, w.clinician.userid, w.clinician.name)
    expect(page.locator("#tasks li")).to_have_count(2)

    page.goto(f"{live}{PAGES}tasks/{work.tasks['001001']}")
    page.locator("#step-start").click()
    expect(page.locator("#notice")).to_have_text("已开始处理")
    expect(page.locator("#state")).to_have_text("处理中")
    expect(page.locator("#steps button")).to_have_count(0)
    page.locator("#unreachable-step summary").click()
    page.fill("#unreachable-reason", "电话停机，两次上门无人")
    page.locator("#unreachable").click()
    expect(page.locator('#unreachable-form [data-error-for="attempts"]')).to_have_text("请填写已联系次数（1–20次）")
    page.fill("#unreachable-attempts", "0")
    page.locator("#unreachable").click()
    expect(page.locator('#unreachable-form [data-error-for="attempts"]')).to_have_text("联系次数须为1到20之间的整数")
    expect(page.locator("#state")).to_have_text("处理中")
    page.fill("#unreachable-attempts", "3")
    page.locator("#unreachable").click()
    expect(page.locator("#notice")).to_have_text("已标记无法联系")
    expect(page.locator("#state")).to_have_text("无法联系")
    expect(page.locator("#work-card")).to_be_hidden()
    expect(page.locator('#timeline li[data-action="unreachable"]')).to_contain_text("原因：电话停机，两次上门无人")

    page.goto(f"{live}{PAGES}tasks/{work.tasks['001002']}")
    page.locator("#transfer-step summary").click()
    page.fill("#transfer-reason", "已迁居外省")
    page.locator("#transfer").click()
    expect(page.locator('#transfer-form [data-error-for="destination"]')).to_have_text("请填写转往地或接收单位")
    expect(page.locator('#transfer-form [data-error-for="reason"]')).to_have_text("")
    page.fill("#transfer-destination", "江苏省南京市鼓楼区")
    page.locator("#transfer").click()
    expect(page.locator("#state")).to_have_text("已转出")
    with tree_app.app_context():
        session = db.session()
        states = {session.get(ControlTask, t).state for t in work.tasks.values()}
    assert states == {"unreachable", "transferred"}
    page.locator("#back").click()
    expect(page.locator('#counts [data-filter="finished"] b')).to_have_text("2")
    expect(page.locator("#empty")).to_be_visible()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_field_type_of_a_template_is_a_form_input(tree_app, tree_client, pc_world, live, phone):
    expect = test_browser.expect
    page, w = phone, pc_world
    template = {
        "kind": "visit",
        "fields": [
            {"code": "place", "label": "随访地点", "type": "choice", "required": True,
             "choices": ["家中", "卫生院", "村卫生室", "电话", "其他"]},
            {"code": "symptoms", "label": "有无症状", "type": "bool", "required": True, "positive": True},
            {"code": "visited_on", "label": "随访日期", "type": "date", "required": True},
            {"code": "systolic", "label": "收缩压", "type": "number", "min": 60, "max": 260},
            {"code": "remark", "label": "情况说明", "type": "text"},
        ],
    }  # fmt: skip
    work = make_worklist(tree_app, tree_client, w, ["001001"], template=template)
    _sign_in_here(page, live, w.clinician.userid, w.clinician.name)
    page.goto(f"{live}{PAGES}tasks/{work.tasks['001001']}")
    expect(page.locator('#details [data-field="kind"]')).to_have_text("上门")
    # Five choices: a select; yes/no: two radios; a date input; a number with its bounds; free text.
    expect(page.locator('select[name="result.place"] option')).to_have_count(6)
    expect(page.locator('[name="result.symptoms"][type="radio"]')).to_have_count(2)
    expect(page.locator('input[name="result.visited_on"]')).to_have_attribute("type", "date")
    expect(page.locator('[data-code="systolic"] .hint')).to_have_text("范围：60 ～ 260")
    expect(page.locator('textarea[name="result.remark"]')).to_be_visible()

    # A required field left empty: the API names it.
    page.select_option('[name="result.place"]', "卫生院")
    page.locator('[name="result.symptoms"][value="false"]').check()
    page.locator("#complete").click()
    expect(page.locator('[data-error-for="result.visited_on"]')).to_have_text("请填写“随访日期”")
    page.fill('[name="result.visited_on"]', "2026-11-20")
    page.fill('[name="result.systolic"]', "142")
    page.fill('[name="result.remark"]', "血压偏高，已嘱复测")
    page.locator("#complete").click()
    expect(page.locator("#state")).to_have_text("已完成")
    expect(page.locator('#result [data-field="symptoms"]')).to_have_text("否")
    expect(page.locator('#result [data-field="positive"]')).to_have_text("未见阳性")
    with tree_app.app_context():
        task = db.session().get(ControlTask, work.tasks["001001"])
        assert task.positive is False
        assert task.result == {
            "place": "卫生院",
            "symptoms": False,
            "visited_on": "2026-11-20",
            "systolic": 142,
            "remark": "血压偏高，已嘱复测",
        }
