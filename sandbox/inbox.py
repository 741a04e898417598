"""The web inbox at `/_sandbox/`: pick a person or a group, read what the workbench sent, click cards, approve.

Server-rendered with Jinja2 (plain HTML and a little vanilla JS, no build step). The people list is a search,
not a dump, because a province-scale sandbox has 300,000 people.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from sandbox.keys import state_of
from sandbox.messages import render_message

routes = web.RouteTableDef()

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)
MAX_SEARCH = 30
MAX_ACTIVE = 50


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2)


def _actions(card: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Buttons from a cardParamMap key `actions` holding `[{"id","text","params"}]`, if it is there and valid."""
    raw = card["cardData"]["cardParamMap"].get("actions")
    try:
        actions = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(actions, list):
        return None
    valid = [a for a in actions if isinstance(a, dict) and isinstance(a.get("id"), str)]
    return [
        {
            "id": a["id"],
            "text": str(a.get("text") or a["id"]),
            "params": json.dumps(a.get("params") or {}, ensure_ascii=False),
        }
        for a in valid
    ] or None


_ENV.filters["pretty"] = _pretty
_ENV.globals["card_actions"] = _actions


def _person(province: Any, user: Any) -> dict[str, Any]:
    depts = [province.departments[d].name for d in user.dept_ids if d in province.departments]
    return {"userid": user.userid, "name": user.name, "title": user.title, "depts": depts}


def _active_people(state: Any) -> list[str]:
    """People something has happened to: message recipients, card targets, approvers, originators."""
    seen: dict[str, None] = {}
    for msg in reversed(state.messages.items):
        if len(msg.userids) <= 100:
            seen.update(dict.fromkeys(msg.userids))
        if len(seen) >= MAX_ACTIVE:
            break
    for inst in state.approvals.instances.values():
        seen.update(dict.fromkeys(t.userid for t in inst.tasks if t.status == "RUNNING"))
    return list(seen)[:MAX_ACTIVE]


@routes.get("/_sandbox")
@routes.get("/_sandbox/")
async def inbox(request: web.Request) -> web.Response:
    state = state_of(request)
    query = request.query
    q = query.get("q", "").strip()
    userid = query.get("userid") or None
    cid = query.get("conversation") or None
    with state.lock:
        province = state.province
        results = []
        if q:
            for user in province.users.values():
                if q in user.name or q == user.userid or q == user.mobile or q in user.title:
                    results.append(_person(province, user))
                    if len(results) >= MAX_SEARCH:
                        break
        active = [_person(province, province.users[u]) for u in _active_people(state) if u in province.users]
        person = _person(province, province.users[userid]) if userid in province.users else None
        group = state.groups.get(cid) if cid else None
        members = (
            [_person(province, province.users[u]) for u in group.members[:50] if u in province.users] if group else []
        )
    msgs: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    if person:
        msgs = [render_message(state, m) for m in state.messages.query(userid=person["userid"])]
        for inst in state.approvals.instances.values():
            if inst.running_task(person["userid"]):
                pending.append(
                    {"id": inst.id, "title": inst.title, "process_code": inst.process_code, "form": inst.form}
                )
    elif group:
        msgs = [render_message(state, m) for m in state.messages.query(conversation=group.open_conversation_id)]
    html = _ENV.get_template("inbox.html").render(
        q=q,
        results=results,
        active=active,
        person=person,
        group=group.view() if group else None,
        members=members,
        groups=[g.view() for g in state.groups.by_cid.values()],
        messages=list(reversed(msgs)),
        pending=pending,
        settings=state.settings,
    )
    return web.Response(text=html, content_type="text/html")
