"""The clinicians' H5 pages (`/h5/apps/referral/`) and the form's `/api/referrals/targets`.

Both backends: the pages are static shells (hashed gzipped scripts, the shell's CSP) and the targets a township
doctor may refer to are their county's institutions. In a browser (Playwright on Debian's Chromium, the embedded
SQLite like the family-doctor page tests): a township doctor signs in through the sandbox picker and files an
up-referral through the form — the server's errors (missing consent, unknown ICD-10 code) next to their fields,
then correctly with the ICD-10 search — and sees it in the outbox; a coordinator of the hospital sees it in the
inbox, accepts it with a slot, and the timeline shows both; nothing overflows a 375 px phone.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mini_apps.family_doctor import service as family_doctor
from mini_apps.referral.models import Referral, ReferralEvent
from tests.h5 import test_browser
from tests.h5.test_browser import Member, pick
from tests.referral.conftest import Person, ReferralWorld, id_number, up_payload
from tests.support.pages import page_config, static_shell
from workbench import db

API = "/api/referrals"
PAGES = "/h5/apps/referral/"

browser = test_browser.browser  # the shell's Chromium fixture, under the same name


def test_pages_are_static_shells_with_hashed_gzipped_scripts(tree_client):
    for path, script in ((PAGES, "home.js"), (PAGES + "new", "new.js"), (PAGES + "referrals/12", "referral.js")):
        static_shell(tree_client, path, ["common.js", script])
    assert page_config(tree_client.get(PAGES + "referrals/12").get_data(as_text=True))["referralId"] == 12
    icon = tree_client.get("/h5/static/icons/referral.svg")
    assert icon.status_code == 200 and icon.get_data(as_text=True).startswith("<svg")


def test_targets_are_the_county_institutions_with_their_departments(tree_client, ref_world: ReferralWorld):
    w = ref_world
    reply = tree_client.get(f"{API}/targets", headers=w.doctor.headers)
    assert reply.status_code == 200, reply.get_json()
    data = reply.get_json()
    assert [d["id"] for d in data["applicant_departments"]] == [w.grassroots_department_id]
    assert data["applicant_departments"][0]["institution_id"] == w.grassroots_institution_id
    by_id = {t["id"]: t for t in data["targets"]}
    assert by_id[w.hospital_id]["level"] == "medical_community_lead"
    assert w.hospital_department_id in {d["id"] for d in by_id[w.hospital_id]["departments"]}
    assert w.grassroots_institution_id not in by_id, "not one's own institution"

    # Another county's doctor is offered their own county, not this one.
    theirs = tree_client.get(f"{API}/targets", headers=w.other_county_doctor.headers).get_json()
    assert w.hospital_id not in {t["id"] for t in theirs["targets"]}
    assert theirs["targets"], "their county has institutions too"
    assert tree_client.get(f"{API}/targets").status_code == 401


# -- in a browser -----------------------------------------------------------------------------------------------


def _sign_in_here(page, live: str, person: Person) -> None:
    """Open the app not signed in: the shell's picker, then back to the app's home."""
    page.context.clear_cookies()
    page.goto(live + PAGES)
    page.evaluate("sessionStorage.clear()")
    page.goto(live + PAGES)
    page.wait_for_url(re.compile(r"/h5/\?next="))
    pick(page, Member(person.userid, person.name, "", ""))
    page.wait_for_url(re.compile(re.escape(live + PAGES) + r"(\?.*)?$"))


def _fits(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "fits a 375 px phone"


def _referrals(app) -> list[Referral]:
    with app.app_context():
        return list(db.session().scalars(sa.select(Referral)))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_township_doctor_files_an_up_referral_and_the_hospital_accepts_it(
    tree_app, tree_client, ref_world: ReferralWorld, live, phone
):
    expect = test_browser.expect
    page, w = phone, ref_world
    coordinator = w.coordinators[0]
    # The hospital department publishes tomorrow morning's capacity, for the slot picker.
    tomorrow = family_doctor.today() + timedelta(days=1)
    reply = tree_client.put(
        f"{API}/slots",
        json={"department_id": w.hospital_department_id, "day": str(tomorrow), "half_day": "am", "capacity": 3},
        headers=coordinator.headers,
    )
    assert reply.status_code == 200, reply.get_json()

    _sign_in_here(page, live, w.doctor)
    expect(page.locator("#tab-outbox")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator('#counts [data-filter=""] b')).to_have_text("0")
    _fits(page)

    # The form: up to the county hospital's department, a patient typed in.
    page.locator("#new-link").click()
    page.wait_for_url(live + PAGES + "new")
    expect(page.locator("#referral-form")).to_be_visible()
    expect(page.locator("#applicant-field")).to_be_hidden()  # one department to refer from: no question
    page.select_option("#direction", "up")
    page.select_option("#mode", "outpatient")
    page.select_option("#priority", "urgent")
    page.select_option("#target_institution_id", str(w.hospital_id))
    page.select_option("#target_department_id", str(w.hospital_department_id))
    page.select_option("#reason_code", "further_care")
    page.fill("#reason_text", "血压控制不佳，需进一步诊治")
    number = id_number(31)
    page.locator('[id="patient.name"]').fill("王秀英")
    page.locator('[id="patient.id_number"]').fill(number)
    expect(page.locator("#id-hint")).to_contain_text("出生日期 1958-04-12")
    page.locator('[id="patient.phone"]').fill("13812345678")
    page.locator('[id="primary_diagnosis.code"]').fill("I99.99")
    page.fill("#c-chief_complaint", "头晕2周")
    page.fill("#c-allergies", "青霉素过敏")
    _fits(page)

    # No consent: the server refuses, next to the checkbox; nothing stored.
    page.locator("#submit").click()
    expect(page.locator('[data-error-for="consent"]')).to_have_text("提交转诊须患者知情同意")
    assert _referrals(tree_app) == []
    # Consent, but an unknown diagnosis code: next to the diagnosis.
    page.check("#consent")
    page.locator("#submit").click()
    expect(page.locator('[data-error-for="primary_diagnosis.code"]')).not_to_be_empty()
    expect(page.locator('[data-error-for="consent"]')).to_be_empty()
    expect(page.locator('[id="primary_diagnosis.code"]')).to_have_attribute("aria-invalid", "true")
    assert _referrals(tree_app) == []

    # The ICD-10 search: 拼音首字母 finds 高血压; a secondary diagnosis too.
    page.locator('[id="primary_diagnosis.code"]').fill("gxy")
    page.locator('#primary-suggest button[data-code="I10"]').click()
    expect(page.locator('[id="primary_diagnosis.code"]')).to_have_value("I10")
    expect(page.locator("#primary-name")).to_contain_text("高血压")
    page.fill("#secondary-q", "E11.9")
    page.locator('#secondary-suggest button[data-code="E11.9"]').click()
    expect(page.locator('#secondary [data-code="E11.9"]')).to_be_visible()
    page.locator("#submit").click()

    page.wait_for_url(re.compile(re.escape(live + PAGES) + r"referrals/\d+\?created=1$"))
    [referral] = _referrals(tree_app)
    assert (referral.state, referral.direction, referral.priority) == ("submitted", "up", "urgent")
    assert referral.target_department_id == w.hospital_department_id and referral.consent
    expect(page.locator("#state .badge")).to_have_text("待接收")
    expect(page.locator("#priority .badge.p-urgent")).to_have_text("加急")
    expect(page.locator("#details")).to_contain_text("I10")
    expect(page.locator("#details")).to_contain_text("E11.9")
    expect(page.locator("#clinical")).to_contain_text("青霉素过敏")
    expect(page.locator('#actions [data-action="cancel"]')).to_be_visible()  # the applicant may withdraw
    expect(page.locator('#actions [data-action="accept"]')).to_have_count(0)
    expect(page.locator('#timeline li[data-action="submit"]')).to_have_count(1)
    assert number not in page.locator("body").inner_text(), "the ID number only masked"
    _fits(page)

    # The outbox: the row and its count.
    page.locator("#back").click()
    row = page.locator(f'#referrals li[data-id="{referral.id}"]')
    expect(row).to_contain_text(referral.referral_no)
    expect(row).to_contain_text("I10")
    expect(row.locator(".badge.submitted")).to_have_text("待接收")
    expect(page.locator('#counts [data-filter=""] b')).to_have_text("1")
    expect(page.locator('#counts [data-filter="submitted"] b')).to_have_text("1")
    page.select_option("#f-priority", "green")
    expect(page.locator("#referrals li")).to_have_count(0)
    page.select_option("#f-priority", "")
    expect(page.locator("#referrals li")).to_have_count(1)
    page.locator("#tab-inbox").click()
    expect(page.locator("#empty")).to_be_visible()  # not theirs to receive

    # The hospital's referral coordinator: the inbox, the referral, 接收 with tomorrow morning's slot.
    _sign_in_here(page, live, coordinator)
    page.locator("#tab-inbox").click()
    row = page.locator(f'#referrals li[data-id="{referral.id}"]')
    expect(row).to_contain_text("来自")
    expect(page.locator('#counts [data-filter="submitted"] b')).to_have_text("1")
    _fits(page)
    row.locator("a").click()
    expect(page.locator('#actions [data-action="accept"]')).to_be_visible()
    expect(page.locator("#clinical")).to_contain_text("头晕2周")  # theirs to act on: the record is shared
    # 退回 needs a reason: asked for next to the field, nothing sent.
    page.locator('#actions [data-action="reject"]').click()
    expect(page.locator('#action-form [data-error-for="reason"]')).to_have_text("请填写退回原因")
    expect(page.locator("#state .badge")).to_have_text("待接收")
    slot = f"{tomorrow}|am"
    expect(page.locator(f'#slot option[value="{slot}"]')).to_have_count(1)
    page.select_option("#slot", slot)
    page.locator('#actions [data-action="accept"]').click()
    expect(page.locator("#notice")).to_have_text("已接收")
    expect(page.locator("#state .badge")).to_have_text("已预约")
    expect(page.locator("#details")).to_contain_text(f"{tomorrow} 上午")
    expect(page.locator('#timeline li[data-action="submit"]')).to_have_count(1)
    expect(page.locator('#timeline li[data-action="accept"]')).to_contain_text(coordinator.name)
    _fits(page)

    # Accepted: 退回 no longer applies; 到诊 does.
    expect(page.locator('#actions [data-action="arrive"]')).to_be_visible()
    expect(page.locator('#actions [data-action="reject"]')).to_have_count(0)
    with tree_app.app_context():
        actions = list(
            db.session().scalars(
                sa.select(ReferralEvent.action)
                .where(ReferralEvent.referral_id == referral.id)
                .order_by(ReferralEvent.id)
            )
        )
    assert {"submit", "accept"} <= set(actions)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_signed_resident_is_picked_and_a_late_accept_is_told_who_won(
    tree_app, tree_client, ref_world: ReferralWorld, live, phone
):
    expect = test_browser.expect
    page, w = phone, ref_world
    # The township doctor is on a family-doctor team with a signed resident.
    reply = tree_client.post(
        "/api/family-doctor/teams",
        json={"institution_id": w.grassroots_institution_id, "name": "家庭医生一队"},
        headers=w.county_admin.headers,
    )
    assert reply.status_code == 201, reply.get_json()
    team = reply.get_json()["id"]
    reply = tree_client.post(
        f"/api/family-doctor/teams/{team}/members",
        json={"userid": w.doctor.userid, "role": "doctor"},
        headers=w.county_admin.headers,
    )
    assert reply.status_code == 200, reply.get_json()
    number = id_number(41)
    reply = tree_client.post(
        "/api/family-doctor/contracts",
        json={"name": "李秀英", "id_number": number, "phone": "13812345678", "team_id": team, "tags": []},
        headers=w.doctor.headers,
    )
    assert reply.status_code == 201, reply.get_json()
    resident_id = reply.get_json()["id"]

    _sign_in_here(page, live, w.doctor)
    page.goto(live + PAGES + "new")
    expect(page.locator("#resident-field")).to_be_visible()
    page.select_option("#direction", "up")
    page.select_option("#mode", "outpatient")
    page.select_option("#priority", "urgent")
    page.select_option("#target_institution_id", str(w.hospital_id))
    page.select_option("#target_department_id", str(w.hospital_department_id))
    page.select_option("#reason_code", "capability")
    page.fill("#resident-q", "李秀")
    page.locator(f'#resident-suggest button[data-id="{resident_id}"]').click()
    expect(page.locator("#resident-picked")).to_contain_text("李秀英")
    expect(page.locator('[id="patient.name"]')).to_be_disabled()
    page.check("#consent")
    page.locator('[id="primary_diagnosis.code"]').fill("i63.9")  # typed, not picked: the server knows it
    page.locator("#submit").click()
    page.wait_for_url(re.compile(r"/referrals/\d+\?created=1$"))
    [referral] = _referrals(tree_app)
    assert referral.resident_id == resident_id and referral.primary_diagnosis_code == "I63.9"
    assert number not in page.locator("body").inner_text()

    # A 绿色通道 referral (filed over the API) stands out in the list; the other shows 加急.
    reply = tree_client.post(
        API, json=up_payload(w, priority="green", mode="emergency", submit=True), headers=w.doctor.headers
    )
    assert reply.status_code == 201, reply.get_json()
    green = reply.get_json()["id"]
    page.locator("#back").click()
    expect(page.locator("#referrals li")).to_have_count(2)
    expect(page.locator(f'#referrals li.green[data-id="{green}"] .badge.p-green')).to_have_text("绿色通道")
    expect(page.locator(f'#referrals li[data-id="{referral.id}"] .badge.p-urgent')).to_have_text("加急")
    expect(page.locator(f'#referrals li[data-id="{referral.id}"]')).not_to_have_class("green")
    page.select_option("#f-priority", "green")
    expect(page.locator("#referrals li")).to_have_count(1)
    _fits(page)

    # A coordinator has the referral open; a colleague accepts first; their 接收 is told who did.
    _sign_in_here(page, live, w.coordinators[0])
    page.goto(live + PAGES + f"referrals/{referral.id}")
    expect(page.locator('#actions [data-action="accept"]')).to_be_visible()
    reply = tree_client.post(f"{API}/{referral.id}/actions/accept", json={}, headers=w.coordinators[1].headers)
    assert reply.status_code == 200, reply.get_json()
    page.locator('#actions [data-action="accept"]').click()
    expect(page.locator("#notice")).to_contain_text(f"已由{w.coordinators[1].name}接收")
    expect(page.locator("#state .badge")).to_have_text("已接收")
    expect(page.locator('#actions [data-action="accept"]')).to_have_count(0)
    expect(page.locator('#timeline li[data-action="accept"]')).to_contain_text(w.coordinators[1].name)


def test_the_form_shell_carries_the_down_referral_and_draftpage_config(tree_client):
    html = tree_client.get(PAGES + "new").get_data(as_text=True)
    config = json.loads(re.search(r'<script type="application/json" id="wb-config">(.*?)</script>', html, re.S)[1])
    assert config["downClinical"] == [
        ["rehab_plan", "康复计划"],
        ["medication_list", "用药清单"],
        ["follow_up_schedule", "随访安排"],
    ]
    assert config["downFrom"] == ["completed", "closed"] and config["downReason"] == "rehab_chronic"
    assert ["down", "下转"] in config["directions"]
    assert config["create"] == PAGES + "new"
    # The form's places for the down-referral's parent and fields, and the current patient of a reopened draft.
    markers = ('id="parent-card"', 'data-error-for="parent_id"', 'id="down-card"', 'id="down-clinical"')
    for marker in (*markers, 'id="patient-current"'):
        assert marker in html, marker
    # The referral page links to the form (编辑草稿, 转回基层).
    assert 'id="links-card"' in tree_client.get(PAGES + "referrals/3").get_data(as_text=True)


def _completed_up_referral(client, w: ReferralWorld) -> int:
    """An up-referral from the township doctor that the hospital department has finished treating (over the API)."""
    reply = client.post(API, json=up_payload(w, submit=True), headers=w.doctor.headers)
    assert reply.status_code == 201, reply.get_json()
    rid = reply.get_json()["id"]
    for action in ("accept", "arrive", "start_treatment", "complete"):
        reply = client.post(f"{API}/{rid}/actions/{action}", json={}, headers=w.receiver.headers)
        assert reply.status_code == 200, (action, reply.get_json())
    return rid


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_hospital_refers_a_treated_patient_back_down_through_the_form(
    tree_app, tree_client, ref_world: ReferralWorld, live, phone
):
    expect = test_browser.expect
    page, w = phone, ref_world
    parent = _completed_up_referral(tree_client, w)

    # The treating clinician opens the finished up-referral: 转回基层 is offered.
    _sign_in_here(page, live, w.receiver)
    page.goto(live + PAGES + f"referrals/{parent}")
    expect(page.locator("#state .badge")).to_have_text("诊疗完毕")
    page.locator("#refer-down").click()
    page.wait_for_url(live + PAGES + f"new?parent={parent}")

    # The form, prefilled from the up-referral: down, back to the township institution, its patient and diagnosis.
    expect(page.locator(".bar h1")).to_have_text("转回基层")
    expect(page.locator("#parent-info")).to_contain_text("转回自上转")
    expect(page.locator("#direction")).to_have_value("down")
    expect(page.locator("#direction")).to_be_disabled()
    expect(page.locator("#target_institution_id")).to_have_value(str(w.grassroots_institution_id))
    expect(page.locator("#target_department_id")).to_have_value(str(w.grassroots_department_id))
    expect(page.locator("#reason_code")).to_have_value("rehab_chronic")
    expect(page.locator('[id="primary_diagnosis.code"]')).to_have_value("I10")
    expect(page.locator('#secondary [data-code="E11.9"]')).to_be_visible()
    expect(page.locator("#patient-current")).to_contain_text("沿用上转患者信息")
    expect(page.locator('[id="patient.name"]')).to_be_hidden()
    expect(page.locator("#down-card")).to_be_visible()
    page.fill("#c-rehab_plan", "低盐饮食，每日步行30分钟")
    page.fill("#c-medication_list", "氨氯地平 5mg qd")
    page.fill("#c-follow_up_schedule", "出院后7天首次随访，此后每月一次")
    page.fill("#c-treatment", "住院调整降压方案")
    _fits(page)

    # No consent: refused next to the checkbox, nothing stored.
    page.locator("#submit").click()
    expect(page.locator('[data-error-for="consent"]')).to_have_text("提交转诊须患者知情同意")
    assert len(_referrals(tree_app)) == 1
    page.check("#consent")
    page.locator("#submit").click()

    page.wait_for_url(re.compile(re.escape(live + PAGES) + r"referrals/\d+\?created=1$"))
    [child] = [r for r in _referrals(tree_app) if r.id != parent]
    assert (child.direction, child.state, child.parent_id) == ("down", "submitted", parent)
    assert child.target_institution_id == w.grassroots_institution_id
    assert child.target_department_id == w.grassroots_department_id
    assert child.applicant_institution_id == w.hospital_id and child.reason_code == "rehab_chronic"
    with tree_app.app_context():
        parent_row = db.session().get(Referral, parent)
        assert child.patient_id_hash == parent_row.patient_id_hash, "the up-referral's patient"
    expect(page.locator("#state .badge")).to_have_text("待接收")
    expect(page.locator("#clinical")).to_contain_text("低盐饮食，每日步行30分钟")
    expect(page.locator("#clinical")).to_contain_text("出院后7天首次随访")
    expect(page.locator("#clinical")).to_contain_text("氨氯地平 5mg qd")
    expect(page.locator("#refer-down")).to_have_count(0)

    # The township doctor finds it in the inbox with the rehab plan shared.
    _sign_in_here(page, live, w.doctor)
    page.locator("#tab-inbox").click()
    row = page.locator(f'#referrals li[data-id="{child.id}"]')
    expect(row).to_contain_text("下转")
    row.locator("a").click()
    expect(page.locator("#clinical")).to_contain_text("随访安排")
    expect(page.locator('#actions [data-action="accept"]')).to_be_visible()
    # Not theirs to refer down from: the township doctor is the up-referral's applicant.
    page.goto(live + PAGES + f"referrals/{parent}")
    expect(page.locator("#state .badge")).to_have_text("诊疗完毕")
    expect(page.locator("#refer-down")).to_have_count(0)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_draft_is_saved_reopened_from_the_outbox_edited_and_submitted(
    tree_app, tree_client, ref_world: ReferralWorld, live, phone
):
    expect = test_browser.expect
    page, w = phone, ref_world
    _sign_in_here(page, live, w.doctor)
    page.goto(live + PAGES + "new")
    expect(page.locator("#down-card")).to_be_hidden()  # up by default: no rehab fields
    page.select_option("#direction", "up")
    page.select_option("#mode", "outpatient")
    page.select_option("#target_institution_id", str(w.hospital_id))
    page.select_option("#target_department_id", str(w.hospital_department_id))
    page.select_option("#reason_code", "further_care")
    page.fill("#reason_text", "血糖控制不佳")
    number = id_number(63)
    page.locator('[id="patient.name"]').fill("孙桂芳")
    page.locator('[id="patient.id_number"]').fill(number)
    page.locator('[id="primary_diagnosis.code"]').fill("E11.9")
    page.fill("#c-chief_complaint", "口干多饮1月")
    page.fill("#c-allergies", "磺胺过敏")
    page.locator("#draft").click()  # no consent needed for a draft
    page.wait_for_url(re.compile(r"/referrals/\d+\?created=1$"))
    [draft] = _referrals(tree_app)
    assert draft.state == "draft" and not draft.consent
    expect(page.locator("#state .badge")).to_have_text("草稿")
    expect(page.locator("#edit-draft")).to_be_visible()

    # The outbox opens the draft back in the form, filled in.
    page.locator("#back").click()
    row = page.locator(f'#referrals li[data-id="{draft.id}"]')
    expect(row.locator(".badge.draft")).to_have_text("草稿")
    row.locator("a").click()
    page.wait_for_url(live + PAGES + f"new?id={draft.id}")
    expect(page.locator(".bar h1")).to_have_text("编辑草稿")
    expect(page.locator("#form-mode")).to_contain_text(draft.referral_no)
    expect(page.locator("#direction")).to_have_value("up")
    expect(page.locator("#target_department_id")).to_have_value(str(w.hospital_department_id))
    expect(page.locator("#reason_text")).to_have_value("血糖控制不佳")
    expect(page.locator('[id="primary_diagnosis.code"]')).to_have_value("E11.9")
    expect(page.locator("#c-allergies")).to_have_value("磺胺过敏")
    expect(page.locator("#patient-current")).to_contain_text("孙桂芳")
    expect(page.locator("#consent")).not_to_be_checked()
    assert number not in page.locator("body").inner_text(), "the ID number only masked"
    _fits(page)

    # Edited: a clinical field cleared, the reason and priority changed; 提交 without consent first.
    page.fill("#c-allergies", "")
    page.fill("#reason_text", "血糖控制不佳，需调整胰岛素方案")
    page.select_option("#priority", "urgent")
    page.locator("#submit").click()
    expect(page.locator('[data-error-for="consent"]')).to_have_text("提交转诊须患者知情同意")
    with tree_app.app_context():
        assert db.session().get(Referral, draft.id).state == "draft"
    page.check("#consent")
    page.locator("#submit").click()
    page.wait_for_url(re.compile(re.escape(live + PAGES) + f"referrals/{draft.id}" + r"\?created=1$"))
    expect(page.locator("#state .badge")).to_have_text("待接收")
    expect(page.locator("#edit-draft")).to_have_count(0)
    expect(page.locator("#clinical")).to_contain_text("口干多饮1月")
    expect(page.locator("#clinical")).not_to_contain_text("磺胺过敏")
    [sent] = _referrals(tree_app)
    assert (sent.id, sent.state, sent.priority, sent.consent) == (draft.id, "submitted", "urgent", True)
    assert sent.reason_text == "血糖控制不佳，需调整胰岛素方案" and sent.patient_id_hash == draft.patient_id_hash
    with tree_app.app_context():
        actions = list(
            db.session().scalars(
                sa.select(ReferralEvent.action).where(ReferralEvent.referral_id == draft.id).order_by(ReferralEvent.id)
            )
        )
    assert actions == ["create", "submit"]
    # Past its draft, the form sends it back to its page.
    page.goto(live + PAGES + f"new?id={draft.id}")
    page.wait_for_url(live + PAGES + f"referrals/{draft.id}")
