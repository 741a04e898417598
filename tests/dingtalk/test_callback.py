"""`POST /dingtalk/callback`: signed, encrypted events in; encrypted `success` out; tampering leaves no trace."""

import json
import time

import pytest
import sqlalchemy as sa

from config.settings import SANDBOX_CREDENTIALS
from tests.conftest import run_jobs
from workbench.dingtalk.crypto import CallbackCrypto
from workbench.dingtalk.events import DingTalkEvent

CRYPTO = CallbackCrypto(
    SANDBOX_CREDENTIALS["DINGTALK_CALLBACK_TOKEN"],
    SANDBOX_CREDENTIALS["DINGTALK_CALLBACK_AES_KEY"],
    SANDBOX_CREDENTIALS["DINGTALK_APP_KEY"],
)


def push(client, payload: dict | str, *, crypto=CRYPTO, timestamp=None, tamper=None):
    """Send `payload` as DingTalk's HTTP push does."""
    timestamp = timestamp or str(int(time.time() * 1000))
    nonce = "n0nce123"
    plaintext = payload if isinstance(payload, str) else json.dumps(payload)
    encrypted = crypto.encrypt(plaintext)
    signature = crypto.signature(timestamp, nonce, encrypted)
    if tamper == "signature":
        signature = "0" * 40
    if tamper == "body":
        encrypted = encrypted[:10] + ("A" if encrypted[10] != "A" else "B") + encrypted[11:]
    query = {"signature": signature, "timestamp": timestamp, "nonce": nonce}
    return client.post("/dingtalk/callback", query_string=query, json={"encrypt": encrypted})


def assert_encrypted_success(response):
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    CRYPTO.verify(body["msg_signature"], body["timeStamp"], body["nonce"], body["encrypt"])
    assert CRYPTO.decrypt(body["encrypt"]) == "success"


def event_rows(app):
    with app.app_context():
        return app.extensions["workbench.db"].session().scalars(sa.select(DingTalkEvent)).all()


def user_added(event_id="evt-1", users=("u1",)):
    return {
        "EventType": "user_add_org",
        "EventTime": int(time.time() * 1000),
        "CorpId": "dingsandboxcorp00001",
        "eventId": event_id,
        "timeStamp": str(int(time.time() * 1000)),
        "userId": list(users),
    }


def test_check_url_is_answered_with_encrypted_success_and_not_recorded(app, client):
    assert_encrypted_success(push(client, {"EventType": "check_url"}))
    assert event_rows(app) == []


def test_event_is_recorded_once_and_handled_as_a_job(app, client):
    seen = []
    app.extensions["workbench.events"].on("user_add_org")(lambda event: seen.append(event))

    assert_encrypted_success(push(client, user_added()))
    assert_encrypted_success(push(client, user_added()))  # DingTalk redelivers: same event id
    run_jobs(app)

    [row] = event_rows(app)
    assert (row.event_type, row.state, row.attempts, row.channel) == ("user_add_org", "handled", 1, "http")
    assert [e.data["userId"] for e in seen] == [["u1"]]
    assert seen[0].corp_id == "dingsandboxcorp00001"


def test_legacy_casing_is_normalised_and_deduplicated_by_content(app, client):
    seen = []
    app.extensions["workbench.events"].on("org_dept_create")(lambda event: seen.append(dict(event.data)))
    legacy = json.dumps({"EventType": "org_dept_create", "CorpId": "c", "TimeStamp": "1700000000000", "DeptId": [5]})
    push(client, legacy)
    push(client, legacy)
    run_jobs(app)
    assert seen == [{"timeStamp": "1700000000000", "deptId": [5]}]
    assert len(event_rows(app)) == 1


def test_event_without_handler_is_kept_as_ignored(app, client):
    push(client, {"EventType": "label_conf_add", "eventId": "evt-label"})
    run_jobs(app)
    [row] = event_rows(app)
    assert row.state == "ignored"


def test_failing_handler_leaves_the_event_failed_and_retryable(app, client):
    calls = []

    def flaky(event):
        calls.append(event.event_id)
        if len(calls) == 1:
            raise RuntimeError("org tree busy")

    app.extensions["workbench.events"].on("user_leave_org")(flaky)
    app.extensions["workbench.queue"].retry_intervals = [0, 0, 0]
    push(client, {**user_added("evt-2"), "EventType": "user_leave_org"})
    run_jobs(app)  # the first attempt fails, the queue's retry succeeds
    [row] = event_rows(app)
    assert row.state == "handled"
    assert row.last_error is None
    assert row.attempts == 2
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("bad_signature", 401, "bad_signature"),
        ("tampered_body", 401, "bad_signature"),
        ("wrong_owner_key", 401, "undecryptable"),
        ("wrong_aes_key", 401, "undecryptable"),
        ("stale_timestamp", 400, "stale_timestamp"),
        ("not_json", 400, "bad_payload"),
        ("no_event_type", 400, "bad_payload"),
    ],
)
def test_untrustworthy_callbacks_are_rejected_without_side_effects(app, client, case, status, code):
    calls = []
    app.extensions["workbench.events"].on("user_add_org")(lambda event: calls.append(event))
    other_owner = CallbackCrypto(CRYPTO.token, SANDBOX_CREDENTIALS["DINGTALK_CALLBACK_AES_KEY"], "dingintruder")
    other_key = CallbackCrypto(CRYPTO.token, "A" * 43, SANDBOX_CREDENTIALS["DINGTALK_APP_KEY"])
    kwargs = {
        "bad_signature": {"tamper": "signature"},
        "tampered_body": {"tamper": "body"},
        "wrong_owner_key": {"crypto": other_owner},
        "wrong_aes_key": {"crypto": other_key},
        "stale_timestamp": {"timestamp": str(int(time.time()) - 3600)},
    }.get(case, {})
    payload = {"not_json": "user_add_org u1", "no_event_type": {"userId": ["u1"]}}.get(case, user_added())
    if case == "wrong_aes_key":  # signed correctly with the shared token, encrypted under another key
        timestamp, nonce = str(int(time.time())), "abc"
        encrypted = other_key.encrypt(json.dumps(payload))
        response = client.post(
            "/dingtalk/callback",
            query_string={
                "signature": CRYPTO.signature(timestamp, nonce, encrypted),
                "timestamp": timestamp,
                "nonce": nonce,
            },
            json={"encrypt": encrypted},
        )
    else:
        response = push(client, payload, **kwargs)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    run_jobs(app)
    assert event_rows(app) == []
    assert calls == []


@pytest.mark.parametrize("missing", ["signature", "timestamp", "nonce"])
def test_missing_query_parameters_are_named(client, missing):
    query = {"signature": "a" * 40, "timestamp": str(int(time.time())), "nonce": "x"}
    del query[missing]
    response = client.post("/dingtalk/callback", query_string=query, json={"encrypt": "abc"})
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == missing


def test_body_without_encrypt_is_named(client):
    query = {"signature": "a" * 40, "timestamp": str(int(time.time())), "nonce": "x"}
    for body in ({}, {"encrypt": 5}, None):
        response = client.post("/dingtalk/callback", query_string=query, json=body)
        assert response.status_code == 400
        assert response.get_json()["error"]["field"] == "encrypt"
