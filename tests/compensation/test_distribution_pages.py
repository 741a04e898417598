"""The internal distribution (二次分配) pages: `/h5/apps/compensation/settlements/<id>/distribution` and
`/h5/apps/compensation/my-shares` are static shells like the app's other pages (hashed, gzipped scripts, the
shell's CSP, no data in the page), and my-shares — the confirmation notice's link — opens for a plain clinician.
In a browser (Chromium, the embedded SQLite), on the settlement tests' county with per-doctor workload (the seed of
tests/compensation/test_distribution.py): the clinic's administrator goes from the approved settlement to 内部分配,
is told (the API's 409) to set a rule first, sets one with a coefficient above the maximum (the API's 422 next to
that very coefficient, nothing stored), fixes it, generates the distribution (the shares, their totals and the
figures are the API's, Σ amounts = the pool = the rule's share of the basis), redoes it, opens either revision,
confirms it; the county's administrator sees it read-only; a staff member opens my-shares on a phone and sees
exactly their own share.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from mini_apps.compensation import distribution
from mini_apps.compensation.models import DISTRIBUTION_STATES
from org_sync.models import OrgMember
from tests.compensation.test_distribution import PERSONAL, _admin_of, _approved_advance, _doctor_rows, _staff
from tests.compensation.test_pages import _sign_in_here
from tests.compensation.test_settlement import World, r2
from tests.h5 import test_browser
from tests.support.auth import bearer, sign_in
from tests.support.pages import page_config, static_shell
from workbench import db

API = "/api/compensation"
PAGES = "/h5/apps/compensation/"

browser = test_browser.browser  # the shell's Chromium fixture, under the same name


# -- the shells -------------------------------------------------------------------------------------------------


def test_the_distribution_pages_are_static_shells_with_hashed_gzipped_scripts(tree_client):
    assert distribution.MY_SHARES_URL == PAGES + "my-shares"  # where the confirmation notice links
    for path, script in (
        (PAGES + "settlements/12/distribution", "distribution.js"),
        (distribution.MY_SHARES_URL, "my_shares.js"),
    ):
        _, config = static_shell(tree_client, path, ["common.js", script])
        assert config["api"] == API
        assert dict(config["distributionStates"]) == DISTRIBUTION_STATES
        assert config["managerRoles"] == list(distribution.MANAGER_ROLES)
        assert config.get("settlementId") == (12 if script == "distribution.js" else None)
    # my-shares leads back to the workbench: a clinician has no role the app's landing page serves.
    assert page_config(tree_client.get(distribution.MY_SHARES_URL).get_data(as_text=True))["list"] == "/h5/"
    assert tree_client.get(PAGES + "settlements/x/distribution").status_code == 404


def test_my_shares_opens_for_a_plain_clinician(tree_client, pc_world):
    # No role the catalogue serves (the app is not offered to them), yet the notice's page reads their own rows.
    apps = tree_client.get("/api/workbench/apps", headers=pc_world.clinician.headers).get_json()
    assert "compensation" not in [a["code"] for g in apps["groups"] for a in g["apps"]]
    assert tree_client.get(distribution.MY_SHARES_URL).status_code == 200
    reply = tree_client.get(f"{API}/my-shares", headers=pc_world.clinician.headers)
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json() == {"items": []}


# -- in a browser -----------------------------------------------------------------------------------------------


def _name(app, member_id: int) -> str:
    with app.app_context():
        return db.session().scalar(sa.select(OrgMember.name).where(OrgMember.id == member_id))


def _data(locator) -> str | None:
    return locator.get_attribute("data-value")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_institution_sets_its_rule_distributes_and_confirms_and_staff_see_their_own_share(
    tree_app, tree_client, sandbox, world: World, live, desk, phone
):
    expect = test_browser.expect
    page, pc = desk, world.pc
    clinic, staff = _staff(tree_app, pc)
    _doctor_rows(tree_app, clinic, staff, PERSONAL, "2026-03")
    settled = _approved_advance(tree_app, tree_client, world, clinic)
    admin = _admin_of(tree_client, sandbox, pc, clinic)  # the clinician, now the clinic's administrator
    rules_url = f"{API}/institutions/{clinic}/distribution-rules"

    # From the approved settlement: 内部分配, offered to the institution's administrator.
    _sign_in_here(page, live, pc.clinician.userid, pc.clinician.name, f"{PAGES}settlements/{settled['id']}")
    page.locator("#distribution-link").click()
    page.wait_for_url(re.compile(re.escape(f"{live}{PAGES}settlements/{settled['id']}/distribution") + r"(\?.*)?$"))
    expect(page.locator("#rule-version")).to_have_text("尚未设置")
    expect(page.locator("#readonly-hint")).to_be_hidden()
    expect(page.locator("#revisions-empty")).to_be_visible()
    expect(page.locator("#generate")).to_be_visible()
    expect(page.locator("#confirm")).to_be_hidden()
    # Without a rule: the API's 409 above, nothing made.
    page.locator("#generate").click()
    no_rule = tree_client.post(f"{API}/settlements/{settled['id']}/distributions", headers=admin).get_json()["error"]
    assert no_rule["field"] == "rule"
    expect(page.locator("#notice")).to_have_text(no_rule["message"])
    expect(page.locator("#revisions-empty")).to_be_visible()

    # A rule with a coefficient above the maximum: the API's 422 next to that coefficient, nothing stored.
    page.fill("#f-pool_share", "0.6")
    page.fill("#f-average_share", "0.2")
    page.fill("#f-coefficient_min", "0.8")
    page.fill("#f-coefficient_max", "1.5")
    for member, coefficient in ((staff[1][0], "1.6"), (staff[2][0], "0.9")):
        page.locator("#add-coefficient").click()
        row = page.locator("#coefficients tbody tr").last
        row.locator('input[data-part="member_id"]').fill(str(member))
        row.locator('input[data-part="coefficient"]').fill(coefficient)
    page.locator('#coefficients tbody tr[data-index="0"] input[data-part="note"]').fill("科室负责人")
    bad = {
        "pool_share": "0.6",
        "average_share": "0.2",
        "default_coefficient": "1",
        "coefficient_min": "0.8",
        "coefficient_max": "1.5",
        "coefficients": [{"member_id": staff[1][0], "coefficient": "1.6"}],
    }
    refused = tree_client.put(rules_url, json=bad, headers=admin).get_json()["error"]
    assert refused["field"] == "coefficients.0.coefficient"
    page.locator("#save-rule").click()
    expect(page.locator('[data-error-for="coefficients.0.coefficient"]')).to_have_text(refused["message"])
    expect(page.locator('input[name="coefficients.0.coefficient"]')).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-error-for="coefficients.1.coefficient"]')).to_have_text("")
    assert tree_client.get(rules_url, headers=admin).get_json()["current"] is None

    # Fixed: version 1, as typed.
    page.locator('input[name="coefficients.0.coefficient"]').fill("1.2")
    page.locator("#save-rule").click()
    expect(page.locator("#notice")).to_have_text("已保存分配规则（第 1 版），生成分配方案时使用")
    rule = tree_client.get(rules_url, headers=admin).get_json()["current"]
    assert rule["version"] == 1 and rule["pool_share"] == "0.6000" and rule["cap_multiple"] is None
    assert [(c["member_id"], c["coefficient"], c["note"]) for c in rule["coefficients"]] == [
        (staff[1][0], "1.2000", "科室负责人"),
        (staff[2][0], "0.9000", None),
    ]
    expect(page.locator("#rule-version")).to_contain_text("第 1 版")
    expect(page.locator('input[name="coefficients.1.coefficient"]')).to_have_value("0.9000")

    # 生成分配方案: every figure and share is the API's; Σ amounts = the pool = 60 % of the basis.
    page.locator("#generate").click()
    expect(page.locator("#notice")).to_contain_text("已生成第 1 版分配方案（草稿）：3 人")
    listed = tree_client.get(f"{API}/institutions/{clinic}/distributions", headers=admin).get_json()["items"]
    assert [(d["settlement_id"], d["revision"], d["state"]) for d in listed] == [(settled["id"], 1, "draft")]
    got = tree_client.get(f"{API}/distributions/{listed[0]['id']}", headers=admin).get_json()
    pool = r2(Decimal(got["basis"]) * Decimal("0.6"))  # the basis is the API's (tested with distribution.py)
    assert Decimal(got["pool"]) == pool
    assert sum(Decimal(s["amount"]) for s in got["shares"]) == pool
    expect(page.locator("#distribution-state .badge")).to_have_text("草稿")
    for key in ("basis", "pool", "average_amount", "total_points", "point_value"):
        expect(page.locator(f'#figures [data-key="{key}"] .v')).to_have_attribute("data-value", got[key])
    expect(page.locator('#figures [data-key="pool"] .how')).to_have_text(got["computation"]["pool"])
    expect(page.locator('#figures [data-key="point_value"] .how')).to_have_text(got["computation"]["amount"])
    rows = page.locator("#shares tbody tr")
    expect(rows).to_have_count(len(got["shares"]))
    assert {int(m) for m in rows.evaluate_all("rs => rs.map(r => r.dataset.member)")} == {m for m, _ in staff}
    for share in got["shares"]:
        row = page.locator(f'#shares tbody tr[data-member="{share["member_id"]}"]')
        expect(row.locator('td[data-key="name"]')).to_contain_text(share["name"])
        expect(row.locator('.how[data-key="how"]')).to_have_text(share["how"])  # the person's amount written out
        for key in ("equivalents", "coefficient", "points", "amount"):
            assert _data(row.locator(f'td[data-key="{key}"]')) == share[key], (share["member_id"], key)
        expect(row.locator('td[data-key="capped"]')).to_have_text("已封顶" if share["capped"] else "")
    totals = page.locator("#share-totals")
    assert _data(totals.locator('td[data-key="amount"]')) == got["pool"] == f"{pool:.2f}"
    assert Decimal(_data(totals.locator('td[data-key="points"]'))) == Decimal(got["total_points"])
    assert Decimal(_data(totals.locator('td[data-key="equivalents"]'))) == sum(
        Decimal(s["equivalents"]) for s in got["shares"]
    )
    expect(page.locator("#distribution-hint")).to_have_text(
        re.compile(r"^个人金额合计 [\d,.]+ 元 = 绩效池 [\d,.]+ 元$")
    )

    # Redone (a draft may be, until one is confirmed): revision 2, the first superseded; each opens from the list.
    expect(page.locator("#generate")).to_have_text("重新生成分配方案")
    page.locator("#generate").click()
    expect(page.locator("#notice")).to_contain_text("已生成第 2 版分配方案（草稿）")
    listed = tree_client.get(f"{API}/institutions/{clinic}/distributions", headers=admin).get_json()["items"]
    assert [(d["revision"], d["state"]) for d in listed] == [(1, "superseded"), (2, "draft")]
    again = tree_client.get(f"{API}/distributions/{listed[1]['id']}", headers=admin).get_json()
    assert again["shares"] == got["shares"]  # the same rule and workload: the same shares
    revisions = page.locator("#revisions tbody tr")
    expect(revisions).to_have_count(2)
    expect(revisions.nth(0)).to_have_attribute("data-id", str(again["id"]))
    expect(revisions.nth(0)).to_contain_text("本页")
    expect(revisions.nth(1)).to_have_attribute("data-state", "superseded")
    revisions.nth(1).locator("button").click()
    page.wait_for_url(re.compile(rf"\?distribution={got['id']}$"))
    expect(page.locator("#distribution-state .badge")).to_have_text("已作废")
    expect(page.locator("#confirm")).to_be_hidden()
    page.locator("#revisions tbody tr").nth(0).locator("button").click()
    page.wait_for_url(re.compile(rf"\?distribution={again['id']}$"))
    expect(page.locator("#distribution-state .badge")).to_have_text("草稿")
    got = again

    # 确认: once; each person is told, the page shows it confirmed and offers nothing more.
    expect(page.locator("#confirm")).to_be_visible()
    page.locator("#confirm").click()
    expect(page.locator("#notice")).to_have_text("已确认第 2 版分配方案，每人将收到自己的分配通知")
    expect(page.locator("#distribution-state .badge")).to_have_text("已确认")
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator("#generate")).to_be_hidden()
    expect(page.locator('#revisions tbody tr[data-state="confirmed"]')).to_have_count(1)
    expect(page.locator('#revisions tbody tr[data-state="superseded"]')).to_have_count(1)
    detail = tree_client.get(f"{API}/distributions/{got['id']}", headers=admin).get_json()
    assert detail["state"] == "confirmed" and detail["shares"] == got["shares"]

    # The county's administrator reads it, read-only.
    page.evaluate("sessionStorage.clear()")
    county = tree_client.get("/api/me", headers=pc.county_admin.headers).get_json()["member"]
    _sign_in_here(page, live, county["userid"], county["name"], f"{PAGES}settlements/{settled['id']}/distribution")
    expect(page.locator("#readonly-hint")).to_be_visible()
    expect(page.locator("#rule-actions")).to_be_hidden()
    expect(page.locator("#f-pool_share")).to_be_disabled()
    expect(page.locator("#f-pool_share")).to_have_value("0.6000")
    expect(page.locator("#generate")).to_be_hidden()
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator("#shares tbody tr")).to_have_count(3)

    # A staff member opens the notice's page on a phone: exactly their own share.
    member, userid = staff[1]
    mine = next(s for s in got["shares"] if s["member_id"] == member)
    _sign_in_here(phone, live, userid, _name(tree_app, member), distribution.MY_SHARES_URL)
    rows = phone.locator("#my-shares tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-distribution", str(got["id"]))
    for key in ("amount", "equivalents", "coefficient", "points"):
        assert _data(rows.first.locator(f'td[data-key="{key}"]')) == mine[key], key
    expect(rows.first.locator('td[data-key="period"]')).to_contain_text("2026-03")
    expect(rows.first.locator('td[data-key="institution"]')).to_have_text(got["institution_name"])
    own = tree_client.get(f"{API}/my-shares", headers=bearer(sign_in(tree_client, sandbox, userid))).get_json()["items"]
    assert own[0]["how"] == mine["how"]
    expect(rows.first.locator('td[data-key="how"]')).to_have_text(own[0]["how"])
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375, "fits a 375 px phone"
