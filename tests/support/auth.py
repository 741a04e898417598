"""Signing in as a member of the sandbox's province, the way the H5 shell does: a JSAPI code, then free-login."""

from __future__ import annotations

from typing import Any

from tests.org_sync.test_apply import DictSource, seed_from_truth


def seed_tree(app, sandbox) -> dict[str, Any]:
    """The session sandbox's tree applied to the app; returns the truth it was built from."""
    truth = sandbox.admin("GET", "truth").json()
    seed_from_truth(app, DictSource(truth["departments"], truth["users"]))
    return truth


def auth_code(sandbox, userid: str, kind: str = "h5") -> str:
    reply = sandbox.admin("POST", "auth-code", json={"userid": userid, "kind": kind})
    reply.raise_for_status()
    return reply.json()["code"]


def sign_in(client, sandbox, userid: str) -> dict[str, Any]:
    """Free-login as `userid`; returns the token response."""
    reply = client.post("/api/auth/dingtalk", json={"code": auth_code(sandbox, userid)})
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()


def bearer(tokens: dict[str, Any] | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}
