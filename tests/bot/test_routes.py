"""The administrators' outbox API: auth, filters, one row, retry, counts; phones masked, bad input named."""

from __future__ import annotations

import sqlalchemy as sa

from bot import messages, outbox
from bot.models import OutboxMessage
from tests.bot.conftest import ADMIN
from workbench.db import session


def _seed(app, userids) -> dict[str, int]:
    with app.app_context():
        db = session()
        alert = messages.alert(
            level="critical",
            indicator="双向转诊",
            org_name="县人民医院",
            summary="联系 13912345678",
            at_mobiles=["13912345678"],
        )
        sent = outbox.enqueue_message("robot_webhook", alert, idempotency_key="w1", target="alerts")
        failed = outbox.enqueue_message("robot_oto", messages.text("失败的"), idempotency_key="o1", to=userids[:2])
        queued = outbox.enqueue_message("work_notice", messages.text("排队的"), idempotency_key="n1", to=userids[:2])
        db.flush()
        sent.state, failed.state, failed.last_error = "sent", "failed", "invalidParameter.msgKey.invalid"
        db.info.pop("bot.outbox.pending", None)  # keep them as seeded: no delivery job
        db.commit()
        return {"sent": sent.id, "failed": failed.id, "queued": queued.id}


def test_requires_the_admin_token(client):
    for method, path in [
        ("GET", "/api/bot/outbox"),
        ("GET", "/api/bot/outbox/counts"),
        ("POST", "/api/bot/outbox/1/retry"),
    ]:
        reply = client.open(path, method=method)
        assert reply.status_code == 401 and reply.json["error"]["code"] == "unauthorized"
    assert client.get("/api/bot/outbox", headers={"Authorization": "Bearer wrong-token-123"}).status_code == 401


def test_list_filter_get_and_counts(client, app, robot, userids):
    ids = _seed(app, userids)
    page = client.get("/api/bot/outbox", headers=ADMIN).json
    assert page["total"] == 3 and [r["id"] for r in page["items"]] == sorted(ids.values(), reverse=True)
    failed = client.get("/api/bot/outbox?state=failed", headers=ADMIN).json
    assert [r["id"] for r in failed["items"]] == [ids["failed"]]
    notices = client.get("/api/bot/outbox?channel=work_notice", headers=ADMIN).json
    assert [r["id"] for r in notices["items"]] == [ids["queued"]]
    one = client.get(f"/api/bot/outbox/{ids['sent']}", headers=ADMIN).json
    assert one["channel"] == "robot_webhook" and one["priority"] == "normal"
    assert "13912345678" not in str(one) and "139****5678" in one["payload"]["text"]
    assert one["payload"]["at_mobiles"] == ["139****5678"]
    counts = client.get("/api/bot/outbox/counts", headers=ADMIN).json
    assert counts["states"] == {"queued": 1, "sending": 0, "sent": 1, "failed": 1, "held": 0}
    assert counts["api"]["quota"] == 5000 and counts["message"]["quota"] == 3000
    missing = client.get("/api/bot/outbox/999999", headers=ADMIN)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_bad_filters_name_the_field(client):
    reply = client.get("/api/bot/outbox?state=lost", headers=ADMIN)
    assert reply.status_code == 422 and reply.json["error"]["field"] == "state"
    reply = client.get("/api/bot/outbox?page_size=1000", headers=ADMIN)
    assert reply.status_code == 422 and reply.json["error"]["field"] == "page_size"


def test_retry_a_failed_row_delivers_it(client, app, robot, userids):
    from tests.bot.conftest import deliver_all

    ids = _seed(app, userids)
    refused = client.post(f"/api/bot/outbox/{ids['sent']}/retry", headers=ADMIN)
    assert refused.status_code == 409 and refused.json["error"]["field"] == "state"
    reply = client.post(f"/api/bot/outbox/{ids['failed']}/retry", headers=ADMIN)
    assert reply.status_code == 200 and reply.json["state"] == "queued" and reply.json["attempts"] == 0
    deliver_all(app)
    with app.app_context():
        db = session()
        db.expire_all()
        row = db.get(OutboxMessage, ids["failed"])
        assert row.state == "sent" and row.process_query_key
        assert (
            db.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(OutboxMessage.state == "sent")) >= 2
        )


def test_register_robot_hides_the_secret_and_checks_it(client):
    body = {"name": "county-7", "title": "安吉县告警群", "access_token": "t" * 64, "secret": "SEC" + "a" * 64}
    reply = client.post("/api/bot/robots", json=body, headers=ADMIN)
    assert reply.status_code == 201
    assert reply.json == {"name": "county-7", "title": "安吉县告警群", "signed": True}
    bad = client.post("/api/bot/robots", json={**body, "secret": "nope"}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json["error"]["field"] == "secret"
    missing = client.post("/api/bot/robots", json={"name": "x"}, headers=ADMIN)
    assert missing.status_code == 422 and missing.json["error"]["field"] == "access_token"
