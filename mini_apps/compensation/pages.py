"""The compensation H5 pages at `/h5/apps/compensation/` (the catalogue's entry URL), for phones (DingTalk H5) and for
finance staff at their desks (a wide table on wide screens):

- the landing page (`/`): for a county bureau's administrators and finance officers (and commission
  administrators above, who pick the county) the **county finance view** — 月度预拨 or 年度清算 and the period, the
  county's institutions with their settlement of that period (state, revision, 当量 per package, coefficient,
  purchase amount, line items, payable) and the totals, 生成结算 and 提交审批 when the API would take them, 导出
  Excel; for an institution's administrator **their institution's view** — every revision of its settlements with
  state, who, when and the refusal reason;
- one settlement (`/settlements/<id>`): the figures and how each was computed (the API's `computation`), the
  lines by package with the excluded units of each line opening the exclusions behind it (record, units, reason),
  the revision history of that institution and period, 导出 Excel, and 内部分配 for an approved one (shown to the
  institution's administrators);
- its internal distribution (`/settlements/<id>/distribution`, 二次分配): the institution's current rule, editable
  by its administrators (read-only for the county's readers), 生成分配方案, the shares with how they were computed
  and their exact totals, the revisions, 确认 for a draft;
- one's own shares (`/my-shares`): any signed-in member's confirmed shares with how each was reached — where the
  confirmation's work notice links (`distribution.MY_SHARES_URL`), so no catalogue role is needed to open it.

Static shells like the other apps' pages: server-rendered, critical CSS inline, the shell's `session.js` and
`dom.js` plus this app's scripts under `static/` (content-hashed, gzipped), the shell's CSP. No data in the page:
everything comes from the API (`/api/me` and `/api/org/nodes/<id>` for where the caller stands, then
`/api/compensation/...`), so scope, figures and permissions stay with the API. Labels below are the models'.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, url_for

from mini_apps.compensation import distribution as distribution_module
from mini_apps.compensation.catalog import COUNTY
from mini_apps.compensation.models import DISTRIBUTION_STATES, PACKAGES, SETTLEMENT_KINDS, SETTLEMENT_STATES
from mini_apps.compensation.settlement import OPEN_STATES, READER_ROLES, WRITER_ROLES
from workbench import h5
from workbench.auth.principal import ADMINISTRATIVE_LEVELS, INSTITUTION_LEVELS

bp = h5.PageBlueprint(
    "compensation_pages",
    __name__,
    url_prefix="/h5/apps/compensation",
    static_folder="static",
    static_url_path="/static",
    template_folder="templates",
)

API = "/api/compensation"


def _pairs(mapping: dict[str, str]) -> list[list[str]]:
    # Lists, not objects: the JSON block's object keys come out sorted and the order matters here.
    return [[code, name] for code, name in mapping.items()]


def _page(template: str, script: str, **config: Any) -> Response:
    config = {
        "api": API,
        "shell": url_for("h5.shell"),
        "list": url_for("compensation_pages.home"),
        "home": url_for("compensation_pages.home"),
        "settlement": url_for("compensation_pages.settlement", settlement_id=0).removesuffix("0"),
        "states": _pairs(SETTLEMENT_STATES),
        "distributionStates": _pairs(DISTRIBUTION_STATES),
        "managerRoles": list(distribution_module.MANAGER_ROLES),
        "openStates": list(OPEN_STATES),
        "kinds": _pairs(SETTLEMENT_KINDS),
        "packages": _pairs(PACKAGES),
        "readerRoles": list(READER_ROLES),
        "writerRoles": list(WRITER_ROLES),
        "countyLevel": COUNTY,
        "administrativeLevels": list(ADMINISTRATIVE_LEVELS),
        "institutionLevels": list(INSTITUTION_LEVELS),
        **config,
    }
    return h5.app_page(bp, f"compensation/{template}", script, config)


@bp.get("/")
def home() -> Response:
    """The county finance view (`?county_id=&kind=&period=`) or, for an institution's administrator, their
    institution's settlements."""
    return _page("home.html", "home.js")


@bp.get("/settlements/<int:settlement_id>")
def settlement(settlement_id: int) -> Response:
    """One settlement: figures with their computation, lines with the excluded units, revision history."""
    return _page("settlement.html", "settlement.js", settlementId=settlement_id)


@bp.get("/settlements/<int:settlement_id>/distribution")
def distribution(settlement_id: int) -> Response:
    """The internal distribution (二次分配) of one settlement: the rule, the shares, the revisions, 确认."""
    return _page("distribution.html", "distribution.js", settlementId=settlement_id)


@bp.get("/my-shares")
def my_shares() -> Response:
    """The caller's own confirmed shares (the work notice's link): any signed-in member, their own data only."""
    # The way back is the workbench: a clinician has no role the landing page serves.
    return _page("my_shares.html", "my_shares.js", list=url_for("h5.shell"))


def init_app(app: Flask) -> None:
    # A plain Flask blueprint: HTML and static files are not part of the OpenAPI description.
    app.register_blueprint(bp)
