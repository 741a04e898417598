"""The H5 shell at `/h5/`: the workbench page DingTalk opens (free-login, then the member's apps).

One server-rendered page (critical CSS inline) and one small script, no framework and no build step: it has to
load fast on a weak phone over a hospital intranet that may not reach any CDN. Inside DingTalk the page loads the
self-hosted dingtalk-jsapi (`scripts/vendor-js.sh` puts it in `static/h5/vendor/`) and calls
`dd.requestAuthCode`; in a PC browser it goes through DingTalk's OAuth2 page; with the sandbox it offers a picker
of the synced tree's members. Everything after sign-in is the JSON API (`/api/me`, `/api/workbench/apps`).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import mimetypes
import os
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, make_response, render_template, request, send_file, url_for
from werkzeug.security import safe_join

VENDOR_JSAPI = "vendor/dingtalk.open.js"
LONG_CACHE_SECONDS = 365 * 86400
COMPRESSIBLE = (".js", ".svg", ".css", ".json")

# Org-tree levels as the sign-in picker's filter offers them (settings-independent: these are the sync's levels).
LEVELS = (
    ("province_commission", "省卫健委"),
    ("city_commission", "市卫健委"),
    ("county_bureau", "县卫健局"),
    ("medical_community_lead", "医共体牵头医院"),
    ("member_institution", "成员单位（卫生院等）"),
    ("internal_department", "科室 / 村卫生室"),  # village clinics are departments of their township hospital
)

# Images may come from regional apps' own hosts; scripts, styles and calls only from here.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https: http:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'"
)


class PageBlueprint(Blueprint):
    """A blueprint of H5 pages: its static files gzipped and, when asked for by content hash, cached for good (the
    shell's, and mini apps' own page blueprints)."""

    def get_send_file_max_age(self, filename: str | None) -> int | None:
        # URLs the page builds carry `?v=<content hash>`, so they may be cached for good; others revalidate.
        return LONG_CACHE_SECONDS if request.args.get("v") else None

    def send_static_file(self, filename: str) -> Response:
        # Scripts and icons gzipped (the vendored jsapi: 465 KiB → 62 KiB), for when no proxy in front compresses.
        path = safe_join(str(self.static_folder), filename)
        if (
            path is None
            or not filename.endswith(COMPRESSIBLE)
            or "gzip" not in request.accept_encodings
            or not os.path.isfile(path)
        ):
            return super().send_static_file(filename)
        stat = os.stat(path)
        body, digest = _gzipped(path, stat.st_mtime_ns)
        response = send_file(
            io.BytesIO(body),
            mimetype=mimetypes.guess_type(filename)[0] or "application/octet-stream",
            etag=f"{digest}-gz",
            last_modified=stat.st_mtime,
            max_age=self.get_send_file_max_age(filename),
        )
        response.headers["Content-Encoding"] = "gzip"
        response.vary.add("Accept-Encoding")
        return response


bp = PageBlueprint(
    "h5", __name__, url_prefix="/h5", static_folder="static/h5", static_url_path="/static", template_folder="templates"
)


@functools.cache
def _digest(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@functools.lru_cache(maxsize=32)
def _gzipped(path: str, mtime_ns: int) -> tuple[bytes, str]:
    raw = Path(path).read_bytes()
    return gzip.compress(raw, compresslevel=9, mtime=0), hashlib.sha256(raw).hexdigest()[:16]


def static_url(filename: str, blueprint: str = "h5") -> str | None:
    """The file's URL with a content-hash query (None when the file is missing, e.g. the unvendored jsapi); a
    file of another `PageBlueprint` by its name."""
    path = Path(current_app.blueprints[blueprint].static_folder) / filename
    try:
        version = _digest(path, path.stat().st_mtime_ns)
    except FileNotFoundError:
        return None
    return url_for(f"{blueprint}.static", filename=filename, v=version)


@bp.get("/")
def shell():
    """The workbench page. Query parameters it understands: `authCode` + `state` (back from DingTalk's OAuth2
    page), `login=sandbox` (the sandbox picker, from `/api/auth/oauth/start` in sandbox mode)."""
    dingtalk = current_app.config["SETTINGS"].dingtalk
    config = {
        "sandbox": dingtalk.sandbox,
        "corpId": dingtalk.corp_id,
        "clientId": dingtalk.app_key,
        "agentId": dingtalk.agent_id,
        "jsapi": static_url(VENDOR_JSAPI),
        "icons": url_for("h5.static", filename="icons/"),
        "levels": [{"code": code, "name": name} for code, name in LEVELS],
    }
    return _page("h5/index.html", config, "app.js")


@bp.get("/admin/outbox")
def admin_outbox():
    """Delivery state and failures for province administrators: the outbox by state and channel, one message's
    detail and 重试, and the approvals. Signs nobody in: it uses the tokens the shell keeps (sessionStorage), and
    `/api/bot` decides who may read it (a 403 is shown as such)."""
    config = {"shell": url_for("h5.shell", next=url_for("h5.admin_outbox")), "api": "/api/bot"}
    return _page("h5/outbox.html", config, "outbox.js")


def _page(template: str, config: dict, script: str) -> Response:
    """A page: its config as an inert JSON block, the shared session script and its own, and headers that keep
    scripts to this site and the page itself uncached (its script URLs carry content hashes instead)."""
    html = render_template(
        template,
        config=config,
        session_js=static_url("session.js"),
        dom_js=static_url("dom.js"),
        page_js=static_url(script),
    )
    return page_response(html)


def public_url(path: str) -> str:
    """An absolute link to a page of this workbench, for cards and messages (DingTalk opens only absolute URLs)."""
    return current_app.config["SETTINGS"].public_url + path


def app_page(blueprint: PageBlueprint, template: str, script: str, config: dict) -> Response:
    """A mini app's page (its templates extend `h5/app.html`): the shell's session and DOM scripts, the app's
    `common.js` and the page's own script, all from their blueprints with content hashes."""
    html = render_template(
        template,
        config=config,
        session_js=static_url("session.js"),
        dom_js=static_url("dom.js"),
        common_js=static_url("common.js", blueprint.name),
        page_js=static_url(script, blueprint.name),
    )
    return page_response(html)


def page_response(html: str) -> Response:
    """A rendered H5 page with the shell's headers (also for mini apps' pages)."""
    response = make_response(html)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def init_app(app: Flask) -> None:
    # A plain Flask blueprint: HTML and static files are not part of the OpenAPI description.
    app.register_blueprint(bp)
