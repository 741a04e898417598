"""App access tokens for both API families (§1).

DingTalk hands out one token per app at a time: "repeated calls within validity return the same token and renew
it". Expired tokens stay known, so the sandbox can tell "expired" (42001) from "never issued" (88/40014) the
way DingTalk does — clients must handle both by refreshing once and retrying.
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from sandbox.errors import ApiError, OapiError, json_response, oapi_ok
from sandbox.inputs import api_body
from sandbox.keys import state_of

routes = web.RouteTableDef()

VALID, EXPIRED, UNKNOWN, BLANK = "valid", "expired", "unknown", "blank"


class TokenStore:
    """The app's tokens and when each expires (monotonic seconds)."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.current: str | None = None
        self.expiry: dict[str, float] = {}

    def issue(self) -> tuple[str, int]:
        """Return the current token renewed for `ttl` seconds, or a new one if it has expired."""
        now = time.monotonic()
        if self.current is None or self.expiry[self.current] <= now:
            self.current = secrets.token_hex(16)
        self.expiry[self.current] = now + self.ttl
        return self.current, self.ttl

    def check(self, token: str | None) -> str:
        if not token:
            return BLANK
        expires = self.expiry.get(token)
        if expires is None:
            return UNKNOWN
        return VALID if expires > time.monotonic() else EXPIRED

    def revoke(self) -> int:
        """Expire every token now (they stay known, so they answer 'expired'); returns how many were valid."""
        now = time.monotonic()
        valid = sum(1 for t in self.expiry.values() if t > now)
        for token in self.expiry:
            self.expiry[token] = min(self.expiry[token], now - 1)
        self.current = None
        return valid


def raise_oapi_token_error(status: str) -> None:
    """Raise the oapi gateway's answer to a token that is not valid (§8.2)."""
    if status == BLANK:
        raise OapiError(
            88,
            "ding talk error[subcode=40000,submsg=access_token is blank]",
            sub_code="40000",
            sub_msg="access_token is blank",
        )
    if status == EXPIRED:
        raise OapiError(42001, "access_token已过期")
    raise OapiError(
        88,
        "ding talk error[subcode=40014,submsg=不合法的access_token]",
        sub_code="40014",
        sub_msg="不合法的access_token",
    )


def raise_api_token_error(status: str) -> None:
    """Raise the new API's answer to a missing or invalid token (§8.2: HTTP 400, not 401)."""
    if status == BLANK:
        raise ApiError(400, "AuthenticationFailed.MissingParameter", "缺少参数：x-acs-dingtalk-access-token")
    raise ApiError(400, "InvalidAuthentication", "不合法的access_token")


@routes.get("/gettoken")
async def gettoken(request: web.Request) -> web.Response:
    state = state_of(request)
    appkey, appsecret = request.query.get("appkey", ""), request.query.get("appsecret", "")
    if not appkey or not appsecret:
        raise OapiError(40035, "缺少参数 appkey 或 appsecret")
    if appkey != state.settings.app_key or appsecret != state.settings.app_secret:
        raise OapiError(40096, "不合法的appKey或appSecret")
    token, ttl = state.tokens.issue()
    return oapi_ok(access_token=token, expires_in=ttl)


@routes.post("/v1.0/oauth2/accessToken")
async def access_token(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api_body(request)
    if body.get("appKey") != state.settings.app_key or body.get("appSecret") != state.settings.app_secret:
        raise ApiError(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
    token, ttl = state.tokens.issue()
    return json_response({"accessToken": token, "expireIn": ttl})


@routes.post("/v1.0/oauth2/{corp_id}/token")
async def unified_token(request: web.Request) -> web.Response:
    """The unified (internal + ISV) token endpoint; snake_case on purpose, as DingTalk has it."""
    state = state_of(request)
    if request.match_info["corp_id"] != state.settings.corp_id:
        raise ApiError(500, "unknownError", "unknownError")
    body = await api_body(request)
    if body.get("grant_type") != "client_credentials":
        raise ApiError(400, "invalidParameter", "grant_type必须为client_credentials")
    if body.get("client_id") != state.settings.app_key or body.get("client_secret") != state.settings.app_secret:
        raise ApiError(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
    token, ttl = state.tokens.issue()
    return json_response({"access_token": token, "expires_in": ttl})
