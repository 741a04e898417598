"""Scene groups: idempotent creation by uuid, members added, and group messages landing there."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from bot import groups, messages, outbox
from bot.models import OutboxMessage
from tests.bot.conftest import deliver_all, sandbox_messages
from workbench.db import session
from workbench.dingtalk import get_gateway


def test_create_twice_with_one_uuid_is_one_group_then_members_and_a_message(app, sandbox, userids):
    key = uuid.uuid4().hex
    owner, *others = userids[:6]
    with app.app_context():
        first = groups.create_scene_group("安吉县医共体转诊群", owner, others[:3], template_id="tpl-referral", uuid=key)
        again = groups.create_scene_group("安吉县医共体转诊群", owner, others[:3], template_id="tpl-referral", uuid=key)
        assert again == first
        assert groups.add_group_members(first.open_conversation_id, others[2:]) == 1
        got = get_gateway().oapi("/topapi/im/chat/scenegroup/get", {"open_conversation_id": first.open_conversation_id})
        assert got["result"]["member_amount"] == 6  # owner + 5, the overlap added once
        notice = messages.notice(title="转诊群已建立", lines=["请各成员单位及时处理转诊申请"])
        outbox.enqueue_message("robot_group", notice, idempotency_key=key, target=first.open_conversation_id)
        session().commit()
    deliver_all(app)
    got = sandbox_messages(sandbox, conversation=first.open_conversation_id, kind="robot_group")
    assert len(got) == 1 and "转诊群已建立" in got[0]["content"]["title"]
    with app.app_context():
        row = session().scalar(sa.select(OutboxMessage))
        assert row.state == "sent" and row.process_query_key
