"""App tokens on both families: reuse within validity, bad credentials, expiry, revocation, the real SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests

from tests.support.sandbox import SandboxProcess

if TYPE_CHECKING:
    from tests.sandbox.conftest import Api


def _oapi_token(url: str, key: str, secret: str) -> dict:
    return requests.get(f"{url}/gettoken", params={"appkey": key, "appsecret": secret}, timeout=10).json()


def _api_token(url: str, key: str, secret: str) -> requests.Response:
    return requests.post(f"{url}/v1.0/oauth2/accessToken", json={"appKey": key, "appSecret": secret}, timeout=10)


def _user_get(url: str, token: str) -> dict:
    return requests.post(
        f"{url}/topapi/v2/user/get", params={"access_token": token}, json={"userid": "nobody"}, timeout=10
    ).json()


def _batch_send(url: str, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{url}/v1.0/robot/oToMessages/batchSend", json={}, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def short_lived() -> Iterator[SandboxProcess]:
    with SandboxProcess("--scale", "small", "--token-ttl", "1", "--qps", "1000") as process:
        yield process


def test_same_token_within_validity_on_both_families(sb: Api) -> None:
    first = _oapi_token(sb.url, sb.app_key, sb.app_secret)
    assert first["errcode"] == 0 and first["expires_in"] == 7200
    second = _api_token(sb.url, sb.app_key, sb.app_secret).json()
    assert second == {"accessToken": first["access_token"], "expireIn": 7200}


def test_bad_credentials(sb: Api) -> None:
    assert _oapi_token(sb.url, sb.app_key, "wrong")["errcode"] == 40096
    assert requests.get(f"{sb.url}/gettoken", timeout=10).json()["errcode"] == 40035
    resp = _api_token(sb.url, sb.app_key, "wrong")
    assert resp.status_code == 400 and resp.json()["code"] == "invalidClientIdOrSecret"
    assert resp.json()["requestid"]


def test_unknown_blank_and_missing_tokens(sb: Api) -> None:
    unknown = _user_get(sb.url, "not-a-token")
    assert unknown["errcode"] == 88 and unknown["sub_code"] == "40014"
    blank = _user_get(sb.url, "")
    assert blank["errcode"] == 88 and blank["sub_code"] == "40000"
    resp = _batch_send(sb.url, {})
    assert resp.status_code == 400 and resp.json()["code"] == "AuthenticationFailed.MissingParameter"
    resp = _batch_send(sb.url, {"x-acs-dingtalk-access-token": "not-a-token"})
    assert resp.status_code == 400 and resp.json()["code"] == "InvalidAuthentication"


def test_expiry_with_short_ttl(short_lived: SandboxProcess) -> None:
    url = short_lived.url
    token = _oapi_token(url, "dingsandboxappkey001", "sandbox-app-secret-not-for-production")["access_token"]
    assert _user_get(url, token)["errcode"] == 60121  # valid: reaches the handler
    time.sleep(1.2)
    assert _user_get(url, token)["errcode"] == 42001
    resp = _batch_send(url, {"x-acs-dingtalk-access-token": token})
    assert resp.status_code == 400 and resp.json()["code"] == "InvalidAuthentication"
    fresh = _oapi_token(url, "dingsandboxappkey001", "sandbox-app-secret-not-for-production")["access_token"]
    assert fresh != token and _user_get(url, fresh)["errcode"] == 60121


def test_revoke_forces_a_refresh(short_lived: SandboxProcess) -> None:
    url = short_lived.url
    token = _oapi_token(url, "dingsandboxappkey001", "sandbox-app-secret-not-for-production")["access_token"]
    assert requests.post(f"{url}/_sandbox/tokens/revoke", timeout=10).json()["revoked"] >= 1
    assert _user_get(url, token)["errcode"] == 42001
    fresh = _oapi_token(url, "dingsandboxappkey001", "sandbox-app-secret-not-for-production")["access_token"]
    assert fresh != token


def test_real_sdk_gets_a_token(sb: Api) -> None:
    from alibabacloud_dingtalk.oauth2_1_0 import models as oauth_models
    from alibabacloud_dingtalk.oauth2_1_0.client import Client as OAuthClient
    from alibabacloud_tea_openapi import models as open_api_models
    from Tea.exceptions import TeaException

    config = open_api_models.Config(protocol="http", region_id="central", endpoint=sb.url.removeprefix("http://"))
    client = OAuthClient(config)
    resp = client.get_access_token(oauth_models.GetAccessTokenRequest(app_key=sb.app_key, app_secret=sb.app_secret))
    assert resp.body.access_token == sb.token and resp.body.expire_in == 7200
    with pytest.raises(TeaException) as err:
        client.get_access_token(oauth_models.GetAccessTokenRequest(app_key=sb.app_key, app_secret="wrong"))
    assert err.value.code == "invalidClientIdOrSecret"
