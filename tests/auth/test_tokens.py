"""Access tokens: tampered, expired, wrong audience or issuer, unknown key, `alg: none` — all 401; key rotation."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest

from config import load_settings
from workbench.auth.tokens import decode_access_token, issue_access_token
from workbench.db import utcnow
from workbench.errors import ApiError

OLD = "k2025:" + "o" * 40
NEW = "k2026:" + "n" * 40


def settings(**env: str):
    return load_settings({"WORKBENCH_VAR_DIR": "/tmp/unused", **env}, read_dotenv=False)


def claims(s, **over) -> dict:
    now = utcnow()
    base = {
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "sub": "7",
        "corp": "c",
        "uid": "u",
        "iat": now,
        "exp": now + timedelta(minutes=15),
    }
    return base | over


def signed(s, kid: str | None = None, secret: str | None = None, **over) -> str:
    key_id, key = s.jwt_keys[0]
    return jwt.encode(claims(s, **over), secret or key, algorithm="HS256", headers={"kid": kid or key_id})


def rejected(s, token: str) -> str:
    with pytest.raises(ApiError) as caught:
        decode_access_token(s, token)
    assert caught.value.status == 401
    return caught.value.code


def test_a_token_round_trips_with_its_key_id():
    s = settings()
    token = issue_access_token(s, member_id=7, corp_id="c", userid="u")
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    decoded = decode_access_token(s, token)
    assert (decoded.member_id, decoded.corp_id, decoded.userid) == (7, "c", "u")
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["exp"] - payload["iat"] == 900 and payload["jti"]


def test_tampered_expired_and_foreign_tokens_are_refused():
    s = settings()
    token = issue_access_token(s, member_id=7, corp_id="c", userid="u")
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["sub"] = "8"  # become someone else
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert rejected(s, f"{head}.{forged_body}.{sig}") == "invalid_token"
    assert rejected(s, signed(s, exp=utcnow() - timedelta(minutes=1))) == "token_expired"
    assert rejected(s, signed(s, aud="another-app")) == "invalid_token"
    assert rejected(s, signed(s, iss="someone-else")) == "invalid_token"
    assert rejected(s, signed(s, secret="x" * 40)) == "invalid_token"  # right kid, wrong key
    assert rejected(s, signed(s, kid="nope")) == "invalid_token"
    unsigned = jwt.encode(claims(s), None, algorithm="none", headers={"kid": "k1"})
    assert rejected(s, unsigned) == "invalid_token"
    assert rejected(s, "not-a-jwt") == "invalid_token"
    assert rejected(s, signed(s, sub="seven")) == "invalid_token"


def test_keys_rotate_old_tokens_verify_until_the_old_key_is_dropped():
    before = settings(JWT_KEYS=OLD)
    old_token = issue_access_token(before, member_id=1, corp_id="c", userid="u")
    during = settings(JWT_KEYS=f"{NEW},{OLD}")
    assert decode_access_token(during, old_token).member_id == 1
    new_token = issue_access_token(during, member_id=2, corp_id="c", userid="v")
    assert jwt.get_unverified_header(new_token)["kid"] == "k2026"
    after = settings(JWT_KEYS=NEW)
    assert decode_access_token(after, new_token).member_id == 2
    assert rejected(after, old_token) == "invalid_token"


def test_requests_with_bad_tokens_get_401_json(tree_client):
    for header in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer x.y.z"}):
        reply = tree_client.get("/api/me", headers=header)
        assert reply.status_code == 401
        assert reply.get_json()["error"]["code"] in {"unauthorized", "invalid_token"}
