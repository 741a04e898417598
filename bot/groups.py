"""Scene groups (场景群, dingtalk.md §4.2): the chats a medical community's alerts and cards go to.

Creation carries a `uuid`, so a retried or repeated create (a job run twice) returns the same group instead of a
second one; members are added in chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workbench.dingtalk import get_gateway

MAX_MEMBERS_AT_CREATE = 999
ADD_CHUNK = 100  # the member/add limit is unpublished; 100 a call stays well inside what DingTalk accepts


@dataclass(frozen=True)
class SceneGroup:
    open_conversation_id: str
    chat_id: str


def create_scene_group(title: str, owner: str, members: Sequence[str], *, template_id: str, uuid: str) -> SceneGroup:
    """Create (or, for a `uuid` seen before, find) a scene group; members past 999 are added afterwards."""
    members = [m for m in dict.fromkeys(members) if m != owner]
    first, rest = members[: MAX_MEMBERS_AT_CREATE - 1], members[MAX_MEMBERS_AT_CREATE - 1 :]
    body = {
        "title": title,
        "template_id": template_id,
        "owner_user_id": owner,
        "user_ids": ",".join(first),
        "uuid": uuid,
    }
    result = get_gateway().oapi("/topapi/im/chat/scenegroup/create", body)["result"]
    group = SceneGroup(result["open_conversation_id"], result["chat_id"])
    if rest:
        add_group_members(group.open_conversation_id, rest)
    return group


def add_group_members(open_conversation_id: str, userids: Sequence[str]) -> int:
    """Add people to a scene group (adding someone already in it is harmless); returns the calls made."""
    userids = list(dict.fromkeys(userids))
    calls = 0
    for start in range(0, len(userids), ADD_CHUNK):
        chunk = userids[start : start + ADD_CHUNK]
        body = {"open_conversation_id": open_conversation_id, "user_ids": ",".join(chunk)}
        get_gateway().oapi("/topapi/im/chat/scenegroup/member/add", body)
        calls += 1
    return calls


def remove_group_members(open_conversation_id: str, userids: Sequence[str]) -> int:
    """Take people out of a scene group, in chunks like `add_group_members`; returns the calls made. DingTalk
    keeps the owner in any case: transfer the group first (`set_group_owner`) to remove them."""
    userids = list(dict.fromkeys(userids))
    calls = 0
    for start in range(0, len(userids), ADD_CHUNK):
        chunk = userids[start : start + ADD_CHUNK]
        body = {"open_conversation_id": open_conversation_id, "user_ids": ",".join(chunk)}
        get_gateway().oapi("/topapi/im/chat/scenegroup/member/delete", body)
        calls += 1
    return calls


def set_group_owner(open_conversation_id: str, owner: str) -> None:
    """Hand a scene group to another owner (who is added to it if they were not in it)."""
    body = {"open_conversation_id": open_conversation_id, "owner_user_id": owner}
    get_gateway().oapi("/topapi/im/chat/scenegroup/update", body)
