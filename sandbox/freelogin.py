"""Free-login (§7): single-use 5-minute codes for `getuserinfo`, and the browser OAuth2 route.

Real codes come from `dd.requestAuthCode` inside the DingTalk client or from the OAuth2 login page; here
`POST /_sandbox/auth-code` mints them for a chosen person, so a demo or a test can "log in" as anyone.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.errors import AdminError, ApiError, OapiError, json_response, oapi_ok
from sandbox.inputs import admin_body, admin_str, api_body, oapi_body
from sandbox.keys import state_of

routes = web.RouteTableDef()

CODE_TTL = 300.0
USER_TOKEN_TTL = 7200
REFRESH_TTL = 30 * 86400.0


@dataclass(slots=True)
class AuthCode:
    userid: str
    kind: str  # "h5" for getuserinfo, "oauth" for userAccessToken
    expires: float


@dataclass(slots=True)
class UserToken:
    userid: str
    expires: float


class AuthStore:
    """Outstanding codes and user tokens (monotonic expiry)."""

    def __init__(self) -> None:
        self.codes: dict[str, AuthCode] = {}
        self.user_tokens: dict[str, UserToken] = {}
        self.refresh_tokens: dict[str, UserToken] = {}

    def mint(self, userid: str, kind: str, ttl: float = CODE_TTL) -> str:
        code = secrets.token_hex(16)
        self.codes[code] = AuthCode(userid, kind, time.monotonic() + ttl)
        return code

    def redeem(self, code: Any, kind: str) -> str | None:
        """Consume a code: returns its userid, or None when unknown, reused, expired or of the other kind."""
        if not isinstance(code, str):
            return None
        entry = self.codes.get(code)
        if entry is None or entry.kind != kind:
            return None
        del self.codes[code]
        return entry.userid if entry.expires > time.monotonic() else None

    def issue_user_token(self, userid: str) -> dict[str, Any]:
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        now = time.monotonic()
        self.user_tokens[access] = UserToken(userid, now + USER_TOKEN_TTL)
        self.refresh_tokens[refresh] = UserToken(userid, now + REFRESH_TTL)
        return {"accessToken": access, "refreshToken": refresh, "expireIn": USER_TOKEN_TTL}

    def user_of(self, token: str | None) -> str | None:
        entry = self.user_tokens.get(token or "")
        return entry.userid if entry and entry.expires > time.monotonic() else None


@routes.post("/_sandbox/auth-code")
async def mint_code(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await admin_body(request)
    userid = admin_str(body, "userid")
    kind = admin_str(body, "kind", required=False, default="h5")
    if kind not in ("h5", "oauth"):
        raise AdminError("kind 只能是 h5 或 oauth", field="kind")
    # A shorter life lets a test see an expired code without waiting five minutes.
    ttl = body.get("expires_in", CODE_TTL)
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 <= ttl <= CODE_TTL:
        raise AdminError(f"expires_in 须在 0 到 {int(CODE_TTL)} 秒之间", field="expires_in")
    with state.lock:
        if userid not in state.province.users:
            raise AdminError("用户不存在", field="userid", code="not_found", status=404)
    return json_response({"code": state.auth.mint(userid, kind, ttl), "kind": kind, "expires_in": ttl})


@routes.post("/topapi/v2/user/getuserinfo")
async def getuserinfo(request: web.Request) -> web.Response:
    state = state_of(request)
    userid = state.auth.redeem((await oapi_body(request)).get("code"), "h5")
    with state.lock:
        user = state.province.users.get(userid) if userid else None
    if user is None:
        raise OapiError(40078, "不存在的临时授权码")
    sys_level = 1 if user.admin else 100 if user.boss else 0
    result = {
        "userid": user.userid,
        "unionid": user.unionid,
        "name": user.name,
        "device_id": secrets.token_hex(16),
        "sys": bool(user.admin),
        "sys_level": sys_level,
        "associated_unionid": "",
    }
    return oapi_ok(result=result)


@routes.post("/v1.0/oauth2/userAccessToken")
async def user_access_token(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await api_body(request)
    if body.get("clientId") != state.settings.app_key or body.get("clientSecret") != state.settings.app_secret:
        raise ApiError(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
    grant = body.get("grantType", "authorization_code")
    if grant == "authorization_code":
        userid = state.auth.redeem(body.get("code"), "oauth")
        if userid is None:
            raise ApiError(400, "invalidParameter.authCode", "不存在的临时授权码")
    elif grant == "refresh_token":
        entry = state.auth.refresh_tokens.pop(str(body.get("refreshToken") or ""), None)
        if entry is None or entry.expires <= time.monotonic():
            raise ApiError(400, "invalidParameter.refreshToken", "refreshToken无效或已过期")
        userid = entry.userid
    else:
        raise ApiError(400, "invalidParameter.grantType", "grantType只能是authorization_code或refresh_token")
    return json_response({**state.auth.issue_user_token(userid), "corpId": state.settings.corp_id})


@routes.get("/v1.0/contact/users/{union_id}")
async def users_me(request: web.Request) -> web.Response:
    """The user-token profile (§7). Only `me` or the caller's own unionId is visible to a user token."""
    state = state_of(request)
    userid = state.auth.user_of(request.headers.get("x-acs-dingtalk-access-token"))
    if userid is None:
        if not request.headers.get("x-acs-dingtalk-access-token"):
            raise ApiError(400, "AuthenticationFailed.MissingParameter", "缺少参数：x-acs-dingtalk-access-token")
        raise ApiError(400, "InvalidAuthentication", "不合法的access_token")
    with state.lock:
        user = state.province.users.get(userid)
        wanted = request.match_info["union_id"]
        if user is None or wanted not in ("me", user.unionid):
            raise ApiError(404, "invalidParameter.user.notFound", "用户不存在")
        profile = {
            "nick": user.name,
            "avatarUrl": "",
            "mobile": user.mobile,
            "stateCode": "86",
            "openId": "open" + user.unionid,
            "unionId": user.unionid,
            "email": user.email,
        }
    return json_response(profile)
