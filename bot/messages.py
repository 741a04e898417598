"""Message templates: what people read, rendered by plain functions into one channel-neutral shape.

A message is a dict `{"msgtype": "markdown"|"text", "title", "text", "at_mobiles", "at_userids", "at_all"}`; the
channels turn it into each API's body (`to_webhook`, `to_robot`, `to_work_notice`). @mentions only ping in a
markdown message when `@<mobile>`/`@<userid>` also appears in the text (peers.md §A2), so the templates put it there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

LEVELS = {"critical": "🔴 严重", "warning": "🟠 警告", "info": "🔵 提示", "resolved": "🟢 已恢复"}
MAX_MENTIONS = 50  # DingTalk: at most 50 @ per message


def markdown(
    title: str,
    text: str,
    *,
    at_mobiles: Sequence[str] = (),
    at_userids: Sequence[str] = (),
    at_all: bool = False,
) -> dict:
    """A markdown message; mentions are appended to the text so that they actually ping."""
    mentions = " ".join([f"@{m}" for m in at_mobiles] + [f"@{u}" for u in at_userids])
    body = f"{text}\n\n{mentions}" if mentions else text
    return {
        "msgtype": "markdown",
        "title": title,
        "text": body,
        "at_mobiles": list(at_mobiles)[:MAX_MENTIONS],
        "at_userids": list(at_userids)[:MAX_MENTIONS],
        "at_all": at_all,
    }


def text(content: str) -> dict:
    return {"msgtype": "text", "title": content[:20], "text": content, "at_mobiles": [], "at_userids": []}


def alert(
    *,
    level: str,
    indicator: str,
    org_name: str,
    summary: str,
    link: str | None = None,
    at_mobiles: Sequence[str] = (),
    at_userids: Sequence[str] = (),
) -> dict:
    """An indicator alert for a unit's group chat (监管在线)."""
    badge = LEVELS.get(level, level)
    lines = [f"### {badge} {indicator}", f"**单位**：{org_name}", "", summary]
    if link:
        lines += ["", f"[查看详情]({link})"]
    return markdown(f"{badge} {indicator}", "\n".join(lines), at_mobiles=at_mobiles, at_userids=at_userids)


def notice(*, title: str, lines: Sequence[str], link: str | None = None, link_text: str = "打开工作台") -> dict:
    """A notice to people (referral appointment, follow-up reminder, settlement result)."""
    body = [f"### {title}", *[f"- {line}" for line in lines]]
    if link:
        body += ["", f"[{link_text}]({link})"]
    return markdown(title, "\n".join(body))


def digest(messages: Sequence[dict]) -> dict:
    """Several alerts for one group folded into one message, so a storm costs one send instead of many."""
    if len(messages) == 1:
        return messages[0]
    parts = [f"#### 共 {len(messages)} 条消息汇总"]
    for msg in messages:
        parts += ["", "---", "", msg["text"]]
    mobiles = list(dict.fromkeys(m for msg in messages for m in msg.get("at_mobiles", [])))
    userids = list(dict.fromkeys(u for msg in messages for u in msg.get("at_userids", [])))
    return {
        "msgtype": "markdown",
        "title": f"{messages[0]['title']} 等 {len(messages)} 条",
        "text": "\n".join(parts),
        "at_mobiles": mobiles[:MAX_MENTIONS],
        "at_userids": userids[:MAX_MENTIONS],
        "at_all": any(msg.get("at_all") for msg in messages),
    }


def content_digest(message: dict) -> str:
    """A stable fingerprint of what a message says (not whom it goes to): the once-a-day dedupe key."""
    canonical = json.dumps(
        {k: message.get(k) for k in ("msgtype", "title", "text")}, ensure_ascii=False, sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def size(message: dict) -> int:
    return len(message["text"].encode())


# -- channel bodies --------------------------------------------------------------------------------------------


def to_webhook(message: dict, msg_uuid: str) -> dict:
    """Body of a custom-robot webhook post (§4.1); `msgUuid` lets DingTalk drop a repeated post."""
    at = {"atMobiles": message.get("at_mobiles", []), "atUserIds": message.get("at_userids", [])}
    at["isAtAll"] = bool(message.get("at_all"))
    if message["msgtype"] == "text":
        return {"msgtype": "text", "text": {"content": message["text"]}, "at": at, "msgUuid": msg_uuid}
    return {
        "msgtype": "markdown",
        "markdown": {"title": message["title"], "text": message["text"]},
        "at": at,
        "msgUuid": msg_uuid,
    }


def to_robot(message: dict) -> tuple[str, str]:
    """`(msgKey, msgParam)` of an enterprise robot message (§4.2)."""
    if message["msgtype"] == "text":
        return "sampleText", json.dumps({"content": message["text"]}, ensure_ascii=False)
    return "sampleMarkdown", json.dumps({"title": message["title"], "text": message["text"]}, ensure_ascii=False)


def to_work_notice(message: dict) -> dict:
    """`msg` of a work notification (§4.3)."""
    if message["msgtype"] == "text":
        return {"msgtype": "text", "text": {"content": message["text"]}}
    return {"msgtype": "markdown", "markdown": {"title": message["title"], "text": message["text"]}}
