"""The index dashboard's H5 page at `/h5/apps/precision_control/dashboard/?campaign_id=&node_id=` (防控指数看板),
for phones and PCs: a campaign picker, the node's headline figures with its colour, the five-colour grid of the
counties under it (tap a county to drill down), its children as a table, the trend of the daily snapshots, and
breadcrumbs up.

A static shell like the supervision dashboard: server-rendered, critical CSS inline, the shell's `session.js` and
`dom.js` plus this page's scripts (`static/dashboard_common.js`, `static/dashboard.js`; content-hashed, gzipped),
the shell's CSP. No data in the page: everything comes from `/api/precision-control/...` (campaigns, index, map,
trend), so the numbers shown are the API's. ECharts (the vendored copy) is loaded only when the trend is drawn.
The page's own scripts are named here rather than through `h5.app_page`, whose `common.js` would be the task
pages' (another page of the same static folder).
"""

from __future__ import annotations

from flask import Flask, Response, render_template, url_for

from mini_apps.precision_control.index import COLOUR_NAMES, MEASURES
from mini_apps.precision_control.models import COLOURS
from workbench import h5

bp = h5.PageBlueprint(
    "precision_control_dashboard",
    __name__,
    url_prefix="/h5/apps/precision_control/dashboard",
    static_folder="static",
    static_url_path="/static",
    template_folder="templates",
)

VENDOR_ECHARTS = "vendor/echarts.min.js"


@bp.get("/")
def home() -> Response:
    """防控指数看板: `?campaign_id=&node_id=` (defaults: the newest campaign the caller may read, its owner node or
    the caller's widest node inside it)."""
    config = {
        "api": "/api/precision-control",
        "shell": url_for("h5.shell"),
        "list": url_for("h5.shell"),
        "home": url_for("precision_control_dashboard.home"),
        "charts": h5.static_url(VENDOR_ECHARTS),  # None when not vendored: the page lists the values instead
        "colours": [[colour, COLOUR_NAMES[colour]] for colour in COLOURS],
        "measures": [[code, name] for code, name in MEASURES.items()],
    }
    html = render_template(
        "precision_control/dashboard.html",
        config=config,
        session_js=h5.static_url("session.js"),
        dom_js=h5.static_url("dom.js"),
        common_js=h5.static_url("dashboard_common.js", bp.name),
        page_js=h5.static_url("dashboard.js", bp.name),
    )
    return h5.page_response(html)


def init_app(app: Flask) -> None:
    # A plain Flask blueprint: HTML and static files are not part of the OpenAPI description.
    app.register_blueprint(bp)
