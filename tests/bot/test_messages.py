"""Message templates: plain functions, Chinese text, mentions that actually ping."""

from __future__ import annotations

import json

from bot import messages


def test_alert_puts_mentions_in_the_text_so_they_ping():
    msg = messages.alert(
        level="critical",
        indicator="下转患者比例",
        org_name="安吉县医共体",
        summary="本月下转比例 3.2%，低于目标 10%",
        link="https://workbench.example/h5/indicators/12",
        at_mobiles=["13800001234"],
        at_userids=["u001"],
    )
    assert msg["msgtype"] == "markdown"
    assert "🔴 严重" in msg["title"] and "下转患者比例" in msg["title"]
    assert "@13800001234" in msg["text"] and "@u001" in msg["text"]
    assert "[查看详情](https://workbench.example/h5/indicators/12)" in msg["text"]
    body = messages.to_webhook(msg, "uuid-1")
    assert body["msgUuid"] == "uuid-1"
    assert body["at"] == {"atMobiles": ["13800001234"], "atUserIds": ["u001"], "isAtAll": False}
    assert body["markdown"]["text"] == msg["text"]


def test_digest_keeps_every_alert_and_every_mention():
    alerts = [
        messages.alert(
            level="warning", indicator=f"指标{n}", org_name="县医院", summary=f"第{n}条", at_userids=[f"u{n}"]
        )
        for n in range(3)
    ]
    folded = messages.digest(alerts)
    assert folded["title"].endswith("等 3 条")
    assert "共 3 条消息汇总" in folded["text"]
    for n in range(3):
        assert f"第{n}条" in folded["text"]
    assert folded["at_userids"] == ["u0", "u1", "u2"]
    assert messages.digest(alerts[:1]) == alerts[0]


def test_channel_bodies_and_content_digest():
    msg = messages.notice(title="转诊预约成功", lines=["患者：张**", "时间：11月24日 上午"], link="https://x/h5/r/1")
    key, param = messages.to_robot(msg)
    assert key == "sampleMarkdown" and json.loads(param)["title"] == "转诊预约成功"
    assert messages.to_work_notice(messages.text("随访提醒"))["text"] == {"content": "随访提醒"}
    same = messages.notice(title="转诊预约成功", lines=["患者：张**", "时间：11月24日 上午"], link="https://x/h5/r/1")
    assert messages.content_digest(msg) == messages.content_digest(same)
    assert messages.content_digest(msg) != messages.content_digest(messages.text("另一条"))
