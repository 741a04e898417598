"""Access tokens (short JWTs, HS256 with a key id so keys rotate) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt

from config import Settings
from workbench.db import utcnow
from workbench.errors import ApiError

ALGORITHM = "HS256"


@dataclass(frozen=True)
class AccessClaims:
    member_id: int
    corp_id: str
    userid: str
    expires_at: int


def issue_access_token(settings: Settings, *, member_id: int, corp_id: str, userid: str) -> str:
    kid, secret = settings.jwt_keys[0]
    now = utcnow()
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": str(member_id),
        "corp": corp_id,
        "uid": userid,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(seconds=settings.access_token_seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify signature (by key id), issuer, audience and lifetime; any failure is a 401 naming what failed."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise _invalid("令牌格式错误") from None
    keys = dict(settings.jwt_keys)
    secret = keys.get(str(header.get("kid")))
    if secret is None or header.get("alg") != ALGORITHM:
        raise _invalid("令牌的签名密钥未知")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise ApiError("token_expired", "登录已过期，请用 refresh_token 续期或重新登录", status=401) from None
    except jwt.InvalidAudienceError:
        raise _invalid("令牌的受众 (aud) 不符") from None
    except jwt.InvalidIssuerError:
        raise _invalid("令牌的签发方 (iss) 不符") from None
    except jwt.InvalidTokenError:
        raise _invalid("令牌无效") from None
    try:
        return AccessClaims(int(claims["sub"]), str(claims["corp"]), str(claims["uid"]), int(claims["exp"]))
    except (KeyError, TypeError, ValueError):
        raise _invalid("令牌内容不完整") from None


def _invalid(message: str) -> ApiError:
    return ApiError("invalid_token", message, status=401)


def new_refresh_token() -> tuple[str, str]:
    """A fresh refresh token and the hash that is stored instead of it."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
