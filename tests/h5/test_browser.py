"""The H5 shell in a real browser (Playwright driving Debian's headless Chromium): sign in through the sandbox
picker and see the apps the member's position allows; the DingTalk free-login path with a stand-in `dd`.

The app runs for real on a free loopback port (werkzeug in a thread, embedded SQLite) against the session
sandbox, with the sandbox's tree seeded into it. The apps each member should see come from the API itself
(`GET /api/workbench/apps` with that member's token): the page must show exactly those, by name.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import migrate
from tests.support.auth import auth_code, bearer, seed_tree, sign_in

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
expect = sync_api.expect

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # everything here is on loopback
]
TIMEOUT_MS = 20_000
VENDOR_JSAPI = Path(__file__).resolve().parents[2] / "workbench" / "static" / "h5" / "vendor" / "dingtalk.open.js"


@dataclass
class Live:
    app: object
    url: str


@pytest.fixture(scope="module")
def live(sandbox, tmp_path_factory) -> Iterator[Live]:
    from werkzeug.serving import make_server

    from config import load_settings
    from workbench import close_app, create_app

    var_dir = tmp_path_factory.mktemp("h5")
    env = {"SANDBOX_PORT": str(sandbox.port), "WORKBENCH_VAR_DIR": str(var_dir), "LOG_LEVEL": "WARNING"}
    settings = load_settings(env, read_dotenv=False)
    migrate(settings.database_url)
    app = create_app(settings)
    seed_tree(app, sandbox)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="h5-live-server", daemon=True)
    thread.start()
    try:
        yield Live(app, f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(10)
        close_app(app)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (scripts/test.sh)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request) -> Iterator[object]:
    user_agent = getattr(request, "param", None)
    context = browser.new_context(
        viewport={"width": 390, "height": 800}, locale="zh-CN", user_agent=user_agent, service_workers="block"
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# --- who signs in ---------------------------------------------------------------------------------------------


@dataclass
class Member:
    userid: str
    name: str
    node: str
    unit: str


def _member(app, where: sa.ColumnElement[bool], unit_level: str) -> Member:
    """The first active member of a node matching `where` whose unit (the node or an ancestor) is of `unit_level`."""
    from org_sync.models import OrgMember, OrgMembership, OrgNode
    from workbench import db

    with app.app_context():
        session = db.session()
        rows = session.execute(
            sa.select(OrgMember, OrgNode)
            .join(OrgMembership, OrgMembership.member_id == OrgMember.id)
            .join(OrgNode, OrgNode.id == OrgMembership.node_id)
            .where(where, OrgMember.active.is_(True), OrgMember.deleted_at.is_(None), OrgNode.deleted_at.is_(None))
            .order_by(OrgMember.id)
        ).all()
        for member, node in rows:
            ids = [int(part) for part in node.path.strip("/").split("/") if part]
            units = session.scalars(
                sa.select(OrgNode).where(OrgNode.id.in_(ids), OrgNode.level == unit_level).order_by(OrgNode.path)
            ).all()
            # One position only, so the header shows this unit.
            positions = session.scalar(
                sa.select(sa.func.count()).select_from(OrgMembership).where(OrgMembership.member_id == member.id)
            )
            if units and positions == 1:
                return Member(member.userid, member.name, node.name, units[-1].name)
    raise AssertionError(f"no member of a {unit_level} unit matching {where}")


def county_admin(app) -> Member:
    from org_sync.models import OrgNode

    return _member(app, OrgNode.level == "county_bureau", "county_bureau")


def village_doctor(app) -> Member:
    """A doctor of a village clinic (卫生室): the clinic is a department of a township hospital (成员单位)."""
    from org_sync.models import OrgMember, OrgNode

    return _member(app, sa.and_(OrgNode.name.contains("卫生室"), OrgMember.title == "乡村医生"), "member_institution")


def expected_apps(app, sandbox, userid: str) -> dict[str, list[str]]:
    """The groups and app names `GET /api/workbench/apps` gives this member (through the test client)."""
    client = app.test_client()
    reply = client.get("/api/workbench/apps", headers=bearer(sign_in(client, sandbox, userid)))
    assert reply.status_code == 200, reply.get_json()
    return {group["name"]: [a["name"] for a in group["apps"]] for group in reply.get_json()["groups"] if group["apps"]}


# --- the page -------------------------------------------------------------------------------------------------


def pick(page, member: Member, level: str | None = None) -> None:
    """Search the sandbox picker by name (and level) and sign in as `member`."""
    expect(page.locator("#picker")).to_be_visible()
    if level:
        page.select_option("#level", level)
    page.fill("#q", member.name)
    page.locator(f'button.person[data-userid="{member.userid}"]').click()


def assert_home(page, member: Member, apps: dict[str, list[str]]) -> None:
    expect(page.locator("#home")).to_be_visible()
    expect(page.locator("#member-name")).to_have_text(member.name)
    expect(page.locator("#member-unit")).to_contain_text(member.unit)
    expect(page.locator("#groups .group h2")).to_have_text(list(apps))
    for group, names in apps.items():
        section = page.locator("#groups .group").filter(has=page.locator("h2", has_text=group))
        expect(section.locator(".app-name")).to_have_text(names)
    expect(page.locator("#no-apps")).to_be_hidden()


def visible_apps(page) -> set[str]:
    return set(page.locator("#groups .app-name").all_inner_texts())


def test_county_admin_and_village_doctor_see_their_apps(live, sandbox, page):
    admin, doctor = county_admin(live.app), village_doctor(live.app)
    admin_apps, doctor_apps = (
        expected_apps(live.app, sandbox, admin.userid),
        expected_apps(live.app, sandbox, doctor.userid),
    )
    assert admin_apps and doctor_apps, "the catalog gives both members some apps"
    assert admin_apps != doctor_apps, "a county administrator and a village doctor see different workbenches"

    page.goto(live.url + "/h5/")
    expect(page.locator("#picker")).to_be_visible()
    expect(page.locator("#level option")).to_contain_text(["全部层级", "县卫健局"])
    pick(page, admin, level="county_bureau")
    assert_home(page, admin, admin_apps)
    admin_seen = visible_apps(page)
    admin_codes = set(page.locator("#groups .app").evaluate_all("els => els.map(e => e.dataset.code)"))

    # A reload keeps the session (tokens in sessionStorage); logout forgets it and shows the picker again.
    page.reload()
    expect(page.locator("#member-name")).to_have_text(admin.name)
    page.click("#logout")
    expect(page.locator("#picker")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('wb.tokens')") is None

    pick(page, doctor, level="internal_department")  # 科室 / 村卫生室
    assert_home(page, doctor, doctor_apps)
    assert visible_apps(page) != admin_seen

    # What each should see (migrations/versions/0006_app_catalog.py): compensation settlement is for
    # administrators, referral for the operational and service layers, precision control for everyone.
    assert {"compensation", "precision_control"} <= admin_codes and "referral" not in admin_codes
    doctor_codes = set(page.locator("#groups .app").evaluate_all("els => els.map(e => e.dataset.code)"))
    assert {"referral", "precision_control"} <= doctor_codes and "compensation" not in doctor_codes


def test_expired_access_token_is_refreshed_once(live, sandbox, page):
    """A 401 `token_expired` from the API makes the page rotate its refresh token and retry, without a sign-in."""
    from workbench.auth.tokens import issue_access_token

    doctor = village_doctor(live.app)
    page.goto(live.url + "/h5/")
    pick(page, doctor)
    expect(page.locator("#home")).to_be_visible()
    stored = page.evaluate("JSON.parse(sessionStorage.getItem('wb.tokens'))")

    settings = live.app.config["SETTINGS"]
    expired = dataclasses.replace(settings, access_token_seconds=-60)
    claims = live.app.test_client().get("/api/me", headers=bearer(stored)).get_json()["member"]
    stale = issue_access_token(expired, member_id=claims["id"], corp_id=settings.dingtalk.corp_id, userid=doctor.userid)
    page.evaluate("t => sessionStorage.setItem('wb.tokens', JSON.stringify(t))", {**stored, "access_token": stale})
    refreshes: list[str] = []
    page.on("request", lambda r: refreshes.append(r.url) if r.url.endswith("/api/auth/refresh") else None)
    with page.expect_response(lambda r: r.url.endswith("/api/auth/refresh")) as refreshed:
        page.reload()
    assert refreshed.value.status == 200
    expect(page.locator("#member-name")).to_have_text(doctor.name)
    expect(page.locator("#groups .app").first).to_be_visible()
    assert len(refreshes) == 1, "the two parallel 401s share one refresh (a rotated token is single-use)"
    rotated = page.evaluate("JSON.parse(sessionStorage.getItem('wb.tokens'))")
    assert rotated["refresh_token"] != stored["refresh_token"]


DINGTALK_UA = (
    "Mozilla/5.0 (Linux; Android 10; HMA-AL00) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/87.0.4280.141 "
    "Mobile Safari/537.36 AliApp(DingTalk/7.6.0) com.alibaba.android.rimet/37185386 Channel/700159 language/zh-CN"
)


# Stand-ins for the client's JSAPI: the union API of DingTalk 7.0.45+, and older clients that only have
# dd.runtime.permission.requestAuthCode (and no clientId).
UNION_DD = (
    "window.dd = {ready: function (f) { f(); }, error: function () {}, requestAuthCode: function (o) {"
    " window.__ddCalls.push({corpId: o.corpId, clientId: o.clientId}); setTimeout(function () {"
    " o.onSuccess({code: window.__code}); }, 10); }};"
)
LEGACY_DD = (
    "window.dd = {ready: function (f) { f(); }, runtime: {permission: {requestAuthCode: function (o) {"
    " window.__ddCalls.push({corpId: o.corpId}); setTimeout(function () {"
    " o.onSuccess({code: window.__code}); }, 10); }}}};"
)


@pytest.mark.parametrize("page", [DINGTALK_UA], indirect=True)
@pytest.mark.parametrize("client_api", ["union", "legacy"])
def test_inside_dingtalk_signs_in_with_request_auth_code(live, sandbox, page, client_api):
    """Inside DingTalk the page loads the self-hosted jsapi and calls requestAuthCode with the corp id (and the
    app key); here a stand-in `dd` answers with a real code the sandbox minted (the client's part)."""
    assert VENDOR_JSAPI.is_file(), "dingtalk-jsapi is not vendored: run scripts/vendor-js.sh (make setup does)"
    admin = county_admin(live.app)
    stand_in = f"window.__ddCalls = []; window.__code = {auth_code(sandbox, admin.userid)!r};"
    stand_in += UNION_DD if client_api == "union" else LEGACY_DD
    page.route(
        "**/h5/static/vendor/dingtalk.open.js*",
        lambda route: route.fulfill(status=200, content_type="application/javascript", body=stand_in),
    )
    page.goto(live.url + "/h5/")
    expect(page.locator("#member-name")).to_have_text(admin.name)
    expect(page.locator("#picker")).to_be_hidden()
    dingtalk = live.app.config["SETTINGS"].dingtalk
    expected = {"corpId": dingtalk.corp_id}
    if client_api == "union":
        expected["clientId"] = dingtalk.app_key
    assert page.evaluate("window.__ddCalls") == [expected]


def test_vendored_jsapi_loads_in_a_browser(live, page):
    """The bundle scripts/vendor-js.sh builds runs in a browser and sets `window.dd` (outside DingTalk it knows)."""
    assert VENDOR_JSAPI.is_file(), "dingtalk-jsapi is not vendored: run scripts/vendor-js.sh (make setup does)"
    page.goto(live.url + "/h5/")
    src = page.evaluate("JSON.parse(document.getElementById('wb-config').textContent).jsapi")
    assert src and "?v=" in src
    assert page.evaluate("() => typeof window.dd") == "undefined", "not loaded outside DingTalk"
    page.add_script_tag(url=live.url + src)
    assert page.evaluate("() => typeof dd.runtime.permission.requestAuthCode") == "function"
    assert page.evaluate("() => typeof dd.requestAuthCode") == "function"
    assert page.evaluate("() => dd.env.platform") == "notInDingTalk"


def test_network_error_is_shown_in_chinese(live, page):
    page.goto(live.url + "/h5/")
    expect(page.locator("#picker")).to_be_visible()
    page.route("**/api/auth/sandbox/code", lambda route: route.abort("connectionrefused"))
    page.fill("#q", "")
    page.locator("button.person").first.click()
    expect(page.locator("#status-text")).to_have_text("网络异常，请检查网络后重试")
    expect(page.locator("#retry")).to_be_visible()


def test_pc_browser_signs_in_through_the_oauth_route(live, sandbox, page):
    """Outside DingTalk the browser route starts at /api/auth/oauth/start; in sandbox mode it lands on the picker
    with a signed `state`, and the page finishes through `POST /api/auth/oauth` with an OAuth code."""
    admin = county_admin(live.app)
    page.goto(live.url + "/api/auth/oauth/start?next=/h5/")
    expect(page.locator("#picker")).to_be_visible()
    assert "state=" not in page.url, "the page drops the one-time parameters from the address bar"
    with page.expect_request(lambda r: r.url.endswith("/api/auth/oauth") and r.method == "POST") as oauth:
        pick(page, admin, level="county_bureau")
    assert oauth.value.post_data_json["state"]
    assert_home(page, admin, expected_apps(live.app, sandbox, admin.userid))
