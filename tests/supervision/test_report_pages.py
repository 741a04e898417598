"""The manual report pages (指标填报 `/h5/apps/supervision/reports/new`, 我的填报 `/reports`, one report
`/reports/<id>`): static shells like the dashboard's (hashed gzipped scripts, the shell's CSP, no data inlined,
only where to ask the API), with what the form needs to pick indicators for a unit (which unit levels report which
reporting level, the evidence types) taken from the API modules so the two cannot drift apart."""

from __future__ import annotations

import json
import re

from supervision.feed import REPORTING_UNITS
from supervision.models import SUBMISSION_STATES
from supervision.reports import EVIDENCE_TYPES, UNIT_LEVELS

PAGES = "/h5/apps/supervision/"
API = "/api/supervision"


def _config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="wb-config">(.*?)</script>', html, re.S)
    assert found, "the page carries its config as an inert JSON block"
    return json.loads(found.group(1))


def test_report_pages_are_static_shells_with_hashed_gzipped_scripts(tree_client):
    own = {"reports/new": "report_form.js", "reports": "report_list.js", "reports/42": "report_view.js"}
    for path, script in own.items():
        reply = tree_client.get(PAGES + path)
        assert reply.status_code == 200, path
        assert "script-src 'self';" in reply.headers["Content-Security-Policy"]
        assert reply.headers["Cache-Control"] == "no-cache"
        html = reply.get_data(as_text=True)
        scripts = re.findall(r'<script src="([^"]+)"', html)
        names = [s.split("?")[0].rsplit("/", 1)[1] for s in scripts]
        assert names == ["session.js", "dom.js", "common.js", script], path
        for src in scripts:
            assert re.search(r"\?v=[0-9a-f]{12}$", src), src
            got = tree_client.get(src, headers={"Accept-Encoding": "gzip"})
            assert got.status_code == 200 and got.headers["Content-Encoding"] == "gzip"
            assert got.headers["Cache-Control"] == "public, max-age=31536000"
        assert "<script>" not in html, "no inline script under script-src 'self'"
        config = _config(html)
        # No reports, units or indicators in the page: only where to ask for them.
        assert config["api"] == API
        assert not any(k in config for k in ("items", "indicators", "units", "report_data"))
        assert config["list"] == config["reports"] == PAGES + "reports"
        assert config["report_form"] == PAGES + "reports/new" and config["report"] == PAGES + "reports/"
        assert config["unit_levels"] == list(UNIT_LEVELS)
        assert config["reporting_units"] == {level: list(units) for level, units in REPORTING_UNITS.items()}
        assert config["states"] == [[code, name] for code, name in SUBMISSION_STATES.items()]
        assert {".pdf", ".png", ".jpg", "application/pdf"} <= set(config["evidence_types"])
        assert set(EVIDENCE_TYPES) <= set(config["evidence_types"])
        assert "返回我的填报" in html, "the status link goes back to 我的填报, not the dashboard"
    assert _config(tree_client.get(PAGES + "reports/42").get_data(as_text=True))["report_id"] == 42
    assert tree_client.get(PAGES + "reports/x").status_code == 404


def test_the_form_has_a_slot_for_each_field_the_api_names(tree_client):
    html = tree_client.get(PAGES + "reports/new").get_data(as_text=True)
    # The API's report-level fields: each has an input named like it and an error slot next to it.
    for name in ("unit_id", "period", "note"):
        assert re.search(rf'name="{name}"', html), name
        assert f'data-error-for="{name}"' in html, name
    assert 'data-error-for="items"' in html and 'class="form-error"' in html
    assert "佐证材料" in html and "审批" in html


def test_the_dashboard_links_to_the_form(tree_client):
    html = tree_client.get(PAGES).get_data(as_text=True)
    assert f'href="{PAGES}reports"' in html and "指标填报" in html
