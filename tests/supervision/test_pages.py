"""The supervision dashboard's pages (`/h5/apps/supervision/`), where it opens (`/api/supervision/dashboard`) and
the Excel export (`/api/supervision/figures/export.xlsx`), on both backends.

The pages are static shells (hashed gzipped scripts, the shell's CSP, no data inlined), the catalog offers the app
to administrators after the migration, the dashboard opens at the caller's widest node with breadcrumbs, and the
workbook's numbers are the figures API's for the same node and period, cell by cell; bad input is a 4xx naming the
field.
"""

from __future__ import annotations

import io
import json
import re

import sqlalchemy as sa
from openpyxl import load_workbook

from mini_apps.catalog.models import CatalogApp
from supervision.models import DIMENSIONS
from tests.supervision.test_figures import computed  # noqa: F401  (a fixture)
from tests.supervision.test_rollup import PERIOD, province  # noqa: F401  (a fixture)
from tests.support.pages import page_config, static_shell
from workbench import db
from workbench.audit import AuditRecord

PAGES = "/h5/apps/supervision/"
API = "/api/supervision"


def test_pages_are_static_shells_with_hashed_gzipped_scripts(tree_client):
    for path, script in ((PAGES, "dashboard.js"), (PAGES + "indicators/NHC-01", "indicator.js")):
        _, config = static_shell(tree_client, path, ["common.js", script])
        # No figures in the page: only where to ask for them.
        assert config["api"] == API and not any(k in config for k in ("node", "figures", "indicators"))
        assert ["referral", DIMENSIONS["referral"]] in config["dimensions"]
    assert page_config(tree_client.get(PAGES + "indicators/NHC-01").get_data(as_text=True))["code"] == "NHC-01"
    charts = page_config(tree_client.get(PAGES).get_data(as_text=True))["charts"]
    assert charts and re.search(r"/h5/static/vendor/echarts\.min\.js\?v=[0-9a-f]{12}$", charts), "self-hosted"
    got = tree_client.get(charts, headers={"Accept-Encoding": "gzip"})
    assert got.status_code == 200 and got.headers["Content-Encoding"] == "gzip"
    icon = tree_client.get(PAGES + "static/icon.svg")
    assert icon.status_code == 200 and icon.get_data(as_text=True).startswith("<svg")


def test_the_catalog_offers_the_app_to_readers_of_figures(tree_app, tree_client, sup_world):
    with tree_app.app_context():
        app = db.session().scalar(sa.select(CatalogApp).where(CatalogApp.code == "supervision"))
        assert app is not None, "migration 0015 registers the app"
        assert (app.name, app.entry_url, app.group_code, app.state) == (
            "监管在线",
            PAGES,
            "supervision",
            "active",
        )

    def names(person) -> set[str]:
        reply = tree_client.get("/api/workbench/apps", headers=person.headers)
        assert reply.status_code == 200, reply.get_json()
        return {a["name"] for g in reply.get_json()["groups"] for a in g["apps"]}

    assert "监管在线" in names(sup_world.province_admin)
    assert "监管在线" in names(sup_world.county_admin)
    assert "监管在线" not in names(sup_world.clinician), "a clinician may not read figures"
    # The report form is listed for those who file a unit's figures; any member may still open it by address.
    assert "指标填报" in names(sup_world.county_admin) and "指标填报" not in names(sup_world.clinician)
    assert tree_client.get("/h5/apps/supervision/reports").status_code == 200
    icon = next(
        a["icon"]
        for g in tree_client.get("/api/workbench/apps", headers=sup_world.county_admin.headers).get_json()["groups"]
        for a in g["apps"]
        if a["code"] == "supervision"
    )
    assert tree_client.get(icon).status_code == 200


def test_the_dashboard_opens_at_the_widest_node_with_breadcrumbs(tree_client, sup_world):
    reply = tree_client.get(f"{API}/dashboard", headers=sup_world.province_admin.headers)
    assert reply.status_code == 200, reply.get_json()
    data = reply.get_json()
    assert data["node"]["node_id"] == sup_world.province_id
    assert [n["node_id"] for n in data["trail"]] == [sup_world.province_id]
    assert data["children"] and all(c["parent_id"] == sup_world.province_id for c in data["children"])
    assert re.fullmatch(r"\d{4}-\d{2}", data["periods"]["month"])
    assert re.fullmatch(r"\d{4}-Q[1-4]", data["periods"]["quarter"])

    # The province's administrator drilled down to the county: the breadcrumbs walk back up to the province.
    down = tree_client.get(
        f"{API}/dashboard", query_string={"node_id": sup_world.county_id}, headers=sup_world.province_admin.headers
    ).get_json()
    assert down["trail"][0]["node_id"] == sup_world.province_id
    assert down["trail"][-1]["node_id"] == sup_world.county_id
    assert down["children"] and all(c["parent_id"] == sup_world.county_id for c in down["children"])
    assert {c["node_id"] for c in down["children"]} & set(sup_world.institution_ids), "its institutions"

    # The county's administrator opens at the county; the breadcrumbs start there (the province is not theirs).
    county = tree_client.get(f"{API}/dashboard", headers=sup_world.county_admin.headers).get_json()
    assert county["node"]["node_id"] == sup_world.county_id
    assert [n["node_id"] for n in county["trail"]] == [sup_world.county_id]
    outside = tree_client.get(
        f"{API}/dashboard", query_string={"node_id": sup_world.province_id}, headers=sup_world.county_admin.headers
    )
    assert outside.status_code == 404 and outside.get_json()["error"]["field"] == "node_id"
    assert tree_client.get(f"{API}/dashboard", headers=sup_world.clinician.headers).status_code == 403
    bad = tree_client.get(f"{API}/dashboard", query_string={"node_id": "x"}, headers=sup_world.province_admin.headers)
    assert bad.status_code == 422 and "node_id" in json.dumps(bad.get_json())


def _sheet_rows(sheet) -> list[list]:
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_the_workbook_numbers_equal_the_api(tree_app, tree_client, sup_world, computed):  # noqa: F811
    query = {"node_id": sup_world.county_id, "period": PERIOD}
    api = tree_client.get(f"{API}/figures", query_string=query, headers=sup_world.province_admin.headers).get_json()
    reply = tree_client.get(f"{API}/figures/export.xlsx", query_string=query, headers=sup_world.province_admin.headers)
    assert reply.status_code == 200, reply.get_data(as_text=True)[:500]
    assert reply.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment" in reply.headers["Content-Disposition"] and reply.headers["Cache-Control"] == "no-store"
    book = load_workbook(io.BytesIO(reply.data))
    with tree_app.app_context():
        (audited,) = db.session().scalars(sa.select(AuditRecord).where(AuditRecord.action == "supervision.export"))
        assert audited.resource_id == str(sup_world.county_id) and audited.detail["period"] == PERIOD

    nodes = [api["node"], *api["children"]]
    checked = 0
    for dimension, label in DIMENSIONS.items():
        items = {i["code"] for n in nodes for i in n["indicators"] if i["dimension"] == dimension}
        if not items:
            assert label not in book.sheetnames
            continue
        rows = _sheet_rows(book[label])
        top, sub, body = rows[1], rows[2], rows[3:]
        assert [r[0] for r in body] == [n["name"] for n in nodes], "the node, then its children in order"
        for column, header in enumerate(top):
            if not header or column < 2:
                continue
            code = header.split(" ", 1)[0]
            assert code in items
            for n, row in zip(nodes, body, strict=True):
                item = next((i for i in n["indicators"] if i["code"] == code), None)
                for offset, key in enumerate(("value", "target", "met", "previous", "last_year", "numerator")):
                    cell = row[column + offset]
                    if item is None:
                        assert cell is None
                    elif key == "met":
                        assert cell in ("达标", "未达标", "无目标", "—")
                        assert (cell == "达标") == (item["met"] is True) and (cell == "未达标") == (
                            item["met"] is False
                        )
                    else:
                        assert cell == item[key], (dimension, code, n["name"], key)
                        assert cell is None or isinstance(cell, (int, float)), "numbers as numbers"
                        checked += cell is not None
                if item is not None:
                    assert (row[column + 7], row[column + 8]) == (item["units_reported"], item["units_expected"])
            unit = next(i["unit"] for n in nodes for i in n["indicators"] if i["code"] == code)
            if unit:
                assert sub[column] == f"数值（{unit}）", "the unit in the header"
    assert checked >= 10, "the test province's values are in the workbook"

    # Completeness: each indicator's reported/expected, then the units the API names as missing.
    rows = _sheet_rows(book["上报完整性"])
    for item in api["node"]["indicators"]:
        summary = next(r for r in rows if r[0] == item["code"] and r[1] == item["name"])
        assert (summary[2], summary[3]) == (item["units_reported"], item["units_expected"])
        missing = tree_client.get(
            f"{API}/figures/{item['code']}/completeness",
            query_string={**query, "per_page": 200},
            headers=sup_world.province_admin.headers,
        ).get_json()
        listed = [r[4] for r in rows if r[0] == item["code"] and r[1] is None]
        assert listed == [u["name"] for u in missing["items"]], item["code"]


def test_export_refuses_bad_input_naming_the_field(tree_client, sup_world):
    headers = sup_world.province_admin.headers

    def get(**query):
        return tree_client.get(f"{API}/figures/export.xlsx", query_string=query, headers=headers)

    for query, status, field in (
        ({"period": PERIOD}, 422, "node_id"),
        ({"node_id": "abc", "period": PERIOD}, 422, "node_id"),
        ({"node_id": 99_999_999, "period": PERIOD}, 404, "node_id"),
        ({"node_id": sup_world.county_id}, 422, "period"),
        ({"node_id": sup_world.county_id, "period": "2026-13"}, 422, "period"),
    ):
        reply = get(**query)
        assert reply.status_code == status, (query, reply.get_json())
        assert field in json.dumps(reply.get_json()), (query, reply.get_json())
    outside = tree_client.get(
        f"{API}/figures/export.xlsx",
        query_string={"node_id": sup_world.province_id, "period": PERIOD},
        headers=sup_world.county_admin.headers,
    )
    assert outside.status_code == 404 and outside.get_json()["error"]["field"] == "node_id"
    assert (
        tree_client.get(
            f"{API}/figures/export.xlsx",
            query_string={"node_id": sup_world.county_id, "period": PERIOD},
            headers=sup_world.clinician.headers,
        ).status_code
        == 403
    )
    assert tree_client.get(f"{API}/figures/export.xlsx").status_code == 401


def test_the_dashboard_and_export_are_in_the_openapi_description(tree_client):
    paths = tree_client.get("/api/openapi.json").get_json()["paths"]
    export = paths[f"{API}/figures/export.xlsx"]["get"]
    assert export["security"] == [{"bearerToken": []}]
    assert "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" in export["responses"]["200"]["content"]
    assert {p["name"] for p in export["parameters"]} >= {"node_id", "period"}
    assert f"{API}/dashboard" in paths
