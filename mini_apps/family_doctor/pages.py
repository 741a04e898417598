"""The team's H5 pages at `/h5/apps/family_doctor/` (the catalog's entry URL): 我的签约居民, a resident's card (with
续约), and the 签约 form.

Static shells like the workbench's own pages (`workbench.h5`): server-rendered, critical CSS inline, the shell's
session script plus this app's scripts under `static/` (content-hashed URLs, gzipped), the same CSP. They sign
nobody in and hold no data: everything comes from `/api/family-doctor/...` with the shell's tokens, so scope and
auditing stay with the API. Not signed in → the shell, which comes back here (`/h5/?next=...`).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, url_for

from mini_apps.family_doctor import service
from mini_apps.family_doctor.models import FOLLOW_UP_KINDS, MEMBER_ROLES, TAGS
from workbench import h5

bp = h5.PageBlueprint(
    "family_doctor_pages",
    __name__,
    url_prefix="/h5/apps/family_doctor",
    static_folder="static",
    static_url_path="/static",
    template_folder="templates",
)


def _page(template: str, script: str, **config: Any) -> Response:
    config = {
        "api": "/api/family-doctor",
        "shell": url_for("h5.shell"),
        "list": url_for("family_doctor_pages.residents"),
        "sign": url_for("family_doctor_pages.sign"),
        "resident": url_for("family_doctor_pages.resident", resident_id=0).removesuffix("0"),
        "tags": [[code, name] for code, name in TAGS.items()],  # a list: the JSON block's keys come out sorted
        "followUpKinds": FOLLOW_UP_KINDS,
        "roles": MEMBER_ROLES,
        "package": service.BASIC_PACKAGE,
        **config,
    }
    return h5.app_page(bp, f"family_doctor/{template}", script, config)


@bp.get("/")
def residents() -> Response:
    """我的签约居民: the team's residents (team picker for members of several teams), filters, paging."""
    return _page("residents.html", "residents.js")


@bp.get("/residents/<int:resident_id>")
def resident(resident_id: int) -> Response:
    """A resident's card: details (masked), contracts, follow-ups, 续约."""
    return _page("resident.html", "resident.js", residentId=resident_id)


@bp.get("/sign")
def sign() -> Response:
    """签约: a new (or returning) resident signed to one of the caller's teams (`?team_id=` preselects it)."""
    return _page("sign.html", "sign.js")


def init_app(app: Flask) -> None:
    # A plain Flask blueprint: HTML and static files are not part of the OpenAPI description.
    app.register_blueprint(bp)
