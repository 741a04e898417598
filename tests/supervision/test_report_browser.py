"""指标填报 in a real browser (Playwright on Debian's headless Chromium, the embedded SQLite like the other page
tests): a clinician of an institution signs in through the sandbox picker and reports one rate (FD-FULFILMENT) and
one qualitative item (an institution-level qualitative indicator the province's administrator adds to the catalog:
the seeded qualitative ones are reported by county bureaus); a numerator above its denominator shows the API's
message next to that input and stores nothing; the report opens pending with the evidence the approvers need;
a PDF is uploaded to the qualitative item (a text file is refused next to the file input); the institution's
administrator agrees on the DingTalk card (sandbox click on the served app) and 我的填报 shows 已计入, while a
refused report shows 已退回 with the reason.
"""

from __future__ import annotations

import re
from datetime import date

import pytest

from supervision.periods import last_complete
from tests.h5 import test_browser
from tests.h5.test_browser import Member, pick
from tests.supervision.test_reports import (  # noqa: F401  (fixtures)
    PDF,
    ReportWorld,
    _click,
    _report,
    _values,
    served,
    world,
)

API = "/api/supervision"
PAGES = "/h5/apps/supervision/"
QUALITATIVE = {
    "code": "T-QUAL-INST",
    "name": "机构家庭医生团队规范化评估",
    "dimension": "close_knit",
    "kind": "qualitative",
    "numerator_definition": "评估达标（1）或未达标（0）：团队组建、服务流程与考核制度齐全并已实施",
    "denominator_definition": "参加评估的机构数（每机构计 1）",
    "unit": "%",
    "scale": 100,
    "direction": "up",
    "period": "quarter",
    "collection": "manual",
    "source": "县级评估组现场评估（佐证材料）",
    "reporting_level": "institution",
    "bounded": True,
}

browser = test_browser.browser  # the shell's Chromium fixture, under the same name
expect = test_browser.expect


def _get(client, person, path: str, **query) -> dict:
    reply = client.get(f"{API}{path}", query_string=query, headers=person.headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def _fits(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "fits a 375 px phone"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_institution_files_a_report_uploads_evidence_and_sees_it_counted(
    tree_app,
    tree_client,
    sandbox,
    world: ReportWorld,  # noqa: F811
    served,  # noqa: F811
    phone,
):
    page, w = phone, world
    clinician = w.sup.clinician
    added = tree_client.post(f"{API}/indicators", json=QUALITATIVE, headers=w.sup.province_admin.headers)
    assert added.status_code == 201, added.get_json()
    quarter = last_complete(date.today(), "quarter").code

    # Signed out: the shell's picker, then back to the form at the clinician's institution and the last quarter.
    page.goto(served + PAGES + "reports/new")
    page.wait_for_url(re.compile(r"/h5/\?next="))
    pick(page, Member(clinician.userid, clinician.name, "", ""))
    page.wait_for_url(re.compile(re.escape(served + PAGES) + r"reports/new$"))
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#unit_id")).to_have_value(str(w.institution_id))
    expect(page.locator("#kind")).to_have_value("quarter")
    expect(page.locator("#period")).to_have_value(quarter)
    expect(page.locator("#evidence-hint")).to_be_visible()

    # The manual and mixed quarterly indicators an institution reports, grouped by dimension, with definitions.
    catalog = [
        i
        for c in ("manual", "mixed")
        for i in _get(tree_client, clinician, "/indicators", collection=c, active="true")["items"]
    ]
    expected = sorted(i["code"] for i in catalog if i["reporting_level"] == "institution" and i["period"] == "quarter")
    assert {"FD-FULFILMENT", "T-QUAL-INST"} <= set(expected)
    shown = sorted(page.locator("#groups fieldset.ritem").evaluate_all("els => els.map(e => e.dataset.code)"))
    assert shown == expected
    rate = page.locator('fieldset[data-code="FD-FULFILMENT"]')
    fulfilment = next(i for i in catalog if i["code"] == "FD-FULFILMENT")
    expect(rate.locator(".defs")).to_contain_text(fulfilment["numerator_definition"])
    expect(rate.locator(".defs")).to_contain_text(fulfilment["denominator_definition"])
    qualitative = page.locator('fieldset[data-code="T-QUAL-INST"]')
    expect(qualitative.locator("select")).to_be_visible()
    _fits(page)

    # A numerator above its denominator: the API's message next to that input, nothing stored.
    rate.locator('[name="items.FD-FULFILMENT.numerator"]').fill("60")
    rate.locator('[name="items.FD-FULFILMENT.denominator"]').fill("50")
    qualitative.locator("select").select_option("1")
    qualitative.locator("textarea").fill("团队组建与考核制度齐全，已按季度考核")
    page.locator("#submit").click()
    error = rate.locator('[data-error-for="items.FD-FULFILMENT.numerator"]')
    expect(error).not_to_be_empty()
    expect(rate.locator('[name="items.FD-FULFILMENT.numerator"]')).to_have_attribute("aria-invalid", "true")
    expect(qualitative.locator('[data-error-for="items.T-QUAL-INST.numerator"]')).to_be_empty()
    api_error = _report(
        tree_client,
        clinician,
        w.institution_id,
        quarter,
        [
            {"indicator": "T-QUAL-INST", "numerator": 1, "denominator": 1, "verdict": "x"},
            {"indicator": "FD-FULFILMENT", "numerator": 60, "denominator": 50},
        ],
    ).get_json()["error"]
    [message] = [e["message"] for e in api_error["errors"] if e["field"] == "items.1.numerator"]
    expect(error).to_have_text(message)
    assert _get(tree_client, clinician, "/reports")["total"] == 0

    # Corrected: submitted, the pending report opens with the evidence it still needs.
    rate.locator('[name="items.FD-FULFILMENT.numerator"]').fill("45")
    page.locator("#note").fill("第三季度履约情况")
    page.locator("#submit").click()
    page.wait_for_url(re.compile(re.escape(served + PAGES) + r"reports/\d+\?created=1$"))
    report_id = int(re.search(r"reports/(\d+)", page.url).group(1))
    report = _get(tree_client, clinician, f"/reports/{report_id}")
    assert report["state"] == "pending" and report["period"] == quarter
    assert {i["indicator"] for i in report["items"]} == {"FD-FULFILMENT", "T-QUAL-INST"}
    assert report["evidence_missing"] == ["T-QUAL-INST"]
    expect(page.locator("#state")).to_have_text("待审批")
    expect(page.locator("#notice")).to_contain_text("等待本单位管理员审批")
    expect(page.locator("#approvers")).to_contain_text(w.approver.userid)
    expect(page.locator("#missing")).to_contain_text("T-QUAL-INST")
    item = page.locator('#items li[data-code="T-QUAL-INST"]')
    expect(item.locator(".need")).to_be_visible()
    expect(page.locator('#items li[data-code="FD-FULFILMENT"] .figures')).to_have_text("分子 45 / 分母 50")

    # A text file is refused next to the file input; the PDF is taken.
    item.locator('input[type="file"]').set_input_files(
        {"name": "说明.txt", "mimeType": "text/plain", "buffer": b"just some text"}
    )
    item.locator("button", has_text="上传").click()
    expect(item.locator('[data-error-for="file"]')).not_to_be_empty()
    item.locator('input[type="file"]').set_input_files(
        {"name": "评估记录.pdf", "mimeType": "application/pdf", "buffer": PDF}
    )
    item.locator("button", has_text="上传").click()
    expect(page.locator("#notice")).to_contain_text("已上传 评估记录.pdf")
    item = page.locator('#items li[data-code="T-QUAL-INST"]')
    expect(item.locator("[data-evidence]")).to_have_text(["评估记录.pdf"])
    expect(item.locator(".need")).to_have_count(0)
    expect(page.locator("#missing")).to_be_hidden()
    report = _get(tree_client, clinician, f"/reports/{report_id}")
    assert report["evidence_missing"] == [] and [e["filename"] for e in report["evidence"]] == ["评估记录.pdf"]
    _fits(page)

    # 我的填报: pending; the administrator agrees on the card; then 已计入 and the values count.
    page.goto(served + PAGES + "reports")
    row = page.locator(f'#list li[data-id="{report_id}"]')
    expect(row.locator(".state")).to_have_text("待审批")
    _click(tree_app, sandbox, report, w.approver.userid, "approval.agree")
    page.reload()
    expect(row.locator(".state")).to_have_text("已计入")
    [counted] = _values(tree_app, w.institution_id, "FD-FULFILMENT", quarter)
    assert counted.is_current and float(counted.numerator) == 45
    [verdict] = _values(tree_app, w.institution_id, "T-QUAL-INST", quarter)
    assert float(verdict.numerator) == 1 and verdict.verdict == "团队组建与考核制度齐全，已按季度考核"

    # A refused report: 已退回 with the approver's reason, in the list and on the report.
    earlier = last_complete(date.today(), "quarter").previous().code
    refused = _report(
        tree_client,
        clinician,
        w.institution_id,
        earlier,
        [{"indicator": "FD-FULFILMENT", "numerator": 1, "denominator": 2}],
    )
    assert refused.status_code == 201, refused.get_json()
    _click(tree_app, sandbox, refused.get_json(), w.approver.userid, "approval.refuse")
    reason = _get(tree_client, clinician, f"/reports/{refused.get_json()['id']}")["decision_reason"]
    assert reason
    page.reload()
    refused_row = page.locator(f'#list li[data-id="{refused.get_json()["id"]}"]')
    expect(refused_row.locator(".state")).to_have_text("已退回")
    expect(refused_row.locator(".reason")).to_have_text("退回原因：" + reason)
    expect(page.locator("#list li")).to_have_count(2)
    page.locator('#states [data-state="accepted"]').click()
    expect(page.locator("#list li")).to_have_count(1)
    expect(page.locator("#list li").first).to_have_attribute("data-id", str(report_id))
    page.locator("#list li a.r-title").click()
    expect(page.locator("#state")).to_have_text("已计入")
    expect(page.locator("#approval")).to_have_text("已同意")
    expect(page.locator('#items input[type="file"]')).to_have_count(0)
    _fits(page)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_county_bureau_reports_county_level_indicators(tree_client, sup_world, live, phone):
    """A county bureau's member: the form offers only county-level indicators of the period kind picked, a
    negative figure is named next to its input, and the qualitative verdict asks for evidence once submitted."""
    page, w = phone, sup_world
    admin = w.county_admin
    year = last_complete(date.today(), "year").code
    page.goto(live + PAGES + "reports/new")
    page.wait_for_url(re.compile(r"/h5/\?next="))
    pick(page, Member(admin.userid, admin.name, "", ""))
    page.wait_for_url(re.compile(re.escape(live + PAGES) + r"reports/new$"))
    expect(page.locator("#unit_id")).to_have_value(str(w.county_id))
    catalog = [
        i
        for c in ("manual", "mixed")
        for i in _get(tree_client, admin, "/indicators", collection=c, active="true")["items"]
    ]
    county = [i for i in catalog if i["reporting_level"] == "county"]
    kinds = [
        name
        for kind, name in (("month", "月"), ("quarter", "季"), ("year", "年"))
        if any(i["period"] == kind for i in county)
    ]
    expect(page.locator("#kind option")).to_have_text(kinds)
    page.locator("#kind").select_option("year")
    expect(page.locator("#period")).to_have_value(year)
    expected = sorted(i["code"] for i in county if i["period"] == "year")
    shown = sorted(page.locator("#groups fieldset.ritem").evaluate_all("els => els.map(e => e.dataset.code)"))
    assert shown == expected and {"NCM-01", "NCM-04"} <= set(shown)
    # Grouped by dimension in the catalog's order: 紧密型 holds the three verdicts.
    close_knit = page.locator('#groups section[data-dimension="close_knit"] fieldset[data-kind="qualitative"]')
    expect(close_knit).to_have_count(3)

    doctors = page.locator('fieldset[data-code="NCM-04"]')
    doctors.locator('[name="items.NCM-04.numerator"]').fill("-3")
    doctors.locator('[name="items.NCM-04.denominator"]').fill("420000")
    verdict = page.locator('fieldset[data-code="NCM-01"]')
    verdict.locator("select").select_option("1")
    verdict.locator("textarea").fill("人财物统一管理制度已实施")
    page.locator("#submit").click()
    expect(doctors.locator('[data-error-for="items.NCM-04.numerator"]')).not_to_be_empty()
    expect(verdict.locator('[data-error-for="items.NCM-01.numerator"]')).to_be_empty()
    assert _get(tree_client, admin, "/reports")["total"] == 0

    doctors.locator('[name="items.NCM-04.numerator"]').fill("36")
    page.locator("#submit").click()
    page.wait_for_url(re.compile(re.escape(live + PAGES) + r"reports/\d+\?created=1$"))
    expect(page.locator("#state")).to_have_text("待审批")
    expect(page.locator("#period")).to_have_text(year)
    expect(page.locator('#items li[data-code="NCM-01"] .need')).to_be_visible()
    expect(page.locator('#items li[data-code="NCM-04"] .need')).to_have_count(0)
    expect(page.locator('#items li[data-code="NCM-04"] .figures')).to_have_text("分子 36 / 分母 420,000")
    _fits(page)
