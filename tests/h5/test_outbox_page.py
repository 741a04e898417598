"""The administrators' page `/h5/admin/outbox` in a real browser: a province commission member who signed in at the
shell sees the outbox counts and rows (the failed one with DingTalk's error), retries it once the robot is fixed
and watches it go out; the approvals tab; a county bureau member is told the page is for province administrators;
someone not signed in is sent to the shell.

The live server, Chromium and the sandbox are `test_browser`'s fixtures (this module gets its own live app).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import run_jobs
from tests.h5 import test_browser
from tests.h5.test_browser import TIMEOUT_MS, _member, county_admin, pick
from tests.support.auth import bearer, sign_in

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
expect = sync_api.expect

PAGE = "/h5/admin/outbox"
CALLBACK = "tests.h5.test_outbox_page:record_outcome"

# The shell's fixtures, used here under the same names (pytest finds them as this module's attributes).
live = test_browser.live
browser = test_browser.browser


def record_outcome(outcome) -> None:  # the approval's callback; the page only reads approvals
    pass


def _context(browser, width: int, height: int) -> Iterator[object]:
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN", service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def desk(browser) -> Iterator[object]:
    """A PC browser window (administrators mostly use one)."""
    yield from _context(browser, 1280, 860)


@pytest.fixture
def phone(browser) -> Iterator[object]:
    yield from _context(browser, 390, 800)


def province_admin(app):
    from org_sync.models import OrgNode

    return _member(app, OrgNode.level == "province_commission", "province_commission")


def _wait_settled(app, ids: list[int], timeout: float = 20) -> dict[int, str]:
    """Run the delivery jobs until none of `ids` is queued or sending; their states."""
    from bot.models import OutboxMessage
    from workbench.db import session

    deadline = time.monotonic() + timeout
    while True:
        run_jobs(app)
        with app.app_context():
            states = dict(
                session()
                .execute(sa.select(OutboxMessage.id, OutboxMessage.state).where(OutboxMessage.id.in_(ids)))
                .all()
            )
        if all(s not in ("queued", "sending") for s in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


@pytest.fixture(scope="module")
def seeded(live, sandbox) -> dict:
    """Two webhook alerts (one to a robot whose token DingTalk does not know: it fails), a work notice, and an
    OA approval, delivered by the app's own jobs."""
    from bot import approvals, messages, outbox
    from workbench.db import session

    tag = uuid.uuid4().hex[:8]
    good = sandbox.admin("POST", "robots", json={"title": "医共体告警"}).json()
    live.app.config["BOT_WEBHOOK_GROUP_WAIT"] = 0  # send at once
    users = sorted(u["userid"] for u in sandbox.admin("GET", "truth?only=users").json()["users"])
    with live.app.app_context():
        outbox.register_robot("page-ok", good["access_token"], good["secret"], "医共体告警")
        outbox.register_robot("page-broken", "no-such-token-" + tag, good["secret"], "配错的群")
        alert = {"level": "critical", "indicator": "双向转诊", "org_name": "县人民医院", "summary": "联系 13912345678"}
        ok = outbox.enqueue_message(
            "robot_webhook", messages.alert(**alert), idempotency_key=f"ok-{tag}", target="page-ok"
        )
        bad = outbox.enqueue_message(
            "robot_webhook", messages.alert(**alert), idempotency_key=f"bad-{tag}", target="page-broken"
        )
        notice = outbox.enqueue_message(
            "work_notice", messages.text(f"随访提醒 {tag}"), idempotency_key=f"n-{tag}", to=users[:4]
        )
        approval = approvals.request_approval(
            key=f"settlement:{tag}",
            title="11月医共体结算单",
            originator_userid=users[0],
            approvers=users[1:3],
            form=[("结算周期", "2026年11月"), ("金额", "¥128,000")],
            callback=CALLBACK,
            process_code="PROC-SETTLEMENT-01",
        )
        session().commit()
        ids = {"ok": ok.id, "bad": bad.id, "notice": notice.id, "approval": approval.id}
    states = _wait_settled(live.app, [ids["ok"], ids["bad"], ids["notice"]])
    assert states[ids["bad"]] == "failed" and states[ids["ok"]] == "sent", states
    return {**ids, "good": good, "approvers": users[1:3]}


def _api(live, sandbox, userid: str, path: str) -> dict:
    client = live.app.test_client()
    reply = client.get(path, headers=bearer(sign_in(client, sandbox, userid)))
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def test_province_admin_sees_counts_rows_and_retries_a_failed_message(live, sandbox, seeded, desk):
    from bot import outbox

    admin = province_admin(live.app)
    page = desk
    # Signed in at the shell (the sandbox picker), then the page in the same tab: it uses the shell's tokens.
    page.goto(live.url + "/h5/")
    pick(page, admin, level="province_commission")
    expect(page.locator("#home")).to_be_visible()
    page.goto(live.url + PAGE)

    counts = _api(live, sandbox, admin.userid, "/api/bot/outbox/counts")["states"]
    expect(page.locator("#counts .count.failed b")).to_have_text(str(counts["failed"]))
    expect(page.locator("#counts .count.sent b")).to_have_text(str(counts["sent"]))
    expect(page.locator('#counts .count[data-state=""] b')).to_have_text(str(sum(counts.values())))
    expect(page.locator("#quota")).to_contain_text("接口调用")

    bad = page.locator(f'#outbox-rows tr[data-id="{seeded["bad"]}"]')
    expect(bad).to_contain_text("失败")
    expect(bad).to_contain_text("page-broken")
    expect(bad).to_contain_text("群机器人")
    expect(bad.locator("td.err")).to_contain_text("300005")
    ok = page.locator(f'#outbox-rows tr[data-id="{seeded["ok"]}"]')
    expect(ok).to_contain_text("已发送")
    expect(ok.locator("button.retry")).to_have_count(0)
    expect(page.locator(f'#outbox-rows tr[data-id="{seeded["notice"]}"]')).to_contain_text("工作通知")

    # Filters: by state (a count chip or the select), by channel.
    page.locator("#counts .count.failed").click()
    expect(page.locator("#f-state")).to_have_value("failed")
    expect(page.locator("#outbox-rows tr")).to_have_count(counts["failed"])
    expect(page.locator('#outbox-rows tr[data-state="failed"]')).to_have_count(counts["failed"])
    page.select_option("#f-state", "")
    page.select_option("#f-channel", "work_notice")
    expect(page.locator(f'#outbox-rows tr[data-id="{seeded["notice"]}"]')).to_be_visible()
    expect(page.locator(f'#outbox-rows tr[data-id="{seeded["bad"]}"]')).to_have_count(0)
    page.select_option("#f-channel", "")

    # Detail of the failed one: its error, its target, the alert's phone masked.
    page.locator(f'#outbox-rows tr[data-id="{seeded["bad"]}"] a', has_text="详情").click()
    detail = page.locator("#detail")
    expect(detail).to_contain_text(f"消息 #{seeded['bad']}")
    expect(detail).to_contain_text("300005")
    expect(detail).to_contain_text("139****5678")
    assert "13912345678" not in detail.inner_text()
    page.go_back()
    expect(page.locator("#outbox")).to_be_visible()

    # The robot's token is fixed; 重试 queues the row again and the page follows it until DingTalk took it.
    with live.app.app_context():
        outbox.register_robot("page-broken", seeded["good"]["access_token"], seeded["good"]["secret"], "配错的群")
    bad = page.locator(f'#outbox-rows tr[data-id="{seeded["bad"]}"]')
    with page.expect_response(lambda r: r.url.endswith(f"/outbox/{seeded['bad']}/retry")) as retried:
        bad.locator("button.retry").click()
    assert retried.value.status == 200 and retried.value.json()["state"] == "queued"
    expect(bad.locator(".tag")).to_have_text("已发送")
    expect(bad.locator("button.retry")).to_have_count(0)
    expect(page.locator("#counts .count.failed b")).to_have_text(str(counts["failed"] - 1))
    got = sandbox.admin("GET", "messages", params={"conversation": seeded["good"]["open_conversation_id"]}).json()
    assert len(got["messages"]) == 2, "the fixed robot's group got both alerts, each once"

    # The approvals tab.
    page.locator("#tab-approvals").click()
    row = page.locator(f'#approval-rows tr[data-id="{seeded["approval"]}"]')
    expect(row).to_contain_text("11月医共体结算单")
    expect(row).to_contain_text("审批中")
    expect(row).to_contain_text(seeded["approvers"][0])
    row.locator("a", has_text="详情").click()
    expect(page.locator("#detail")).to_contain_text("结算周期")
    expect(page.locator("#detail")).to_contain_text("OA 审批")


def test_retry_shows_the_reason_when_the_row_is_no_longer_failed(live, sandbox, seeded, phone):
    """On a phone; the row went out meanwhile (another administrator retried it): the API's 409 is shown."""
    from bot.models import OutboxMessage
    from workbench.db import session

    admin = province_admin(live.app)
    with live.app.app_context():
        db = session()
        row = db.get(OutboxMessage, seeded["ok"])
        row.state, row.last_error = "failed", "invalidParameter"
        db.commit()
    tokens = sign_in(live.app.test_client(), sandbox, admin.userid)
    phone.goto(live.url + PAGE)
    phone.evaluate("t => sessionStorage.setItem('wb.tokens', JSON.stringify(t))", tokens)
    phone.reload()
    line = phone.locator(f'#outbox-rows tr[data-id="{seeded["ok"]}"]')
    expect(line.locator("td.err")).to_contain_text("invalidParameter")
    with live.app.app_context():
        db = session()
        db.get(OutboxMessage, seeded["ok"]).state = "sent"
        db.commit()
    line.locator("button.retry").click()
    expect(phone.locator("#notice")).to_contain_text("只能重试失败或暂缓的消息")
    expect(line.locator("button.retry")).to_be_enabled()


def test_county_bureau_member_is_told_it_is_for_province_administrators(live, sandbox, phone):
    member = county_admin(live.app)
    tokens = sign_in(live.app.test_client(), sandbox, member.userid)
    phone.goto(live.url + PAGE)
    phone.evaluate("t => sessionStorage.setItem('wb.tokens', JSON.stringify(t))", tokens)
    phone.reload()
    expect(phone.locator("#status-text")).to_have_text("仅省级管理员可查看消息投递与审批")
    expect(phone.locator("#app")).to_be_hidden()
    expect(phone.locator("#status-link")).to_be_hidden()


def test_without_sign_in_it_links_to_the_shell(live, desk):
    reply = live.app.test_client().get(PAGE)
    assert reply.status_code == 200 and reply.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert "script-src 'self';" in reply.headers["Content-Security-Policy"]
    desk.goto(live.url + PAGE)
    expect(desk.locator("#status-text")).to_contain_text("请先在工作台登录")
    link = desk.locator("#status-link")
    expect(link).to_be_visible()
    assert link.get_attribute("href") == "/h5/?next=/h5/admin/outbox"
    link.click()
    # Signing in at the shell brings the administrator back here.
    pick(desk, province_admin(live.app), level="province_commission")
    desk.wait_for_url(live.url + PAGE)
    expect(desk.locator("#status-text")).not_to_contain_text("请先在工作台登录")
