"""The compensation H5 pages (`/h5/apps/compensation/`): static shells like the other apps' pages (hashed, gzipped
scripts, the shell's CSP, no data in the page), offered by the catalogue to administrators and not to a clinician;
and in a browser (Playwright on Debian's Chromium, the embedded SQLite like the other apps' browser tests), on the
seeded county of tests/compensation/test_settlement.py:

- a county administrator signs in through the sandbox picker, picks 月度预拨 2026-03, generates the settlements
  (every figure and the totals are the API's), gets the API's 422 next to the period and its 409 above the table,
  submits; the approver refuses on the card; the refused revision shows its reason and a corrected one is
  generated; one settlement shows its figures with their computation, its lines, the excluded units behind a line
  with their reasons, and its revision history;
- a clinician sees that they may not open it; once their institution's administrator, they see only their
  institution's settlements (every revision, with the refusal reason) on a phone, and not another's by address.
"""

from __future__ import annotations

import io
import re
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from mini_apps.compensation import settlement as settlement_module
from mini_apps.compensation.models import PACKAGES, SETTLEMENT_KINDS, SETTLEMENT_STATES
from org_sync.models import OrgNode
from tests.compensation.test_settlement import (  # noqa: F401  (`served`, `world`: fixtures, found by name)
    World,
    _click,
    served,
    world,
)
from tests.h5 import test_browser
from tests.h5.test_browser import Member, pick
from tests.support.pages import static_shell
from workbench import db

API = "/api/compensation"
PAGES = "/h5/apps/compensation/"
PERIOD = "2026-03"

browser = test_browser.browser  # the shell's Chromium fixture, under the same name


# -- the shells -------------------------------------------------------------------------------------------------


def test_pages_are_static_shells_with_hashed_gzipped_scripts(tree_client):
    for path, script in ((PAGES, "home.js"), (PAGES + "settlements/12", "settlement.js")):
        _, config = static_shell(tree_client, path, ["common.js", script])
        assert config["api"] == API
        assert dict(config["states"]) == SETTLEMENT_STATES and dict(config["kinds"]) == SETTLEMENT_KINDS
        assert config.get("settlementId") == (12 if script == "settlement.js" else None)
    assert tree_client.get(PAGES + "settlements/x").status_code == 404


def test_the_catalogue_offers_the_app_to_administrators_and_not_to_a_clinician(tree_client, pc_world):
    def entry(person) -> list[str]:
        reply = tree_client.get("/api/workbench/apps", headers=person.headers)
        assert reply.status_code == 200, reply.get_json()
        return [a["entry_url"] for g in reply.get_json()["groups"] for a in g["apps"] if a["code"] == "compensation"]

    assert entry(pc_world.county_admin) == [PAGES]
    assert entry(pc_world.clinician) == []
    # Like the other apps' pages: the shell opens by address (it holds no data), the API refuses the clinician,
    # and the page shows that refusal (tested in the browser below).
    assert tree_client.get(PAGES).status_code == 200
    reply = tree_client.get(f"{API}/counties/{pc_world.county_id}/settlements", headers=pc_world.clinician.headers)
    assert reply.status_code == 403


# -- in a browser -----------------------------------------------------------------------------------------------


def _sign_in_here(page, live: str, userid: str, name: str, path: str = PAGES) -> None:
    """Open the app not signed in: the shell's picker, then back to the page."""
    page.goto(live + path)
    page.wait_for_url(re.compile(r"/h5/\?next="))
    pick(page, Member(userid, name, "", ""))
    page.wait_for_url(re.compile(re.escape(live + path) + r"(\?.*)?$"))


def _listed(client, w: World, person=None, **query) -> list[dict]:
    person = person or w.pc.county_admin
    reply = client.get(f"{API}/counties/{w.pc.county_id}/settlements", query_string=query, headers=person.headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()["items"]


def _refuse(app, client, sandbox, w: World, kind: str, period: str) -> str:
    """The county's approver refuses the submitted settlements of the period on their card; their userid."""
    submitted = [s for s in _listed(client, w, kind=kind, period=period) if s["state"] == "submitted"]
    assert submitted, "something to decide"
    with app.app_context():
        session = db.session()
        everyone = settlement_module.county_approvers(session, session.get(OrgNode, w.pc.county_id))
    approvers = [u for u in everyone if u != w.pc.county_admin.userid] or everyone
    return _click(app, sandbox, {"approvers": approvers, "approval_id": submitted[0]["approval_id"]}, "approval.refuse")


def _cells(row, key: str) -> str:
    return row.locator(f'td[data-key="{key}"]').get_attribute("data-value")


def _county_names(app, w: World) -> dict[int, str]:
    with app.app_context():
        rows = db.session().execute(
            sa.select(OrgNode.id, OrgNode.name).where(
                OrgNode.path.startswith(db.session().get(OrgNode, w.pc.county_id).path),
                OrgNode.level.in_(("medical_community_lead", "member_institution")),
                OrgNode.deleted_at.is_(None),
            )
        )
        return dict(rows.all())


def _assert_table_is_the_api(page, items: list[dict]) -> None:
    """Every settled row's figures and the totals row are the API's (exact decimal strings, exact sums)."""
    expect = test_browser.expect
    latest: dict[int, dict] = {}
    for s in items:
        if s["institution_id"] not in latest or latest[s["institution_id"]]["revision"] < s["revision"]:
            latest[s["institution_id"]] = s
    expect(page.locator("#settlements tbody tr[data-id]:not([data-id=''])")).to_have_count(len(latest))
    for institution, s in latest.items():
        row = page.locator(f'#settlements tbody tr[data-institution="{institution}"]')
        expect(row.locator('td[data-key="state"] .badge')).to_have_text(s["state_label"])
        assert row.get_attribute("data-id") == str(s["id"])
        assert _cells(row, "payable") == s["payable"]
        assert _cells(row, "purchase_amount") == s["purchase_amount"]
        assert _cells(row, "line_item_amount") == s["line_item_amount"]
        assert _cells(row, "coefficient") == s["coefficient"]
        assert _cells(row, "revision") == str(s["revision"])
        for package in PACKAGES:
            assert (_cells(row, f"te.{package}") or None) == s["equivalents"].get(package), (institution, package)
    totals = page.locator("#totals")
    expect(totals.locator('td[data-key="name"]')).to_have_text(f"合计（{len(latest)} 家）")
    for key in ("payable", "purchase_amount", "line_item_amount", "gap_subsidy", "fee_income"):
        want = sum((Decimal(s[key]) for s in latest.values()), Decimal(0))
        assert Decimal(_cells(totals, key)) == want, key
        assert _cells(totals, key) == f"{want:.2f}"
    te = sum((Decimal(s["equivalents"]["basic_medical"]) for s in latest.values()), Decimal(0))
    assert Decimal(_cells(totals, "te.basic_medical")) == te


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_county_settles_submits_and_drills_from_a_line_to_its_excluded_units(
    tree_app,
    tree_client,
    sandbox,
    world: World,  # noqa: F811  (the imported fixture)
    served,  # noqa: F811  (the imported fixture)
    live,
    desk,
):
    expect = test_browser.expect
    page, pc = desk, world.pc
    admin = tree_client.get("/api/me", headers=pc.county_admin.headers).get_json()["member"]
    _sign_in_here(page, live, admin["userid"], admin["name"])

    # The county's institutions, none settled for the period yet: only 生成结算 is offered.
    expect(page.locator("#county-view")).to_be_visible()
    page.fill("#f-period", PERIOD)
    page.wait_for_url(re.compile(rf"period={PERIOD}"))
    assert f"county_id={pc.county_id}" in page.url and "kind=advance" in page.url
    names = _county_names(tree_app, world)
    expect(page.locator("#settlements tbody tr")).to_have_count(len(names))
    expect(page.locator('#settlements tbody .badge[data-state=""]')).to_have_count(len(names))
    expect(page.locator("#settle")).to_be_visible()
    expect(page.locator("#submit")).to_be_hidden()
    expect(page.locator("#totals")).to_have_count(0)

    # 生成结算: drafts for every institution with workload, every figure the API's.
    page.locator("#settle").click()
    expect(page.locator("#notice")).to_have_text("已生成 20 家机构的结算草稿")
    items = _listed(tree_client, world, kind="advance", period=PERIOD)
    assert len(items) == 20 and {s["state"] for s in items} == {"draft"}
    _assert_table_is_the_api(page, items)
    expect(page.locator("#settle")).to_be_hidden()
    expect(page.locator("#submit")).to_be_visible()
    expect(page.locator("#export")).to_have_attribute(
        "href", f"{API}/counties/{pc.county_id}/settlements/export.xlsx?kind=advance&period={PERIOD}"
    )
    # The link is followed with the bearer token (a plain link could not carry it): a real workbook arrives.
    with page.expect_download() as download:
        page.locator("#export").click()
    saved = download.value.path()
    assert download.value.suggested_filename.endswith(".xlsx")
    workbook = openpyxl.load_workbook(io.BytesIO(Path(saved).read_bytes()), read_only=True)
    assert workbook.sheetnames, "a workbook with sheets"
    workbook.close()
    wide = page.evaluate("getComputedStyle(document.querySelector('#settlements thead')).display")
    assert wide == "table-header-group", "a desk gets the wide table"

    # The true-up: a year the API cannot take (422 next to the period), then one it refuses (409 above the table).
    page.select_option("#f-kind", "annual")
    page.fill("#f-period", "2026年")
    page.locator("#f-period").dispatch_event("change")
    expect(page.locator("#settle")).to_be_visible()
    page.locator("#settle").click()
    expect(page.locator('[data-error-for="period"]')).to_have_text("年度清算的期间应为 YYYY（如 2026）")
    expect(page.locator("#f-period")).to_have_attribute("aria-invalid", "true")
    page.fill("#f-period", "2026")
    page.locator("#f-period").dispatch_event("change")
    expect(page.locator('[data-error-for="period"]')).to_have_text("")
    page.locator("#settle").click()
    expect(page.locator("#notice")).to_contain_text("年尚无绩效考核得分，无法年度清算")
    assert _listed(tree_client, world, kind="annual") == []

    # Back to the month: 提交审批, then the approver refuses on the card.
    page.select_option("#f-kind", "advance")
    page.fill("#f-period", PERIOD)
    page.locator("#f-period").dispatch_event("change")
    expect(page.locator("#submit")).to_be_visible()
    page.locator("#submit").click()
    expect(page.locator("#notice")).to_contain_text("已提交审批：20 家机构")
    expect(page.locator('#settlements tbody .badge[data-state="submitted"]')).to_have_count(20)
    expect(page.locator("#settle")).to_be_hidden()
    expect(page.locator("#submit")).to_be_hidden()
    refuser = _refuse(tree_app, tree_client, sandbox, world, "advance", PERIOD)
    page.reload()
    expect(page.locator('#settlements tbody .badge[data-state="refused"]')).to_have_count(20)
    expect(page.locator("#settlements tbody .reason").first).to_contain_text(f"{refuser} 拒绝")
    expect(page.locator("#settle")).to_be_visible()

    # Corrected: revision 2 of every institution.
    page.locator("#settle").click()
    expect(page.locator("#notice")).to_have_text("已生成 20 家机构的结算草稿")
    items = _listed(tree_client, world, kind="advance", period=PERIOD)
    assert sorted({(s["revision"], s["state"]) for s in items}) == [(1, "superseded"), (2, "draft")]
    _assert_table_is_the_api(page, items)

    # One settlement: figures with their computation, the lines, the excluded units behind HTN-FU, the history.
    own = world.seed.institutions[2]
    excluded = world.seed.excluded[(own, PERIOD, "HTN-FU")]
    assert excluded == 2
    page.locator(f'#settlements tbody tr[data-institution="{own}"] td[data-key="name"] a').click()
    page.wait_for_url(re.compile(re.escape(live + PAGES) + r"settlements/\d+$"))
    settlement_id = int(page.url.rsplit("/", 1)[1])
    detail = tree_client.get(f"{API}/settlements/{settlement_id}", headers=pc.county_admin.headers).get_json()
    assert detail["institution_id"] == own and detail["revision"] == 2
    expect(page.locator("#state .badge")).to_have_text("草稿")
    expect(page.locator('#figures [data-key="payable"] .v')).to_have_attribute("data-value", detail["payable"])
    expect(page.locator('#figures [data-key="payable"] .how')).to_have_text(detail["computation"]["payable"])
    expect(page.locator('#figures [data-key="purchase_amount"] .how')).to_have_text(
        detail["computation"]["purchase_amount"]
    )
    expect(page.locator('#figures [data-key="gap_subsidy"] .how')).to_have_text(detail["computation"]["gap_subsidy"])
    expect(page.locator('#figures [data-key="coefficient"] .v')).to_have_attribute("data-value", detail["coefficient"])
    for package, te in detail["equivalents"].items():
        figure = page.locator(f'#figures [data-key="equivalents.{package}"]')
        expect(figure.locator(".v")).to_have_attribute("data-value", te)
        expect(figure.locator(".how")).to_have_text(detail["computation"]["equivalents"][package])
        subtotal = page.locator(f'#lines [data-package="{package}"] tfoot td[data-key="equivalents"]')
        expect(subtotal).to_have_attribute("data-value", te)  # Σ of its lines = the package's TE
    expect(page.locator("#lines tbody tr")).to_have_count(len(detail["lines"]))
    htn = next(line for line in detail["lines"] if line["item_code"] == "HTN-FU")
    row = page.locator('#lines tr[data-item="HTN-FU"]')
    expect(row.locator('td[data-key="quantity"]')).to_have_attribute("data-value", htn["quantity"])
    expect(row.locator('td[data-key="equivalents"]')).to_have_attribute("data-value", htn["equivalents"])
    expect(page.locator('#lines tr[data-item="OP-VISIT"] button.excluded')).to_have_count(0)  # nothing excluded
    expect(page.locator("#export")).to_have_attribute("href", f"{API}/settlements/{settlement_id}/export.xlsx")
    expect(page.locator("#exclusions-card")).to_be_hidden()
    row.locator("button.excluded").click()
    expect(page.locator("#exclusions-card")).to_be_visible()
    expect(page.locator("#exclusions tbody tr")).to_have_count(excluded)
    for r in page.locator("#exclusions tbody tr").all():
        expect(r.locator('td[data-key="reason"]')).to_have_text("缺少必填项：sbp")
        expect(r.locator('td[data-key="period"]')).to_have_text(PERIOD)
        expect(r.locator('td[data-key="record_ref"]')).to_have_text(re.compile(r"^r\d+-\d$"))
    history = page.locator("#history tbody tr")
    expect(history).to_have_count(2)
    expect(history.nth(0)).to_have_attribute("data-state", "draft")
    expect(history.nth(0)).to_contain_text("本页")
    expect(history.nth(1)).to_have_attribute("data-state", "superseded")
    expect(history.nth(1).locator('td[data-key="reason"]')).to_contain_text(f"{refuser} 拒绝")
    page.locator("#back").click()
    page.wait_for_url(re.compile(rf"county_id={pc.county_id}&kind=advance&period={PERIOD}$"))
    expect(page.locator("#settlements tbody tr[data-id]:not([data-id=''])")).to_have_count(20)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_institution_administrator_sees_only_their_institution(
    tree_app,
    tree_client,
    sandbox,
    world: World,  # noqa: F811  (the imported fixture)
    served,  # noqa: F811  (the imported fixture)
    live,
    phone,
):
    expect = test_browser.expect
    page, pc = phone, world.pc
    # A clinician: no role the app serves, so the page says so (as a 403 from the API reads on other pages).
    _sign_in_here(page, live, pc.clinician.userid, pc.clinician.name)
    expect(page.locator("#status-text")).to_have_text("您没有权限查看")
    expect(page.locator("#app")).to_be_hidden()

    # Two months settled; April refused once and corrected.
    admin = pc.county_admin.headers
    for period in ("2026-03", "2026-04"):
        reply = tree_client.post(
            f"{API}/counties/{pc.county_id}/settlements", json={"kind": "advance", "period": period}, headers=admin
        )
        assert reply.status_code == 201, reply.get_json()
    reply = tree_client.post(
        f"{API}/counties/{pc.county_id}/settlements/submit",
        json={"kind": "advance", "period": "2026-04"},
        headers=admin,
    )
    assert reply.status_code == 201, reply.get_json()
    refuser = _refuse(tree_app, tree_client, sandbox, world, "advance", "2026-04")
    reply = tree_client.post(
        f"{API}/counties/{pc.county_id}/settlements", json={"kind": "advance", "period": "2026-04"}, headers=admin
    )
    assert reply.status_code == 201, reply.get_json()

    # The clinician becomes their institution's administrator and signs in again.
    own = world.seed.institutions[-1]
    granted = tree_client.post(
        "/api/auth/grants",
        json={"userid": pc.clinician.userid, "role": "institution_admin", "node_id": own},
        headers=admin,
    )
    assert granted.status_code == 201, granted.get_json()
    page.evaluate("sessionStorage.clear()")
    _sign_in_here(page, live, pc.clinician.userid, pc.clinician.name)
    expect(page.locator("#institution-view")).to_be_visible()
    expect(page.locator("#county-view")).to_be_hidden()
    expect(page.locator("#institutions .institution")).to_have_count(1)
    expect(page.locator("#institutions .institution")).to_have_attribute("data-institution", str(own))
    mine = [s for s in _listed(tree_client, world) if s["institution_id"] == own]
    assert len(mine) == 3
    rows = page.locator("#institutions tbody tr")
    expect(rows).to_have_count(3)
    shown = [
        (r.locator('td[data-key="period"]').inner_text(), r.get_attribute("data-state"), r.get_attribute("data-id"))
        for r in rows.all()
    ]
    by_id = {str(s["id"]): s for s in mine}
    assert [(p, st) for p, st, _ in shown] == [("2026-04", "draft"), ("2026-04", "superseded"), ("2026-03", "draft")]
    assert all(by_id[i]["state"] == st for _, st, i in shown)
    for r in rows.all():
        s = by_id[r.get_attribute("data-id")]
        expect(r.locator('td[data-key="payable"]')).to_have_attribute("data-value", s["payable"])
    expect(rows.nth(1).locator('td[data-key="reason"]')).to_contain_text(f"{refuser} 拒绝")
    expect(page.locator("#settle")).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "fits a 375 px phone"

    # Their settlement opens; another institution's, by address, is not found like a missing one.
    rows.nth(0).locator('td[data-key="period"] a').click()
    page.wait_for_url(re.compile(re.escape(live + PAGES) + r"settlements/\d+$"))
    expect(page.locator("#title")).to_contain_text("2026-04")
    expect(page.locator("#history tbody tr")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    other = next(s for s in _listed(tree_client, world) if s["institution_id"] != own)
    page.goto(f"{live}{PAGES}settlements/{other['id']}")
    expect(page.locator("#status-text")).to_have_text("未找到该结算，或不在您的范围内")
    expect(page.locator("#app")).to_be_hidden()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_province_administrator_picks_the_county(tree_app, tree_client, pc_world, live, desk):
    expect = test_browser.expect
    page, pc = desk, pc_world
    admin = tree_client.get("/api/me", headers=pc.province_admin.headers).get_json()["member"]
    _sign_in_here(page, live, admin["userid"], admin["name"])
    # The province's counties (found below its cities): a county picker, opening at the first one.
    expect(page.locator("#county-field")).to_be_visible()
    offered = {int(v) for v in page.locator("#f-county option").evaluate_all("os => os.map(o => o.value)")}
    assert {pc.county_id, pc.other_county_id} <= offered
    with tree_app.app_context():
        session = db.session()
        levels = {session.get(OrgNode, c).level for c in offered}
        other_name = session.get(OrgNode, pc.other_county_id).name
    assert levels == {"county_bureau"}
    page.select_option("#f-county", str(pc.other_county_id))
    page.wait_for_url(re.compile(rf"county_id={pc.other_county_id}&"))
    expect(page.locator("#county-title")).to_contain_text(other_name)
    listed = tree_client.get(
        f"{API}/institution-tiers",
        query_string={"node_id": pc.other_county_id, "per_page": 1000},
        headers=pc.province_admin.headers,
    ).get_json()
    expect(page.locator("#settlements tbody tr")).to_have_count(listed["total"])
    assert {
        int(i) for i in page.locator("#settlements tbody tr").evaluate_all("rs => rs.map(r => r.dataset.institution)")
    } == {t["institution_id"] for t in listed["items"]}
    expect(page.locator("#settle")).to_be_visible()  # nothing settled there: the province may settle it
