"""Card clicks over Stream: the official `dingtalk-stream` SDK connected to the sandbox, card callbacks arriving as
CALLBACK frames and applied by the same handlers as the HTTP callback — once, answered in the ack."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from bot import approvals, cards, stream_cards
from bot.models import BotCard
from tests.bot.conftest import deliver_all
from tests.bot.test_approvals import CALLBACK, FORM, OUTCOMES
from tests.conftest import run_jobs
from workbench.db import session


def _wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def stream_client(app, sandbox) -> Iterator[object]:
    """A Stream client in this process, subscribed to card callbacks only, on its own event loop."""
    os.environ["DINGTALK_OPENAPI_ENDPOINT"] = sandbox.url  # read by the SDK at import
    import dingtalk_stream

    # The SDK computes this at import; another test may have imported it against another sandbox.
    previous = dingtalk_stream.DingTalkStreamClient.OPEN_CONNECTION_API
    dingtalk_stream.DingTalkStreamClient.OPEN_CONNECTION_API = f"{sandbox.url}/v1.0/gateway/connections/open"
    settings = app.config["SETTINGS"].dingtalk
    client = dingtalk_stream.DingTalkStreamClient(dingtalk_stream.Credential(settings.app_key, settings.app_secret))
    stream_cards.register(client, app)
    loop = asyncio.new_event_loop()
    task = loop.create_task(client.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    _wait_for(lambda: getattr(client, "websocket", None) is not None)
    _wait_for(lambda: sandbox.admin("GET", "health").json().get("stream_connections", 0) > 0)
    yield client

    async def shutdown() -> None:
        task.cancel()
        await client.websocket.close()

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    dingtalk_stream.DingTalkStreamClient.OPEN_CONNECTION_API = previous
    _wait_for(lambda: sandbox.admin("GET", "health").json().get("stream_connections", 0) == 0)


def _click(sandbox, track: str, userid: str, action: str) -> dict:
    reply = sandbox.admin("POST", f"cards/{track}/click", json={"userid": userid, "action_id": action})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_card_clicks_over_stream_apply_once_and_answer_in_the_ack(app, sandbox, userids, stream_client):
    OUTCOMES.clear()
    approver, other = userids[3], userids[4]
    settings = app.config["SETTINGS"]
    streamed = dataclasses.replace(settings.dingtalk, card_callback_type="STREAM")
    app.config["SETTINGS"] = dataclasses.replace(settings, dingtalk=streamed)
    with app.app_context():
        row = approvals.request_approval(
            key=f"stream:{uuid.uuid4().hex[:12]}",
            title="11月医共体结算单",
            originator_userid=userids[0],
            approvers=[approver],
            form=FORM,
            callback=CALLBACK,
            context={"via": "stream"},
            process_code=None,
        )
        session().commit()
        approval_id = row.id
        [track] = [c.out_track_id for c in session().query(BotCard).all() if c.out_track_id.startswith("bot-approval:")]
    deliver_all(app)
    card = sandbox.admin("GET", "messages", params={"userid": approver, "kind": "card"}).json()["messages"]
    assert [m["card"]["callbackType"] for m in card if m["card"]["outTrackId"] == track] == ["STREAM"]

    first = _click(sandbox, track, approver, "approval.agree")
    assert first["channel"] == "stream" and "apply_error" not in first
    assert first["card"]["cardData"]["cardParamMap"]["status"] == "已同意"
    again = _click(sandbox, track, approver, "approval.refuse")  # a second tap, the other button
    assert again["card"]["cardData"]["cardParamMap"]["status"] == "已同意"
    forwarded = _click(sandbox, track, other, "approval.refuse")  # someone the card was forwarded to
    assert forwarded["card"]["cardData"]["cardParamMap"]["acted_by"] == approver
    run_jobs(app)
    assert [(o.approval_id, o.result, dict(o.context)) for o in OUTCOMES] == [(approval_id, "agree", {"via": "stream"})]
    OUTCOMES.clear()


def test_a_refused_click_over_stream_leaves_the_card_open(app, sandbox, userids, stream_client):
    with app.app_context():
        track = f"stream-test:{uuid.uuid4().hex[:16]}"
        cards.send_card(
            cards.APPROVAL,
            {"title": "公告", "summary": "", "status": "待处理", "acted_by": ""},
            out_track_id=track,
            userid=userids[5],
            callback_type="STREAM",
        )
        session().commit()
    deliver_all(app)
    reply = sandbox.admin("POST", f"cards/{track}/click", json={"userid": userids[5], "action_id": "no.such.action"})
    assert reply.status_code == 502 and "400" in reply.json()["error"]["message"]
    with app.app_context():
        assert session().get(BotCard, track).acted_by is None
