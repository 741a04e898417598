"""The supervision dashboard's H5 pages at `/h5/apps/supervision/` (the catalog's entry URL), for phones and PCs:
监管驾驶舱 (a node's indicators for a period against their targets, grouped by dimension, with completeness;
breadcrumbs up and the children to drill down to; 导出 Excel) and one indicator at a node (its trend with the
target line, the children as a sortable table, a colour grid of the counties under the node, the units that have
not reported); and 指标填报 (an institution's or a county bureau's manual report of the indicators no system sends:
the form, the reporter's list 我的填报, one report with its approval state and its evidence uploads).

Static shells like the referral pages: server-rendered, critical CSS inline, the shell's `session.js` and
`dom.js` plus this app's scripts under `static/` (content-hashed, gzipped), the shell's CSP. No data in the page:
everything comes from `/api/supervision/...` (figures, trend, completeness, dashboard), so the numbers shown are
the API's. ECharts (self-hosted by `scripts/vendor-js.sh`) is loaded only when a chart is drawn: a megabyte a
phone on a county intranet should not fetch to see the cards.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, url_for

from supervision.export import LEVELS
from supervision.feed import REPORTING_UNITS
from supervision.models import DIMENSIONS, DIRECTIONS, SUBMISSION_STATES
from supervision.reports import EVIDENCE_TYPES, MAX_EVIDENCE, MAX_NOTE, UNIT_LEVELS
from workbench import h5

bp = h5.PageBlueprint(
    "supervision_pages",
    __name__,
    url_prefix="/h5/apps/supervision",
    static_folder="static",
    static_url_path="/static",
    template_folder="templates",
)

VENDOR_ECHARTS = "vendor/echarts.min.js"
KINDS = (("month", "月"), ("quarter", "季"), ("year", "年"))


def _pairs(mapping: dict[str, str]) -> list[list[str]]:
    return [[code, name] for code, name in mapping.items()]


def _page(template: str, script: str, **config: Any) -> Response:
    config = {
        "api": "/api/supervision",
        "shell": url_for("h5.shell"),
        "list": url_for("supervision_pages.home"),
        "home": url_for("supervision_pages.home"),
        "indicator": url_for("supervision_pages.indicator", code="CODE").removesuffix("CODE"),
        "charts": h5.static_url(VENDOR_ECHARTS),  # None when not vendored: the page says so instead of a chart
        "dimensions": _pairs(DIMENSIONS),
        "directions": _pairs(DIRECTIONS),
        "levels": _pairs(LEVELS),
        "kinds": [list(pair) for pair in KINDS],
        **config,
    }
    return h5.app_page(bp, f"supervision/{template}", script, config)


@bp.get("/")
def home() -> Response:
    """监管驾驶舱: `?node_id=&period=&dimension=` (defaults: the caller's widest node, last complete month)."""
    return _page("dashboard.html", "dashboard.js")


def _report_page(template: str, script: str, **config: Any) -> Response:
    # The report pages' status link goes back to 我的填报, not to the dashboard a reporter may not read.
    return _page(
        template,
        script,
        list=url_for("supervision_pages.reports"),
        reports=url_for("supervision_pages.reports"),
        report_form=url_for("supervision_pages.report_form"),
        report=url_for("supervision_pages.report", report_id=0).removesuffix("0"),
        unit_levels=list(UNIT_LEVELS),
        # Which units report an indicator of each reporting level (the API refuses the others).
        reporting_units={level: list(units) for level, units in REPORTING_UNITS.items()},
        states=_pairs(SUBMISSION_STATES),
        evidence_types=sorted({ext for exts in EVIDENCE_TYPES.values() for ext in exts} | set(EVIDENCE_TYPES)),
        evidence_max=MAX_EVIDENCE,
        note_max=MAX_NOTE,
        **config,
    )


@bp.get("/reports")
def reports() -> Response:
    """我的填报: the caller's reports, newest first, with their states (`?state=`)."""
    return _report_page("report_list.html", "report_list.js")


@bp.get("/reports/new")
def report_form() -> Response:
    """指标填报: `?unit_id=&period=` (defaults: the caller's first unit, the last complete period)."""
    return _report_page("report_form.html", "report_form.js")


@bp.get("/reports/<int:report_id>")
def report(report_id: int) -> Response:
    """One report: its items, approval state and evidence (uploads while pending)."""
    return _report_page("report_view.html", "report_view.js", report_id=report_id)


@bp.get("/indicators/<code>")
def indicator(code: str) -> Response:
    """One indicator at `?node_id=&period=`: trend, children (sortable), county colour grid, missing units."""
    return _page("indicator.html", "indicator.js", code=code)


def init_app(app: Flask) -> None:
    # A plain Flask blueprint: HTML and static files are not part of the OpenAPI description.
    app.register_blueprint(bp)
