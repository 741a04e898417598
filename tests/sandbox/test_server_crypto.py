"""HTTP-push crypto of the sandbox against the four official vectors (reference §3.3), and push end to end."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from sandbox import crypto

if TYPE_CHECKING:
    from tests.sandbox.conftest import Api, Receiver

VECTORS = [
    pytest.param(
        "123456",
        "1234567890123456789012345678901234567890123",
        "dingsnotzck6pm5veliw",
        "1614767836",
        "A7Co0cJLMzIDtMMI",
        "9a95a004dd16f5c307e849b994173f76aa26e5eb",
        "YvkvaGe4hQxd3VxRmEty0dVlnCOAqwf56xwTRHDHoOURqhalbmBJQk5FNcRk42Gl5T0YQXZNwpwWSm1xAFJ5ZA==",
        "success",
        "dICkEDLj0eb6yAbc",
        id="V1-official-doc",
    ),
    pytest.param(
        "mryue",
        "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7",
        "ding6ccabc44d2c8d38b",
        "1608001896814",
        "WL4PK6yA",
        "03044561471240d4a14bb09372dfcfd4fd0e40cb",
        "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFch"
        "zNukR+t8SB/qk4ROMu3",
        '{"EventType":"check_url"}',
        "l7Y3EcX2CU5w8av3",
        id="V2-python",
    ),
    pytest.param(
        "tokenxxxx",
        "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus",
        "dingxxxxxx",
        "1605695694141",
        "WelUQl6bCqcBa2fM",
        "f36f4ba5337d426c7d4bca0dbcb06b3ddc1388fc",
        "X1VSe9cTJUMZu60d3kyLYTrBq5578ZRJtteU94wG0Q4Uk6E/wQYeJRIC0/UFW5Wkya1Ihz9oXAdLlyC9TRaqsQ==",
        "success",
        "WelUQl6bCqcBa2fM",
        id="V3-go-csharp",
    ),
    pytest.param(
        "123456",
        "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij",
        "suite4xxxxxxxxxxxxxxx",
        "1445827045067",
        "nEXhMP4r",
        "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0",
        "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9Vr"
        "YeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ==",
        '{"EventType":"check_create_suite_url","Random":"LPIdSnlF","TestSuiteKey":"suite4xxxxxxxxxxxxxxx"}',
        "hU3bEfGZZewzhG5a",
        id="V4-rust-isv",
    ),
]


@pytest.mark.parametrize(("token", "aes_key", "owner", "ts", "nonce", "sig", "enc", "plain", "rnd"), VECTORS)
def test_official_vectors(token, aes_key, owner, ts, nonce, sig, enc, plain, rnd) -> None:
    assert crypto.signature(token, ts, nonce, enc) == sig
    assert crypto.decrypt(aes_key, enc, owner) == plain
    assert crypto.encrypt(aes_key, plain, owner, rnd) == enc


def test_decrypt_rejects_wrong_owner_key_and_garbage() -> None:
    aes_key = "1234567890123456789012345678901234567890123"
    enc = crypto.encrypt(aes_key, "hello", "dingowner")
    assert crypto.decrypt(aes_key, enc, "dingowner") == "hello"
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(aes_key, enc, "dingother")
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt(aes_key, "not base64!", "dingowner")


def test_check_url_accepts_an_encrypted_success(sb: Api, fresh_receiver: Receiver) -> None:
    report = sb.admin("POST", "check-url").json()
    assert report["ok"] and report["valid_reply"] and report["within_1500ms"], report
    assert fresh_receiver.wait_events(lambda e: e == {"EventType": "check_url"})


@pytest.mark.parametrize("mode", ["plain", "badsig"])
def test_check_url_rejects_replies_dingtalk_would_reject(sb: Api, fresh_receiver: Receiver, mode: str) -> None:
    fresh_receiver.mode = mode
    report = sb.admin("POST", "check-url").json()
    assert not report["ok"] and not report["valid_reply"], report


def test_event_push_end_to_end(sb: Api, fresh_receiver: Receiver) -> None:
    """An arbitrary event arrives flat, decrypted with the app key as owner key, and is recorded as delivered."""
    data = {"timeStamp": "1700000000000", "userId": ["someone"]}
    delivery = sb.admin("POST", "events", {"event_type": "user_add_org", "data": data}).json()["delivery"]
    assert delivery["outcome"] == "delivered", delivery
    assert delivery["attempts"][0]["channel"] == "http"
    (event,) = fresh_receiver.wait_events(lambda e: e.get("eventId") == delivery["event_id"])
    assert event["EventType"] == "user_add_org" and event["userId"] == ["someone"]
    assert event["CorpId"] == sb.corp_id and event["timeStamp"] == "1700000000000" and event["EventTime"]
    # (the receiver decrypted it with the app key as owner key: a wrong owner key would have failed there)


def test_failed_delivery_is_retried_and_recorded(sb: Api, fresh_receiver: Receiver) -> None:
    fresh_receiver.mode = "plain"
    delivery = sb.admin("POST", "events", {"event_type": "org_dept_create", "data": {"deptId": [1]}}).json()
    delivery = delivery["delivery"]
    assert delivery["outcome"] == "retrying"
    assert "失败" in delivery["attempts"][0]["detail"] or "JSON" in delivery["attempts"][0]["detail"]
    fresh_receiver.mode = "ok"  # the first retry (0.3 s in these tests; 10 s at DingTalk) now succeeds
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = sb.admin("GET", "deliveries", params={"event_type": "org_dept_create"}).json()["deliveries"]
        mine = next(d for d in found if d["event_id"] == delivery["event_id"])
        if mine["outcome"] == "delivered":
            break
        time.sleep(0.1)
    assert mine["outcome"] == "delivered" and len(mine["attempts"]) == 2, mine


def test_admin_input_is_validated(sb: Api) -> None:
    resp = sb.admin("POST", "events", {"data": {}})
    assert resp.status_code == 400
    assert resp.json()["error"]["field"] == "event_type"
    resp = sb.session.post(f"{sb.url}/_sandbox/changes", data="{not json", timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
