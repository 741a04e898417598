"""The manual report pages (指标填报 `/h5/apps/supervision/reports/new`, 我的填报 `/reports`, one report
`/reports/<id>`): static shells like the dashboard's (hashed gzipped scripts, the shell's CSP, no data inlined,
only where to ask the API), with what the form needs to pick indicators for a unit (which unit levels report which
reporting level, the evidence types) taken from the API modules so the two cannot drift apart."""

from __future__ import annotations

import re

from supervision.feed import REPORTING_UNITS
from supervision.models import SUBMISSION_STATES
from supervision.reports import EVIDENCE_TYPES, UNIT_LEVELS
from tests.support.pages import page_config, static_shell

PAGES = "/h5/apps/supervision/"
API = "/api/supervision"


def test_report_pages_are_static_shells_with_hashed_gzipped_scripts(tree_client):
    own = {"reports/new": "report_form.js", "reports": "report_list.js", "reports/42": "report_view.js"}
    for path, script in own.items():
        html, config = static_shell(tree_client, PAGES + path, ["common.js", script])
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
    assert page_config(tree_client.get(PAGES + "reports/42").get_data(as_text=True))["report_id"] == 42
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
