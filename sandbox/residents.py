"""Residents' DingTalk accounts (签约居民): people outside the organisation's contacts who can still be put in a
scene group and be messaged by the app's robot — in DingTalk they join through the county's resident directory
(行业通讯录) and the app sees them by userid. `POST /_sandbox/residents` makes one; `known_user` is what every
endpoint that takes userids for groups and messages asks.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from aiohttp import web

from sandbox.errors import json_response
from sandbox.inputs import admin_body, admin_str
from sandbox.keys import state_of

routes = web.RouteTableDef()


class ResidentAccounts:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self._lock = threading.Lock()

    def create(self, name: str, userid: str | None = None) -> str:
        with self._lock:
            userid = userid or "resident" + secrets.token_hex(6)
            self.names[userid] = name
            return userid


def known_user(state: Any, userid: str) -> bool:
    """An org member or a resident account: someone a group or a robot message can reach."""
    return userid in state.province.users or userid in state.residents.names


def display_name(state: Any, userid: str) -> str | None:
    user = state.province.users.get(userid)
    return user.name if user is not None else state.residents.names.get(userid)


@routes.post("/_sandbox/residents")
async def create_resident(request: web.Request) -> web.Response:
    """Make a resident's DingTalk account: `{"name", "userid"?}` → `{"userid", "name"}`."""
    state = state_of(request)
    body = await admin_body(request)
    name = admin_str(body, "name")
    userid = admin_str(body, "userid", required=False)
    return json_response({"userid": state.residents.create(name, userid), "name": name})


@routes.get("/_sandbox/residents")
async def list_residents(request: web.Request) -> web.Response:
    state = state_of(request)
    return json_response({"residents": [{"userid": u, "name": n} for u, n in state.residents.names.items()]})
