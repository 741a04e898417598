"""防控指数看板 (`/h5/apps/precision_control/dashboard/`): a static shell (hashed gzipped scripts, the shell's CSP,
no data inlined) on both backends, and in a real browser (Chromium, the embedded SQLite like the other page tests)
every number it shows — the headline figures and colour, the county colour grid and its legend, the children
table, the trend chart's series — equals the index API's for the same campaign and node, formatted the way the
page formats numbers; tapping a county drills down to it."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from mini_apps.precision_control import index
from tests.h5 import test_browser
from tests.h5.test_browser import Member, pick
from tests.precision_control.test_index import add_tasks, make_campaign, mixed_tasks, places  # noqa: F401
from tests.support.pages import static_shell
from workbench import db
from workbench.db import utcnow

DASH = "/h5/apps/precision_control/dashboard/"
API = "/api/precision-control"

browser = test_browser.browser  # the shell's Chromium fixture, under the same name
expect = test_browser.expect


def shown(value: float | None) -> str:
    """A number as the page shows it (static/dashboard_common.js `number`): two decimals at most, trailing zeros
    dropped, thousands separated; a dash for none."""
    if value is None:
        return "—"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    if text == "-0":
        text = "0"
    whole, _, fraction = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    return sign + f"{int(whole.lstrip('-')):,}" + ("." + fraction if fraction else "")


def test_shown_formats_like_the_page():
    assert [shown(v) for v in (None, 0, 62.5, 71.43, 1234.5, 100.0)] == ["—", "0", "62.5", "71.43", "1,234.5", "100"]


def test_the_dashboard_is_a_static_shell_with_hashed_gzipped_scripts(tree_client):
    _, config = static_shell(tree_client, DASH, ["dashboard_common.js", "dashboard.js"])
    assert config["api"] == API and config["home"] == DASH
    assert not any(k in config for k in ("node", "figures", "campaign", "counties")), "no data in the page"
    assert [c for c, _ in config["colours"]] == ["red", "orange", "yellow", "blue", "green"]
    assert config["charts"] and re.search(r"/h5/static/vendor/echarts\.min\.js\?v=[0-9a-f]{12}$", config["charts"])


def _api(client, person, path: str, **query) -> dict:
    reply = client.get(f"{API}{path}", query_string=query, headers=person.headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def _value(locator) -> float | None:
    raw = locator.get_attribute("data-value")
    return None if raw == "" else float(raw)


def _headline_equals(page, node: dict) -> None:
    expect(page.locator("#node-name")).to_have_text(node["name"])
    expect(page.locator("#node-value")).to_have_text(shown(node["value"]) + ("" if node["value"] is None else "%"))
    assert _value(page.locator("#node-value")) == node["value"]
    expect(page.locator("#node-colour")).to_have_attribute("data-colour", node["colour"] or "")
    for key in (
        "tasks",
        "completed",
        "completion_rate",
        "on_time_rate",
        "overdue",
        "overdue_share",
        "positive",
        "open",
    ):
        cell = page.locator(f'#figures li[data-key="{key}"] .v')
        assert _value(cell) == node[key], key
        suffix = "%" if key.endswith(("_rate", "_share")) and node[key] is not None else ""
        expect(cell).to_have_text(shown(node[key]) + suffix)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_dashboards_numbers_equal_the_api(tree_app, tree_client, pc_world, places, live, desk):  # noqa: F811
    p, admin = places, pc_world.province_admin
    with tree_app.app_context():
        session = db.session()
        older = make_campaign(session, p.province, name="老年人接种")
        campaign_id = make_campaign(session, p.province, name="发热门诊随访")
        add_tasks(session, campaign_id, mixed_tasks(p))
        session.commit()
        for days in (2, 1):  # two stored days for the trend, no chat configured
            index.snapshot_and_push(utcnow() - timedelta(days=days))
    page = desk

    page.goto(f"{live}{DASH}?campaign_id={campaign_id}")
    page.wait_for_url(re.compile(r"/h5/\?next="))
    pick(page, Member(admin.userid, admin.name, "", ""))
    page.wait_for_url(re.compile(re.escape(live + DASH) + r"\?campaign_id="))
    expect(page.locator("#app")).to_be_visible()

    # The campaign picker: the campaigns API's, this one chosen.
    listed = _api(tree_client, admin, "/campaigns", per_page=200)["items"]
    expect(page.locator("#f-campaign option")).to_have_count(len(listed))
    expect(page.locator("#f-campaign")).to_have_value(str(campaign_id))

    # The province (the owner): headline, breadcrumbs, children table.
    data = _api(tree_client, admin, f"/campaigns/{campaign_id}/index")
    assert data["node"]["tasks"] > 0
    expect(page.locator("#trail li")).to_have_text([n["name"] for n in data["trail"]])
    _headline_equals(page, data["node"])
    rows = page.locator("#children tbody tr")
    expect(rows).to_have_count(1 + len(data["children"]))
    for node in [data["node"], *data["children"]]:
        row = page.locator(f'#children tbody tr[data-node="{node["node_id"]}"]')
        for key in ("tasks", "completed", "completion_rate", "on_time_rate", "overdue", "positive"):
            expect(row.locator(f'td[data-key="{key}"]')).to_have_text(shown(node[key]))
        expect(row.locator("[data-colour]")).to_have_attribute("data-colour", node["colour"] or "")

    # The colour grid: one tile per county, each the map API's value and colour; the legend its counts.
    grid = _api(tree_client, admin, f"/campaigns/{campaign_id}/index/map", node_id=p.province)
    assert {c["colour"] for c in grid["counties"]} - {None}, "some county has a colour"
    tiles = page.locator("#grid .tile")
    expect(tiles).to_have_count(len(grid["counties"]))
    for county in grid["counties"]:
        tile = page.locator(f'#grid .tile[data-node="{county["node_id"]}"]')
        expect(tile).to_have_attribute("data-colour", county["colour"] or "")
        expect(tile.locator(".t-value")).to_have_text(shown(county["value"]))
        expect(tile.locator(".t-name")).to_have_text(county["name"])
    for colour, count in grid["counts"].items():
        expect(page.locator(f'#legend [data-colour="{colour}"]')).to_have_attribute("data-count", str(count))

    # The trend: drawn by ECharts, its series the trend API's (two stored days and today).
    trend = _api(tree_client, admin, f"/campaigns/{campaign_id}/index/trend", node_id=p.province, days=30)
    assert len(trend["points"]) == 3 and trend["points"][-1]["live"]
    expect(page.locator("#trend canvas")).to_have_count(1)
    drawn = json.loads(page.locator("#trend").get_attribute("data-values"))
    assert drawn == [pt["value"] for pt in trend["points"]]
    option = page.evaluate("echarts.getInstanceByDom(document.getElementById('trend')).getOption().series[0].data")
    assert option == drawn
    overdue = page.evaluate("echarts.getInstanceByDom(document.getElementById('trend')).getOption().series[1].data")
    assert overdue == [pt["overdue"] for pt in trend["points"]]
    completed = page.evaluate("echarts.getInstanceByDom(document.getElementById('trend')).getOption().series[2].data")
    assert completed == [pt["completed"] for pt in trend["points"]]

    # Tap the county's tile: the county's own index, equal to the API's.
    page.locator(f'#grid .tile[data-node="{p.county}"]').click()
    page.wait_for_url(re.compile(rf"node_id={p.county}"))
    county = _api(tree_client, admin, f"/campaigns/{campaign_id}/index", node_id=p.county)
    expect(page.locator("#trail li")).to_have_text([n["name"] for n in county["trail"]])
    _headline_equals(page, county["node"])
    expect(page.locator("#grid .tile")).to_have_count(1)
    expect(page.locator(f'#grid .tile[data-node="{p.county}"]')).to_have_attribute(
        "data-colour", county["node"]["colour"] or ""
    )
    expect(page.locator("#children tbody tr")).to_have_count(1 + len(county["children"]))

    # Another campaign from the picker: its (empty) index at the province.
    page.select_option("#f-campaign", str(older))
    page.wait_for_url(re.compile(rf"campaign_id={older}$"))
    expect(page.locator("#node-name")).to_have_text(data["node"]["name"])
    _headline_equals(page, _api(tree_client, admin, f"/campaigns/{older}/index")["node"])
    expect(page.locator("#node-colour")).to_have_text("无数据")
