"""Approvals against the sandbox: an OA instance started, decided in the sandbox and finished by its events (or,
when they are lost, by the poller); the card fallback decided by a click; the caller called back once each time,
whatever was repeated."""

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

from bot import approvals, cards
from bot.approvals import ApprovalOutcome
from bot.models import BotApproval, BotCard
from tests.bot.conftest import ADMIN, deliver_all, sandbox_messages
from tests.conftest import run_jobs
from tests.support.sandbox import free_port
from workbench.db import session
from workbench.dingtalk.events import Event, ingest

CALLBACK = "tests.bot.test_approvals:record_outcome"
OUTCOMES: list[ApprovalOutcome] = []
FORM = [("结算周期", "2026年11月"), ("金额", "¥128,000"), ("联系人电话", "13912345678")]


def record_outcome(outcome: ApprovalOutcome) -> None:
    OUTCOMES.append(outcome)


@pytest.fixture(autouse=True)
def _fresh_outcomes() -> Iterator[None]:
    OUTCOMES.clear()
    yield
    OUTCOMES.clear()


def _request(app, userids, *, approvers, mode="any", process_code="PROC-SETTLEMENT-01", key=None) -> int:
    with app.app_context():
        row = approvals.request_approval(
            key=key or f"settlement:{uuid.uuid4().hex[:12]}",
            title="11月医共体结算单",
            originator_userid=userids[0],
            approvers=approvers,
            mode=mode,
            form=FORM,
            callback=CALLBACK,
            context={"settlement_id": 42},
            process_code=process_code,
        )
        session().commit()
        return row.id


def _row(app, approval_id: int) -> BotApproval:
    with app.app_context():
        db = session()
        row = db.get(BotApproval, approval_id, populate_existing=True)
        db.expunge(row)
        return row


def _decide(sandbox, instance_id: str, userid: str, result: str) -> list[dict]:
    reply = sandbox.admin("POST", f"approvals/{instance_id}/decide", json={"userid": userid, "result": result})
    assert reply.status_code == 200, reply.text
    return reply.json()["deliveries"]


def _ingest(app, deliveries: list[dict], *, event_id_prefix: str = "") -> list[bool]:
    """Hand the sandbox's events to the workbench as the HTTP callback would (the ingress has its own tests)."""
    with app.app_context():
        return [
            ingest(Event(event_id_prefix + d["event_id"], d["event_type"], None, None, d["data"], "http"))
            for d in deliveries
        ]


def test_workflow_approved_in_the_sandbox_calls_back_once_with_agree(app, client, sandbox, userids):
    approver = userids[1]
    approval_id = _request(app, userids, approvers=[approver])
    assert _row(app, approval_id).state == "pending"  # nothing starts before the job runs after commit
    run_jobs(app)
    row = _row(app, approval_id)
    assert (row.state, row.channel) == ("started", "workflow") and row.instance_id
    instance = sandbox.admin("GET", "approvals").json()["approvals"]
    [mine] = [i for i in instance if i["instanceId"] == row.instance_id]
    assert mine["processCode"] == "PROC-SETTLEMENT-01" and mine["approverUserIds"] == [approver]
    assert {"name": "金额", "value": "¥128,000"} in mine["formComponentValues"]

    deliveries = _decide(sandbox, row.instance_id, approver, "agree")
    assert [d["event_type"] for d in deliveries] == ["bpms_task_change", "bpms_instance_change"]
    assert _ingest(app, deliveries) == [True, True]
    assert _ingest(app, deliveries) == [False, False]  # DingTalk's redelivery: the same event ids
    run_jobs(app)
    _ingest(app, deliveries, event_id_prefix="again-")  # the same news under new ids: settled already
    run_jobs(app)

    assert [(o.approval_id, o.result, dict(o.context)) for o in OUTCOMES] == [
        (approval_id, "agree", {"settlement_id": 42})
    ]
    assert [(d["userid"], d["result"]) for d in OUTCOMES[0].decisions] == [(approver, "agree")]
    row = _row(app, approval_id)
    assert (row.state, row.result) == ("approved", "agree") and row.callback_at is not None

    one = client.get(f"/api/bot/approvals/{approval_id}", headers=ADMIN)
    assert one.status_code == 200 and one.json["state"] == "approved" and one.json["result"] == "agree"
    assert "13912345678" not in str(one.json) and ["联系人电话", "139****5678"] in one.json["form"]
    page = client.get("/api/bot/approvals?state=approved", headers=ADMIN).json
    assert [item["id"] for item in page["items"]] == [approval_id] and page["total"] == 1
    assert client.get("/api/bot/approvals").status_code == 401
    assert client.get("/api/bot/approvals/999999", headers=ADMIN).status_code == 404


def test_workflow_in_sequence_refused_by_the_second_approver(app, sandbox, userids):
    first, second = userids[1], userids[2]
    approval_id = _request(app, userids, approvers=[first, second], mode="sequence")
    run_jobs(app)
    instance_id = _row(app, approval_id).instance_id
    _ingest(app, _decide(sandbox, instance_id, first, "agree"))
    run_jobs(app)
    row = _row(app, approval_id)
    assert row.state == "started" and [(d["userid"], d["result"]) for d in row.decisions] == [(first, "agree")]
    assert OUTCOMES == []
    _ingest(app, _decide(sandbox, instance_id, second, "refuse"))
    run_jobs(app)
    assert [(o.approval_id, o.result) for o in OUTCOMES] == [(approval_id, "refuse")]
    assert _row(app, approval_id).state == "refused"


def test_a_lost_event_is_caught_by_the_poller(app, sandbox, userids):
    approver = userids[1]
    approval_id = _request(app, userids, approvers=[approver])
    run_jobs(app)
    instance_id = _row(app, approval_id).instance_id
    _decide(sandbox, instance_id, approver, "agree")  # its events never reach the workbench
    with app.app_context():
        assert approvals.poll_approvals()["read"] == 0  # touched recently: not worth a metered call yet
        counts = approvals.poll_approvals(stale_after=timedelta(0))
    assert counts["read"] == 1 and counts["finished"] == 1
    run_jobs(app)
    with app.app_context():
        approvals.poll_approvals(stale_after=timedelta(0))  # nothing open any more: no read, no second callback
    run_jobs(app)
    assert [(o.approval_id, o.result) for o in OUTCOMES] == [(approval_id, "agree")]
    row = _row(app, approval_id)
    assert row.state == "approved" and [d["via"] for d in row.decisions] == ["read"]


def test_an_unknown_event_type_reads_the_instance_instead_of_guessing(app, sandbox, userids):
    approval_id = _request(app, userids, approvers=[userids[1]])
    run_jobs(app)
    instance_id = _row(app, approval_id).instance_id
    event = {"processInstanceId": instance_id, "type": "redirect", "staffId": userids[1]}
    with app.app_context():
        ingest(Event(uuid.uuid4().hex, "bpms_task_change", None, None, event, "http"))
    run_jobs(app)
    assert _row(app, approval_id).state == "started"  # still running in the sandbox
    _decide(sandbox, instance_id, userids[1], "refuse")
    with app.app_context():
        ingest(Event(uuid.uuid4().hex, "bpms_instance_change", None, None, {**event, "type": "terminate"}, "http"))
    run_jobs(app)
    assert [(o.approval_id, o.result) for o in OUTCOMES] == [(approval_id, "refuse")]


def test_a_refused_start_fails_and_calls_back_once(app, userids):
    approval_id = _request(app, userids, approvers=[userids[1]], process_code="not-a-process-code")
    run_jobs(app)
    row = _row(app, approval_id)
    assert (row.state, row.result) == ("failed", "failed") and "processCodeError" in row.last_error
    assert [(o.result, o.error is not None) for o in OUTCOMES] == [("failed", True)]


def test_same_key_one_request_and_workers_racing_start_and_call_back_once(app, sandbox, userids):
    key = f"settlement:{uuid.uuid4().hex[:12]}"
    approval_id = _request(app, userids, approvers=[userids[1]], key=key)
    assert _request(app, userids, approvers=[userids[2]], key=key) == approval_id
    with app.app_context():
        approvals.start_approval(approval_id)  # as if two workers got the job
        approvals.start_approval(approval_id)
    run_jobs(app)
    row = _row(app, approval_id)
    started = [i for i in sandbox.admin("GET", "approvals").json()["approvals"] if i["instanceId"] == row.instance_id]
    assert len(started) == 1
    _ingest(app, _decide(sandbox, row.instance_id, userids[1], "agree"))
    with app.app_context():
        from workbench.dingtalk.events import DingTalkEvent, handle_event

        for event_row in session().scalars(sa.select(DingTalkEvent.id)).all():
            handle_event(event_row)
        approvals.run_callback(approval_id)
        approvals.run_callback(approval_id)
    run_jobs(app)
    assert [(o.approval_id, o.result) for o in OUTCOMES] == [(approval_id, "agree")]


def test_request_is_checked_before_anything_is_stored(app, userids):
    from workbench.errors import ApiError

    with app.app_context():
        for bad, field in [
            ({"callback": "tests.bot.test_approvals:no_such_function"}, "callback"),
            ({"approvers": []}, "approvers"),
            ({"mode": "majority"}, "mode"),
        ]:
            args = {
                "key": uuid.uuid4().hex,
                "title": "结算",
                "originator_userid": userids[0],
                "approvers": [userids[1]],
                "form": FORM,
                "callback": CALLBACK,
                **bad,
            }
            with pytest.raises(ApiError) as caught:
                approvals.request_approval(**args)
            assert caught.value.field == field
        session().rollback()
        assert session().scalar(sa.select(sa.func.count()).select_from(BotApproval)) == 0


def test_outcome_rules():
    agree, refuse = ({"userid": "a", "result": "agree"},), ({"userid": "b", "result": "refuse"},)
    assert approvals.outcome_of("any", ["a", "b"], agree) == "agree"
    assert approvals.outcome_of("all", ["a", "b"], agree) is None
    assert approvals.outcome_of("all", ["a", "b"], agree + refuse) == "refuse"
    assert approvals.outcome_of("sequence", ["a", "b"], (*agree, {"userid": "b", "result": "agree"})) == "agree"
    assert approvals.outcome_of("any", ["a"], ({"userid": "x", "result": "refuse"},)) is None


# -- the card fallback --------------------------------------------------------------------------------------------


@pytest.fixture
def served(app) -> Iterator[str]:
    """The workbench on a real port, so the sandbox can POST card callbacks to it."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with app.app_context():
        cards.register_callback(f"http://127.0.0.1:{port}/bot/card/callback")
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def _tracks(app, approval_id: int) -> list[str]:
    """The out_track_ids of an approval's cards, in approver order."""
    with app.app_context():
        found = session().scalars(
            sa.select(BotCard.out_track_id).where(BotCard.out_track_id.like(f"bot-approval:{approval_id}:%"))
        )
        return sorted(found, key=lambda track: int(track.split(":")[2]))


def _click(sandbox, track: str, userid: str, action: str) -> dict:
    reply = sandbox.admin("POST", f"cards/{track}/click", json={"userid": userid, "action_id": action})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_card_fallback_agreed_by_a_click_double_tap_and_replay_call_back_once(app, client, sandbox, userids, served):
    approver = userids[3]
    approval_id = _request(app, userids, approvers=[approver], process_code=None)
    row = _row(app, approval_id)
    assert (row.channel, row.state) == ("card", "started")
    deliver_all(app)
    [track] = _tracks(app, approval_id)
    [message] = [m for m in sandbox_messages(sandbox, kind="card") if m["card"]["outTrackId"] == track]
    params = message["card"]["cardData"]["cardParamMap"]
    assert params["title"] == "11月医共体结算单" and "金额：¥128,000" in params["summary"]

    first = _click(sandbox, track, approver, "approval.agree")
    second = _click(sandbox, track, approver, "approval.agree")
    assert "apply_error" not in first and "apply_error" not in second
    assert second["card"]["cardData"]["cardParamMap"]["status"] == "已同意"
    # A replayed callback (the same signed payload again), with the other button this time.
    timestamp = str(int(time.time() * 1000))
    with app.app_context():
        secret = cards.api_secret()
    signature = base64.b64encode(hmac.new(secret.encode(), timestamp.encode(), hashlib.sha256).digest()).decode()
    payload = {
        "outTrackId": track,
        "userId": approver,
        "content": '{"cardPrivateData": {"actionIds": ["approval.refuse"], "params": {}}}',
    }
    headers = {"x-ddpaas-signature-timestamp": timestamp, "x-ddpaas-signature": signature}
    assert client.post("/bot/card/callback", json=payload, headers=headers).status_code == 200
    run_jobs(app)

    assert [(o.approval_id, o.result, o.instance_id) for o in OUTCOMES] == [(approval_id, "agree", None)]
    row = _row(app, approval_id)
    assert (row.state, row.result) == ("approved", "agree")
    assert [(d["userid"], d["result"], d["via"]) for d in row.decisions] == [(approver, "agree", "card")]


def test_cards_to_all_approvers_need_everyone_and_refuse_others(app, sandbox, userids, served):
    a, b = userids[3], userids[4]
    approval_id = _request(app, userids, approvers=[a, b], mode="all", process_code=None)
    deliver_all(app)
    card_a, card_b = _tracks(app, approval_id)
    # Only the approver a card was sent to may decide on it (a forwarded card): refused, the card stays open.
    with app.app_context():
        payload = {
            "outTrackId": card_a,
            "userId": b,
            "content": '{"cardPrivateData": {"actionIds": ["approval.agree"], "params": {}}}',
        }
        from workbench.errors import ApiError

        with pytest.raises(ApiError):
            cards.handle_click(payload)
        assert session().get(BotCard, card_a).acted_by is None
    _click(sandbox, card_a, a, "approval.agree")
    run_jobs(app)
    assert _row(app, approval_id).state == "started" and OUTCOMES == []
    _click(sandbox, card_b, b, "approval.agree")
    run_jobs(app)
    assert [(o.approval_id, o.result) for o in OUTCOMES] == [(approval_id, "agree")]


def test_cards_in_sequence_go_to_the_next_approver_after_an_agreement(app, sandbox, userids, served):
    a, b = userids[3], userids[4]
    approval_id = _request(app, userids, approvers=[a, b], mode="sequence", process_code=None)
    deliver_all(app)
    [first] = _tracks(app, approval_id)
    assert first in {m["card"]["outTrackId"] for m in sandbox_messages(sandbox, userid=a, kind="card")}
    _click(sandbox, first, a, "approval.agree")
    deliver_all(app)
    [_, second] = _tracks(app, approval_id)
    assert second in {m["card"]["outTrackId"] for m in sandbox_messages(sandbox, userid=b, kind="card")}
    _click(sandbox, second, b, "approval.refuse")
    run_jobs(app)
    assert [(o.approval_id, o.result) for o in OUTCOMES] == [(approval_id, "refuse")]


def test_in_any_mode_the_first_decision_closes_the_other_cards(app, sandbox, userids, served):
    a, b = userids[3], userids[4]
    approval_id = _request(app, userids, approvers=[a, b], mode="any", process_code=None)
    deliver_all(app)
    card_a, card_b = _tracks(app, approval_id)
    _click(sandbox, card_a, a, "approval.agree")
    run_jobs(app)  # the callback, and the other card closed in place
    [message] = [m for m in sandbox_messages(sandbox, userid=b, kind="card") if m["card"]["outTrackId"] == card_b]
    assert message["card"]["cardData"]["cardParamMap"]["status"] == "审批已结束（已同意）"
    late = _click(sandbox, card_b, b, "approval.refuse")
    assert late["card"]["cardData"]["cardParamMap"]["status"] == "审批已结束（已同意）"
    run_jobs(app)
    assert [(o.approval_id, o.result) for o in OUTCOMES] == [(approval_id, "agree")]
    assert [d["userid"] for d in _row(app, approval_id).decisions] == [a]


def test_cards_only_asks_by_card_even_with_a_configured_template(app, userids, monkeypatch):
    """Forms whose lines vary (a manual indicator report) cannot fit an OA template's labels."""
    monkeypatch.setattr(approvals, "configured_process_code", lambda: "PROC-SETTLEMENT-01")
    with app.app_context():
        configured = approvals.request_approval(
            key="configured",
            title="t",
            originator_userid=userids[0],
            approvers=[userids[1]],
            form=FORM,
            callback=CALLBACK,
        )
        cards = approvals.request_approval(
            key="cards",
            title="t",
            originator_userid=userids[0],
            approvers=[userids[1]],
            form=FORM,
            callback=CALLBACK,
            cards_only=True,
        )
        assert (configured.channel, configured.process_code) == ("workflow", "PROC-SETTLEMENT-01")
        assert (cards.channel, cards.process_code) == ("card", None)
        session().rollback()


def test_a_long_form_fits_the_cards_summary_parameter():
    """DingTalk takes at most 1,024 bytes in one card parameter: a longer form shows what fits and how much is left."""
    short = [("机构", "城关卫生院"), ("金额", "1,234.00 元")]
    assert approvals.card_summary(short) == "机构：城关卫生院\n金额：1,234.00 元"
    long = [(f"第{i}家卫生院", f"{i * 1000:,}.00 元") for i in range(60)]
    summary = approvals.card_summary(long)
    assert len(summary.encode()) <= approvals.SUMMARY_BYTES
    shown = summary.split("\n")
    assert shown[0] == "第0家卫生院：0.00 元" and shown[-1] == f"……其余 {60 - (len(shown) - 1)} 项见工作台"
    assert approvals.card_summary([("说明", "很长" * 400)]) == "共 1 项，详见工作台"
