"""The supervision dashboard in a real browser (Playwright on Debian's headless Chromium, the embedded SQLite like
the other page tests): the province's administrator signs in through the sandbox picker, with values stored through
`supervision.values.record` and rolled up by `supervision.rollup.recompute` (the `computed` province of
test_figures: targets at the province and the county). Every number the pages show — the cards, the drill-down
table, the county colour grid, the trend chart's series, the missing units — equals the API's for the same node
and period, formatted the way the page formats numbers; 导出 Excel downloads the workbook; nothing overflows a
375 px phone.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from openpyxl import load_workbook

from tests.h5 import test_browser
from tests.h5.test_browser import Member, pick
from tests.supervision.test_figures import computed  # noqa: F401  (a fixture)
from tests.supervision.test_rollup import PERIOD, province  # noqa: F401  (a fixture)

API = "/api/supervision"
PAGES = "/h5/apps/supervision/"

browser = test_browser.browser  # the shell's Chromium fixture, under the same name
expect = test_browser.expect


def shown(value: float | None) -> str:
    """A number as the page shows it (supervision/static/common.js `number`): two decimals at most, trailing zeros
    dropped, thousands separated; a dash for none."""
    if value is None:
        return "—"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    if text == "-0":
        text = "0"
    whole, _, fraction = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    whole = f"{int(whole.lstrip('-')):,}"
    return sign + whole + ("." + fraction if fraction else "")


def _api(client, person, path: str, **query) -> dict:
    reply = client.get(f"{API}{path}", query_string=query, headers=person.headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def _value(locator) -> float | None:
    raw = locator.get_attribute("data-value")
    return None if raw == "" else float(raw)


def _fits(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "fits a 375 px phone"


def test_shown_formats_like_the_page():
    assert [shown(v) for v in (None, 0, 65.2, 65.25, 1234567.5, 12.3456, -0.001, 100.0)] == [
        "—",
        "0",
        "65.2",
        "65.25",
        "1,234,567.5",
        "12.35",
        "0",
        "100",
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_numbers_on_the_dashboard_equal_the_api(
    tree_app,
    tree_client,
    sup_world,
    computed,  # noqa: F811
    live,
    phone,
):
    page, w = phone, sup_world
    admin = w.province_admin

    # Signed out: the shell's picker, then back to the dashboard at the administrator's widest node (the province).
    page.goto(live + PAGES)
    page.wait_for_url(re.compile(r"/h5/\?next="))
    pick(page, Member(admin.userid, admin.name, "", ""))
    page.wait_for_url(re.compile(re.escape(live + PAGES) + r"(\?.*)?$"))
    home = _api(tree_client, admin, "/dashboard")
    expect(page.locator("#trail li")).to_have_text([home["node"]["name"]])
    expect(page.locator("#f-period")).to_have_value(home["periods"]["month"])
    expect(page.locator("#children .chip")).to_have_count(len(home["children"]))

    # The county for the test's month: every card equals the figures API.
    county = _api(tree_client, admin, "/dashboard", node_id=w.county_id)
    figures = _api(tree_client, admin, "/figures", node_id=w.county_id, period=PERIOD)
    page.goto(f"{live}{PAGES}?node_id={w.county_id}&period={PERIOD}")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#trail li")).to_have_text([n["name"] for n in county["trail"]])
    cards = page.locator("article.ind")
    expect(cards).to_have_count(len(figures["node"]["indicators"]))
    with_values = 0
    for item in figures["node"]["indicators"]:
        card = page.locator(f'article.ind[data-code="{item["code"]}"]')
        value = card.locator(".value")
        assert _value(value) == item["value"], item["code"]
        expect(value).to_have_text(shown(item["value"]))
        expect(card.locator(".previous")).to_have_text("上期 " + shown(item["previous"]))
        expect(card.locator(".last-year")).to_have_text("去年同期 " + shown(item["last_year"]))
        expect(card.locator('[data-role="completeness"]')).to_have_text(
            f"已报 {item['units_reported']}/{item['units_expected']}"
        )
        verdict = card.locator("[data-verdict]").first.get_attribute("data-verdict")
        assert (verdict == "met") == (item["met"] is True) and (verdict in ("missed", "near")) == (item["met"] is False)
        with_values += item["value"] is not None
    assert with_values >= 3, "the test indicators have figures at the county"
    _fits(page)

    # Completeness: tap the badge, the units the API names as missing.
    rate = next(i for i in figures["node"]["indicators"] if i["code"] == "T-RATE")
    missing = _api(tree_client, admin, "/figures/T-RATE/completeness", node_id=w.county_id, period=PERIOD, per_page=50)
    assert missing["total"] == rate["units_expected"] - rate["units_reported"]
    card = page.locator('article.ind[data-code="T-RATE"]')
    card.locator('[data-role="completeness"]').click()
    names = [u["name"] for u in missing["items"]]
    expect(card.locator(".missing li[data-node] .u-name")).to_have_text(names)

    # One indicator at the province: the children table, the county grid and the trend equal the API's.
    province_figures = _api(tree_client, admin, "/figures", node_id=w.province_id, period=PERIOD)
    page.goto(f"{live}{PAGES}indicators/T-RATE?node_id={w.province_id}&period={PERIOD}")
    expect(page.locator("#heading")).to_have_text(rate["name"])
    top = next(i for i in province_figures["node"]["indicators"] if i["code"] == "T-RATE")
    assert _value(page.locator("#summary .value")) == top["value"]
    rows = page.locator("#drill tbody tr")
    expected_rows = [province_figures["node"], *province_figures["children"]]
    expect(rows).to_have_count(len(expected_rows))
    for node in expected_rows:
        item = next(i for i in node["indicators"] if i["code"] == "T-RATE")
        cell = page.locator(f'#drill tbody tr[data-node="{node["node_id"]}"] td.value')
        expect(cell).to_have_text(shown(item["value"]))
        assert _value(cell) == item["value"]

    # Sorting by value: descending after two taps, the province's own row stays on top.
    page.locator('#drill th[data-sort="value"] button').click()
    page.locator('#drill th[data-sort="value"] button').click()
    expect(page.locator('#drill th[data-sort="value"]')).to_have_attribute("aria-sort", "descending")
    values = [_value(c) for c in page.locator("#drill tbody tr:not(.self) td.value").all()]
    present = [v for v in values if v is not None]
    assert present == sorted(present, reverse=True) and values[: len(present)] == present

    # The colour grid: one tile per county under the province, each the API's figure for that county.
    counties: dict[int, dict] = {}
    for city in province_figures["children"]:
        below = _api(
            tree_client, admin, "/figures", node_id=city["node_id"], period=PERIOD, dimension=rate["dimension"]
        )
        for child in below["children"]:
            if child["level"] == "county_bureau":
                counties[child["node_id"]] = next(i for i in child["indicators"] if i["code"] == "T-RATE")
    for child in province_figures["children"]:
        if child["level"] == "county_bureau":
            counties[child["node_id"]] = next(i for i in child["indicators"] if i["code"] == "T-RATE")
    assert counties, "the sandbox's province has counties"
    tiles = page.locator("#grid .tile")
    expect(tiles).to_have_count(len(counties))
    for node_id, item in counties.items():
        tile = page.locator(f'#grid .tile[data-node="{node_id}"]')
        expect(tile.locator(".t-value")).to_have_text(shown(item["value"]))
        verdict = tile.get_attribute("data-verdict")
        assert (verdict == "met") == (item["met"] is True), node_id
        assert (verdict == "nodata") == (item["value"] is None), node_id

    # The trend: the chart drawn by ECharts, its series the trend API's.
    trend = _api(
        tree_client, admin, "/figures/T-RATE/trend", node_id=w.province_id, **{"from": "2025-06", "to": PERIOD}
    )
    expect(page.locator("#trend canvas")).to_have_count(1)
    drawn = json.loads(page.locator("#trend").get_attribute("data-values"))
    assert drawn == [p["value"] for p in trend["series"][0]["points"]]
    option = page.evaluate("echarts.getInstanceByDom(document.getElementById('trend')).getOption().series[0].data")
    assert option == drawn
    expect(page.locator("#missing-count")).to_have_text(
        str(_api(tree_client, admin, "/figures/T-RATE/completeness", node_id=w.province_id, period=PERIOD)["total"])
    )
    _fits(page)

    # Tap a county tile: the same indicator at that county.
    page.locator(f'#grid .tile[data-node="{w.county_id}"]').click()
    page.wait_for_url(re.compile(rf"node_id={w.county_id}"))
    expect(page.locator("#summary .value")).to_have_text(shown(rate["value"]))

    # 导出 Excel from the county's dashboard: the workbook's figure is the card's.
    page.goto(f"{live}{PAGES}?node_id={w.county_id}&period={PERIOD}")
    expect(page.locator("#app")).to_be_visible()
    with page.expect_download() as info:
        page.locator("#export").click()
    download = info.value
    assert download.suggested_filename.endswith(f"{PERIOD}.xlsx")
    with open(download.path(), "rb") as saved:  # the saved file has no extension, which openpyxl insists on
        book = load_workbook(io.BytesIO(saved.read()))
    sheet = book[next(s for s in book.sheetnames if any(c.value and "T-RATE" in str(c.value) for c in book[s][2]))]
    header = [c.value for c in sheet[2]]
    column = next(i for i, h in enumerate(header) if h and h.startswith("T-RATE"))
    assert sheet.cell(row=4, column=column + 1).value == rate["value"]

    # A bad period in the address: the API's message instead of the dashboard.
    page.goto(f"{live}{PAGES}?node_id={w.county_id}&period=2026-13")
    expect(page.locator("#status-text")).to_contain_text("统计期格式")
    expect(page.locator("#app")).to_be_hidden()
