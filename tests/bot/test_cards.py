"""Cards against the sandbox: delivered to a group through the outbox, clicked by two people, tapped twice and
replayed — exactly one state change, a card showing who acted, and every answer well inside 2 seconds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from bot import cards, groups, outbox
from bot.models import BotCard, OutboxMessage
from tests.bot.conftest import deliver_all, sandbox_messages
from tests.support.sandbox import free_port
from workbench.db import session


@pytest.fixture
def served(app) -> Iterator[str]:
    """The workbench on a real port, so the sandbox can POST card callbacks to it."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


@pytest.fixture
def group_card(app, sandbox, userids, served) -> dict:
    owner, a, b = userids[:3]
    key = uuid.uuid4().hex
    with app.app_context():
        cards.register_callback(f"{served}/bot/card/callback")
        group = groups.create_scene_group("结算审批群", owner, [a, b], template_id="tpl", uuid=key)
        out_track_id = f"approval:{key[:16]}"
        cards.send_card(
            cards.APPROVAL,
            {"title": "11月医共体结算单", "summary": "金额 ¥128,000", "status": "待审批", "acted_by": ""},
            out_track_id=out_track_id,
            group=group.open_conversation_id,
        )
        session().commit()
    deliver_all(app)
    return {"cid": group.open_conversation_id, "out_track_id": out_track_id, "a": a, "b": b}


def test_two_people_tap_twice_and_a_replay_change_the_card_once(app, client, sandbox, group_card):
    track, a, b = group_card["out_track_id"], group_card["a"], group_card["b"]
    [message] = sandbox_messages(sandbox, conversation=group_card["cid"], kind="card")
    assert message["card"]["cardData"]["cardParamMap"]["status"] == "待审批"

    replies = []
    for userid, action in [(a, "approval.agree"), (a, "approval.agree"), (b, "approval.refuse")]:
        reply = sandbox.admin("POST", f"cards/{track}/click", json={"userid": userid, "action_id": action})
        assert reply.status_code == 200, reply.text
        replies.append(reply.json())
    assert all("apply_error" not in r for r in replies)  # reply time is measured in bench/bot.py, not here
    # A replayed callback: the same signed payload again.
    timestamp = str(int(time.time() * 1000))
    with app.app_context():
        secret = cards.api_secret()
    signature = base64.b64encode(hmac.new(secret.encode(), timestamp.encode(), hashlib.sha256).digest()).decode()
    payload = {
        "type": "actionCallback",
        "outTrackId": track,
        "userId": b,
        "content": '{"cardPrivateData": {"actionIds": ["approval.refuse"], "params": {}}}',
    }
    headers = {"x-ddpaas-signature-timestamp": timestamp, "x-ddpaas-signature": signature}
    replayed = client.post("/bot/card/callback", json=payload, headers=headers)
    assert replayed.status_code == 200
    assert replayed.json["cardData"]["cardParamMap"]["status"] == "已同意"

    card = sandbox_messages(sandbox, conversation=group_card["cid"], kind="card")[0]["card"]
    assert card["cardData"]["cardParamMap"]["status"] == "已同意"
    assert card["cardData"]["cardParamMap"]["acted_by"] == a
    with app.app_context():
        row = session().get(BotCard, track)
        assert (row.acted_by, row.action_id, row.version) == (a, "approval.agree", 2)


def test_callback_without_a_valid_signature_is_refused(client, group_card):
    payload = {"outTrackId": group_card["out_track_id"], "userId": group_card["a"], "content": "{}"}
    reply = client.post("/bot/card/callback", json=payload, headers={"x-ddpaas-signature-timestamp": "1"})
    assert reply.status_code == 401 and reply.json["error"]["code"] == "bad_signature"
    stamp = str(int(time.time() * 1000))
    forged = {"x-ddpaas-signature-timestamp": stamp, "x-ddpaas-signature": "AAAA"}
    assert client.post("/bot/card/callback", json=payload, headers=forged).status_code == 401


def test_card_redelivered_after_a_crash_is_not_duplicated(app, sandbox, group_card):
    with app.app_context():
        db = session()
        row = db.scalar(sa.select(OutboxMessage).where(OutboxMessage.channel == "card"))
        assert row.state == "sent" and row.out_track_id == group_card["out_track_id"]
        # As if the worker died after DingTalk created the card, before the outbox recorded it.
        row.state, row.inflight = "sending", {"uuid": "lost", "userids": []}
        db.commit()
        outbox.recover_outbox(lease=timedelta(0))
        db.expire_all()
        row = db.scalar(sa.select(OutboxMessage).where(OutboxMessage.channel == "card"))
        assert row.state == "sent" and row.receipts[-1]["already_existed"] is True
    assert len(sandbox_messages(sandbox, conversation=group_card["cid"], kind="card")) == 1


def test_update_card_in_place(app, sandbox, group_card):
    with app.app_context():
        cards.update_card(group_card["out_track_id"], {"summary": "金额已调整为 ¥120,000"})
    [message] = sandbox_messages(sandbox, conversation=group_card["cid"], kind="card")
    params = message["card"]["cardData"]["cardParamMap"]
    assert params["summary"] == "金额已调整为 ¥120,000" and params["title"] == "11月医共体结算单"
