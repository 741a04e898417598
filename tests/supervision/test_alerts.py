"""Alert rules with Alertmanager semantics, into group chats of the sandbox (issue 8, "What must be shown").

The small sandbox province has one city and two counties; the issue's scenario needs 12 counties breaching at
once, so ten more county nodes are added to the stored tree (five under the real city, five under a second city),
with roll-up rows written directly (the roll-up itself is tested in test_rollup.py). Messages are delivered by
the outbox to the sandbox's scene groups and read back from the sandbox.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask import Flask

from bot import groups
from org_sync.models import OrgNode
from supervision import alerts
from supervision.models import (
    Alert,
    AlertNotification,
    AlertRoute,
    AlertRule,
    Indicator,
    IndicatorRollup,
    IndicatorTarget,
)
from tests.bot.conftest import sandbox_messages
from tests.conftest import run_jobs
from workbench.audit import AuditRecord
from workbench.db import session, utcnow

API = "/api/supervision"
PERIOD = "2026-10"


@dataclass
class Scenario:
    indicator_id: int
    rule_id: int
    city_a: int
    city_b: int
    counties_a: list[int]  # the real city's counties: the two of the sandbox, then five added
    counties_b: list[int]
    own_county: int  # a county of city A with its own chat
    chats: dict[str, str]  # "a", "b", "own" -> openConversationId
    mention: str
    names: dict[int, str] = field(default_factory=dict)

    @property
    def counties(self) -> list[int]:
        return self.counties_a + self.counties_b


def _indicator(db) -> Indicator:
    indicator = Indicator(
        code=f"T-SIGN-{uuid.uuid4().hex[:6].upper()}",
        name="测试签约率",
        dimension="family_doctor",
        kind="rate",
        numerator_definition="签约人数",
        denominator_definition="常住人口",
        unit="%",
        scale=100,
        direction="up",
        period="month",
        collection="automatic",
        source="测试",
        reporting_level="institution",
    )
    db.add(indicator)
    db.flush()
    return indicator


def _node(db, parent: OrgNode, name: str, level: str, dept_id: int) -> OrgNode:
    node = OrgNode(
        corp_id=parent.corp_id,
        dept_id=dept_id,
        parent_id=parent.id,
        name=name,
        level=level,
        layer=parent.layer,
        level_source="override",
        path="",
        depth=parent.depth + 1,
    )
    db.add(node)
    db.flush()
    node.path = f"{parent.path}{node.id}/"
    return node


def _rollup(
    db, indicator_id: int, node_id: int, value: str, *, period: str = PERIOD, expected: int = 10, reported: int = 10
) -> None:
    row = db.get(IndicatorRollup, (indicator_id, node_id, period))
    if row is None:
        row = IndicatorRollup(indicator_id=indicator_id, node_id=node_id, period=period)
        db.add(row)
    row.value, row.numerator, row.denominator = Decimal(value), Decimal(value), Decimal(100)
    row.units_expected, row.units_reported = expected, reported


@pytest.fixture
def scenario(tree_app, sup_world, sandbox, tree) -> tuple[Flask, Scenario]:
    app = tree_app
    users = sorted(u["userid"] for u in tree["users"] if u["active"])
    with app.app_context():
        # The chats first: creating one records DingTalk quota usage in its own transaction (SQLite: one writer).
        chats = {
            key: groups.create_scene_group(
                f"告警群{key}", users[0], users[1:3], template_id="tpl-alerts", uuid=uuid.uuid4().hex
            ).open_conversation_id
            for key in ("a", "b", "own")
        }
        db = session()
        province = db.get(OrgNode, sup_world.province_id)
        [city_a] = db.scalars(sa.select(OrgNode).where(OrgNode.level == "city_commission")).all()
        real = db.scalars(
            sa.select(OrgNode)
            .where(OrgNode.level == "county_bureau", OrgNode.deleted_at.is_(None))
            .order_by(OrgNode.id)
        ).all()
        city_b = _node(db, province, "测试市卫生健康委员会", "city_commission", 990_000)
        added_a = [_node(db, city_a, f"测试甲{n}县卫生健康局", "county_bureau", 990_100 + n) for n in range(5)]
        added_b = [_node(db, city_b, f"测试乙{n}县卫生健康局", "county_bureau", 990_200 + n) for n in range(5)]
        counties_a, counties_b = [c.id for c in [*real, *added_a]], [c.id for c in added_b]
        assert len(counties_a) + len(counties_b) == 12

        indicator = _indicator(db)
        db.add(IndicatorTarget(indicator_id=indicator.id, node_id=province.id, year=2026, value=65, set_by="test"))
        for county in counties_a + counties_b:
            _rollup(db, indicator.id, county, "50")
        for institution in sup_world.institution_ids:
            _rollup(db, indicator.id, institution, "40", expected=1, reported=1)
        rule = AlertRule(
            indicator_id=indicator.id,
            name="签约率未达目标",
            kind="target_gap",
            levels=["county_bureau", "medical_community_lead", "member_institution"],
            threshold=Decimal(5),
            severity="critical",
            repeat_interval_hours=24,
            created_by="test",
        )
        db.add(rule)

        own_county = counties_a[-1]
        mention = users[1]
        for node_id, key in ((city_a.id, "a"), (city_b.id, "b"), (own_county, "own")):
            db.add(AlertRoute(node_id=node_id, conversation_id=chats[key], mention_userids=[mention], set_by="test"))
        db.commit()
        names = {row.id: row.name for row in db.execute(sa.select(OrgNode.id, OrgNode.name))}
        return app, Scenario(
            indicator.id, rule.id, city_a.id, city_b.id, counties_a, counties_b, own_county, chats, mention, names
        )


def _round(app, now) -> tuple[dict, dict]:
    """Evaluate and notify once at `now`, commit, and deliver what was queued."""
    with app.app_context():
        db = session()
        evaluated = alerts.evaluate_period(db, PERIOD, now=now)
        notified = alerts.notify(db, PERIOD, now=now)
        db.commit()
    run_jobs(app)
    return evaluated, notified


def _texts(sandbox, chat: str) -> list[str]:
    return [m["content"]["text"] for m in sandbox_messages(sandbox, conversation=chat, kind="robot_group")]


def _set_counties(app, s: Scenario, value: str, counties: list[int] | None = None) -> None:
    with app.app_context():
        db = session()
        for county in counties if counties is not None else s.counties:
            _rollup(db, s.indicator_id, county, value)
        db.commit()


def test_twelve_counties_one_message_per_chat_repeat_and_resolved(scenario, sandbox, sup_world):
    app, s = scenario
    t0 = utcnow()
    evaluated, notified = _round(app, t0)
    assert evaluated["new"] == 12 + len(sup_world.institution_ids)
    assert evaluated["inhibited"] == len(sup_world.institution_ids)  # held back by their county's alert
    assert notified == {"messages": 3, "alerts": 12, "unrouted": 0}

    expected = {
        "a": [c for c in s.counties_a if c != s.own_county],
        "b": s.counties_b,
        "own": [s.own_county],
    }
    for key, counties in expected.items():
        [text] = _texts(sandbox, s.chats[key])
        for county in s.counties:
            assert (f"**{s.names[county]}**" in text) == (county in counties), (key, county)
        assert text.count("- 🔴 严重") == len(counties)
        assert "测试签约率：50%（目标 65%，差 -15）" in text
        assert f"@{s.mention}" in text  # in the text, or DingTalk does not ping
        assert "/h5/apps/supervision/?node_id=" in text and f"period={PERIOD}" in text
        for institution in sup_world.institution_ids:
            assert f"**{s.names[institution]}**" not in text

    # Before the repeat interval: nothing new, however often it is evaluated.
    for hours in (1, 12, 23):
        _, notified = _round(app, t0 + timedelta(hours=hours))
        assert notified["messages"] == 0
    assert all(len(_texts(sandbox, chat)) == 1 for chat in s.chats.values())

    # After it: one repeat per chat, marked as such.
    _, notified = _round(app, t0 + timedelta(hours=24, minutes=1))
    assert notified == {"messages": 3, "alerts": 12, "unrouted": 0}
    _, notified = _round(app, t0 + timedelta(hours=25))
    assert notified["messages"] == 0
    for key, counties in expected.items():
        texts = _texts(sandbox, s.chats[key])
        assert len(texts) == 2
        assert texts[1].count("（持续告警）") == len(counties)

    # Recovery: one resolved notice per chat, once; the held-back institutions, never announced, get none.
    _set_counties(app, s, "70", s.counties + sup_world.institution_ids)
    evaluated, notified = _round(app, t0 + timedelta(hours=26))
    assert evaluated["resolved"] == 12 + len(sup_world.institution_ids)
    assert notified == {"messages": 3, "alerts": 12, "unrouted": 0}
    for key, counties in expected.items():
        texts = _texts(sandbox, s.chats[key])
        assert len(texts) == 3
        assert "已恢复" in texts[2] and texts[2].count("🟢 已恢复 **") == len(counties)
    _, notified = _round(app, t0 + timedelta(hours=27))
    assert notified["messages"] == 0

    # Breaching again is a new episode of the same alerts: announced at once, not held to the repeat interval.
    _set_counties(app, s, "50")
    evaluated, notified = _round(app, t0 + timedelta(hours=28))
    assert evaluated["new"] == 12 and notified == {"messages": 3, "alerts": 12, "unrouted": 0}
    assert all("（持续告警）" not in _texts(sandbox, chat)[3] for chat in s.chats.values())

    with app.app_context():
        db = session()
        kinds = db.execute(sa.select(AlertNotification.kind, sa.func.count()).group_by(AlertNotification.kind)).all()
        assert dict(kinds) == {"firing": 3 + 3 + 3, "resolved": 3}
        counties = db.scalars(sa.select(Alert).where(Alert.node_id.in_(s.counties))).all()
        assert len(counties) == 12 and all(a.state == "firing" and a.resolved_at is None for a in counties)
        institutions = db.scalars(sa.select(Alert).where(Alert.node_id.in_(sup_world.institution_ids))).all()
        assert all(a.notified_at is None and a.resolved_notified_at is None for a in institutions)


def test_inhibition_holds_institutions_back_while_their_county_fires(scenario, sandbox, sup_world):
    app, s = scenario
    t0 = utcnow()
    _round(app, t0)
    with app.app_context():
        db = session()
        county_alert = db.scalar(sa.select(Alert).where(Alert.node_id == sup_world.county_id))
        held = db.scalars(sa.select(Alert).where(Alert.node_id.in_(sup_world.institution_ids))).all()
        assert held and all(a.inhibited_by_id is not None and a.notified_at is None for a in held)
        # Held back by the nearest firing alert above: the county's, or for members under their lead hospital,
        # the lead hospital's (itself held back by the county's).
        assert county_alert.id in {a.inhibited_by_id for a in held}
        assert {a.inhibited_by_id for a in held} <= {county_alert.id} | {a.id for a in held}
        below_county = {a.node_id for a in held if a.inhibited_by_id == county_alert.id}
        below_institution = {a.node_id for a in held} - below_county
    chat = s.chats["own"] if sup_world.county_id == s.own_county else s.chats["a"]
    before = len(_texts(sandbox, chat))

    # The county recovers, its institutions do not: those right below it are no longer held back and are sent at
    # once (no repeat wait); members under a still-firing lead hospital stay held back by it.
    _set_counties(app, s, "70", [sup_world.county_id])
    _, notified = _round(app, t0 + timedelta(minutes=5))
    assert notified["messages"] == 2  # the county's resolved notice and its institutions' firing alerts
    texts = _texts(sandbox, chat)[before:]
    assert len(texts) == 2
    firing = next(t for t in texts if "指标告警" in t)
    for institution in below_county:
        assert f"**{s.names[institution]}**" in firing
    for institution in below_institution:
        assert f"**{s.names[institution]}**" not in firing
    assert f"**{s.names[sup_world.county_id]}**" not in firing
    assert f"**{s.names[sup_world.county_id]}**" in next(t for t in texts if "已恢复" in t)


def test_nothing_while_silenced_then_sent_when_the_silence_is_expired(scenario, sandbox, sup_world):
    app, s = scenario
    admin = sup_world.province_admin.headers
    client = app.test_client()
    ends = (utcnow() + timedelta(days=2)).isoformat()
    reply = client.post(
        f"{API}/silences",
        json={"node_id": s.city_b, "ends_at": ends, "reason": "乙市数据口径核对中"},
        headers=admin,
    )
    assert reply.status_code == 201, reply.get_json()
    silence_id = reply.get_json()["id"]
    active = client.get(f"{API}/silences", headers=admin).get_json()["items"]
    assert [x["id"] for x in active] == [silence_id]

    t0 = utcnow()
    evaluated, notified = _round(app, t0)
    assert evaluated["silenced"] == len(s.counties_b)
    assert notified["messages"] == 2 and notified["alerts"] == 12 - len(s.counties_b)
    assert _texts(sandbox, s.chats["b"]) == []
    _, notified = _round(app, t0 + timedelta(hours=30))  # past the repeat interval: still nothing for city B
    assert _texts(sandbox, s.chats["b"]) == []

    assert client.delete(f"{API}/silences/{silence_id}", headers=admin).status_code == 200
    assert client.get(f"{API}/silences", headers=admin).get_json()["items"] == []
    _, notified = _round(app, t0 + timedelta(hours=31))
    assert notified == {"messages": 1, "alerts": len(s.counties_b), "unrouted": 0}
    [text] = _texts(sandbox, s.chats["b"])
    assert all(f"**{s.names[c]}**" in text for c in s.counties_b)

    # Recovery of what was announced while silenced again: no resolved notice until the silence ends.
    reply = client.post(
        f"{API}/silences", json={"indicator": _code(app, s), "ends_at": ends, "reason": "全省核对"}, headers=admin
    )
    assert reply.status_code == 201, reply.get_json()
    _set_counties(app, s, "70")
    evaluated, notified = _round(app, t0 + timedelta(hours=32))
    assert evaluated["resolved"] == 12 and notified["messages"] == 0


def _code(app, s: Scenario) -> str:
    with app.app_context():
        return session().get(Indicator, s.indicator_id).code


def test_unrouted_alerts_are_logged_and_skipped(scenario, caplog):
    app, s = scenario
    with app.app_context():
        db = session()
        db.execute(sa.delete(AlertRoute).where(AlertRoute.node_id == s.city_b))
        db.commit()
    _, notified = _round(app, utcnow())
    assert notified == {"messages": 2, "alerts": 12 - len(s.counties_b), "unrouted": len(s.counties_b)}
    assert any(r.levelname == "WARNING" and getattr(r, "rows", None) == len(s.counties_b) for r in caplog.records)


def test_a_storm_is_split_under_the_size_limit_still_grouped(scenario, sandbox, sup_world):
    """Many alerts for one chat: several messages, each under the limit, together carrying every alert once."""
    app, s = scenario
    with app.app_context():
        db = session()
        city_b = db.get(OrgNode, s.city_b)
        many = [
            _node(db, city_b, f"测试丙{n:03d}县卫生健康局（名称较长以撑大消息）", "county_bureau", 991_000 + n)
            for n in range(260)
        ]
        for county in many:
            _rollup(db, s.indicator_id, county.id, "50")
        db.commit()
        ids = [c.id for c in many]
    _, notified = _round(app, utcnow())
    assert notified["alerts"] == 12 + len(many) and notified["messages"] == 2 + len(_texts(sandbox, s.chats["b"]))
    texts = _texts(sandbox, s.chats["b"])
    assert len(texts) >= 2
    assert all(len(t.encode()) <= 20_000 for t in texts)
    assert all(
        f"（{n}/{len(texts)}）" in texts[n - 1] and f"@{s.mention}" in texts[n - 1] for n in range(1, len(texts) + 1)
    )
    joined = "\n".join(texts)
    with app.app_context():
        names = {
            r.id: r.name for r in session().execute(sa.select(OrgNode.id, OrgNode.name).where(OrgNode.id.in_(ids)))
        }
    assert all(joined.count(f"**{names[i]}**") == 1 for i in ids)


def test_threshold_and_trend_rules_and_completeness(scenario):
    app, s = scenario
    county, half = s.counties_b[0], s.counties_b[1]
    with app.app_context():
        db = session()
        db.get(AlertRule, s.rule_id).active = False
        _rollup(db, s.indicator_id, county, "60", period="2026-09")
        _rollup(db, s.indicator_id, county, "30")  # -50% against September
        _rollup(db, s.indicator_id, half, "10", reported=5)  # half reported: not judged
        _rollup(db, s.indicator_id, s.counties_b[2], "80", period="2026-09")
        _rollup(db, s.indicator_id, s.counties_b[2], "72")  # -10%: within a 20% tolerance
        _rollup(db, s.indicator_id, s.counties_b[3], "80", period="2025-10")  # now 50: -37.5% on a year ago
        db.add_all(
            [
                AlertRule(
                    indicator_id=s.indicator_id, name="低于 45%", kind="threshold", operator="<",
                    threshold=Decimal(45), levels=["county_bureau"], created_by="test",
                ),
                AlertRule(
                    indicator_id=s.indicator_id, name="环比下降超过 20%", kind="trend", comparison="previous",
                    threshold=Decimal(20), levels=["county_bureau"], created_by="test",
                ),
                AlertRule(
                    indicator_id=s.indicator_id, name="同比下降超过 20%", kind="trend", comparison="last_year",
                    threshold=Decimal(20), levels=["county_bureau"], created_by="test",
                ),
            ]
        )  # fmt: skip
        db.commit()
        evaluated = alerts.evaluate_period(db, PERIOD)
        db.commit()
        firing = db.execute(
            sa.select(AlertRule.name, Alert.node_id).join(AlertRule).where(Alert.state == "firing", AlertRule.active)
        ).all()
    assert {node for name, node in firing if name == "低于 45%"} == {county}
    assert {node for name, node in firing if name == "环比下降超过 20%"} == {county}
    assert {node for name, node in firing if name == "同比下降超过 20%"} == {s.counties_b[3]}
    assert half not in {node for _, node in firing}
    assert evaluated["rules"] == 3


RULE = {
    "name": "签约率未达目标",
    "kind": "target_gap",
    "levels": ["county_bureau"],
    "threshold": 5,
    "severity": "warning",
}
RULE_ERRORS = [
    ({"kind": "weather"}, "kind"),
    ({"levels": []}, "levels"),
    ({"levels": ["internal_department"]}, "levels.0"),
    ({"levels": "county_bureau"}, "levels"),
    ({"threshold": "lots"}, "threshold"),
    ({"threshold": -1}, "threshold"),
    ({"kind": "threshold"}, "operator"),
    ({"kind": "threshold", "operator": "=="}, "operator"),
    ({"kind": "trend"}, "comparison"),
    ({"kind": "trend", "comparison": "previous", "threshold": 0}, "threshold"),
    ({"min_completeness": 1.5}, "min_completeness"),
    ({"repeat_interval_hours": 0}, "repeat_interval_hours"),
    ({"repeat_interval_hours": "24"}, "repeat_interval_hours"),
    ({"severity": "fatal"}, "severity"),
    ({"indicator": "NO-SUCH"}, "indicator"),
    ({"name": ""}, "name"),
]


def test_bad_input_is_refused_naming_the_field(scenario, sup_world):
    app, s = scenario
    client = app.test_client()
    admin, county_admin = sup_world.province_admin.headers, sup_world.county_admin.headers
    code = _code(app, s)

    for change, name in RULE_ERRORS:
        reply = client.post(f"{API}/alert-rules", json={**RULE, "indicator": code, **change}, headers=admin)
        body = reply.get_json()
        assert (reply.status_code, body["error"]["field"]) == (422, name), (change, body)
        assert body["error"]["message"]
    created = client.post(f"{API}/alert-rules", json={**RULE, "indicator": code}, headers=admin)
    assert created.status_code == 201, created.get_json()
    rule_id = created.get_json()["id"]
    # A PATCH is judged on the whole rule it would leave.
    reply = client.patch(f"{API}/alert-rules/{rule_id}", json={"kind": "threshold"}, headers=admin)
    assert (reply.status_code, reply.get_json()["error"]["field"]) == (422, "operator")
    reply = client.patch(f"{API}/alert-rules/{rule_id}", json={"kind": "threshold", "operator": "<"}, headers=admin)
    assert reply.status_code == 200 and reply.get_json()["operator"] == "<"
    # Rules are province-wide: a county administrator may read them, not write them.
    assert client.post(f"{API}/alert-rules", json={**RULE, "indicator": code}, headers=county_admin).status_code == 403
    assert client.get(f"{API}/alert-rules", headers=county_admin).status_code == 200
    assert client.get(f"{API}/alert-rules", headers=sup_world.clinician.headers).status_code == 403

    # Routes.
    route = f"{API}/alert-routes/{sup_world.county_id}"
    for body, name in [
        ({}, "conversation_id"),
        ({"conversation_id": ""}, "conversation_id"),
        ({"conversation_id": "cid", "mention_userids": "x"}, "mention_userids"),
        ({"conversation_id": "cid", "mention_userids": ["nobody-here"]}, "mention_userids"),
    ]:
        reply = client.put(route, json=body, headers=county_admin)
        assert (reply.status_code, reply.get_json()["error"]["field"]) == (422, name), (body, reply.get_json())
    reply = client.put(
        route, json={"conversation_id": "cid-county", "mention_userids": [s.mention]}, headers=county_admin
    )
    assert reply.status_code == 200, reply.get_json()
    other_county = next(c for c in s.counties if c != sup_world.county_id)
    reply = client.put(f"{API}/alert-routes/{other_county}", json={"conversation_id": "x"}, headers=county_admin)
    assert reply.status_code == 403
    listed = client.get(f"{API}/alert-routes", headers=county_admin).get_json()["items"]
    assert [r["node_id"] for r in listed] == [sup_world.county_id]

    # Silences.
    soon = (utcnow() + timedelta(days=1)).isoformat()
    for body, name in [
        ({"node_id": s.city_b, "ends_at": soon}, "reason"),
        ({"node_id": s.city_b, "ends_at": soon, "reason": "  "}, "reason"),
        ({"node_id": s.city_b, "reason": "核对"}, "ends_at"),
        ({"node_id": s.city_b, "ends_at": "tomorrow", "reason": "核对"}, "ends_at"),
        ({"node_id": s.city_b, "ends_at": "2026-12-01T00:00:00", "reason": "核对"}, "ends_at"),  # no time zone
        ({"node_id": s.city_b, "ends_at": (utcnow() - timedelta(hours=1)).isoformat(), "reason": "核对"}, "ends_at"),
        ({"node_id": s.city_b, "ends_at": (utcnow() + timedelta(days=91)).isoformat(), "reason": "核对"}, "ends_at"),
        ({"ends_at": soon, "reason": "核对"}, "rule_id"),
        ({"rule_id": 999_999, "ends_at": soon, "reason": "核对"}, "rule_id"),
        ({"indicator": "NO-SUCH", "ends_at": soon, "reason": "核对"}, "indicator"),
        ({"node_id": "x", "ends_at": soon, "reason": "核对"}, "node_id"),
    ]:
        reply = client.post(f"{API}/silences", json=body, headers=admin)
        assert (reply.status_code, reply.get_json()["error"]["field"]) == (422, name), (body, reply.get_json())
    reply = client.post(
        f"{API}/silences", json={"indicator": code, "ends_at": soon, "reason": "核对"}, headers=county_admin
    )
    assert reply.status_code == 403  # province-wide: province administrators only
    mine = {"node_id": sup_world.county_id, "ends_at": soon, "reason": "本县数据核对"}
    assert client.post(f"{API}/silences", json=mine, headers=county_admin).status_code == 201
    elsewhere = {**mine, "node_id": s.city_b}
    assert client.post(f"{API}/silences", json=elsewhere, headers=county_admin).status_code == 403

    # Writes are on record, with who made them.
    with app.app_context():
        actions = set(session().scalars(sa.select(AuditRecord.action).where(AuditRecord.action.like("alert_%"))))
    assert {"alert_rule.create", "alert_rule.edit", "alert_route.set", "alert_silence.create"} <= actions

    # Alerts list.
    assert client.get(f"{API}/alerts?state=burning", headers=admin).get_json()["error"]["field"] == "state"
    assert client.get(f"{API}/alerts?period=2026-13", headers=admin).get_json()["error"]["field"] == "period"


def test_alert_list_in_scope(scenario, sup_world):
    app, s = scenario
    _round(app, utcnow())
    client = app.test_client()
    everything = client.get(f"{API}/alerts?state=firing&period={PERIOD}", headers=sup_world.province_admin.headers)
    assert everything.status_code == 200
    assert {a["node_id"] for a in everything.get_json()["items"]} == set(s.counties) | set(sup_world.institution_ids)
    mine = client.get(f"{API}/alerts", headers=sup_world.county_admin.headers).get_json()["items"]
    assert {a["node_id"] for a in mine} == {sup_world.county_id, *sup_world.institution_ids}
    held = [a for a in mine if a["node_id"] in sup_world.institution_ids]
    assert held and all(a["inhibited_by_id"] for a in held)
    sub = client.get(f"{API}/alerts?node_id={s.city_b}", headers=sup_world.province_admin.headers).get_json()["items"]
    assert {a["node_id"] for a in sub} == set(s.counties_b)
    assert client.get(f"{API}/alerts", headers=sup_world.clinician.headers).status_code == 403


def test_the_jobs_evaluate_notify_and_repeat(scenario):
    """`evaluate_and_notify` (run after a recomputation) and `notify_pending` (the hourly repeat job's body)."""
    app, _ = scenario
    with app.app_context():
        done = alerts.evaluate_and_notify(PERIOD)
        assert done["evaluated"]["new"] > 12 and done["notified"]["messages"] == 3
        db = session()
        assert alerts.notify_pending(db, now=utcnow() + timedelta(hours=1)) == {
            PERIOD: {"messages": 0, "alerts": 0, "unrouted": 0}
        }
        assert alerts.notify_pending(db, now=utcnow() + timedelta(hours=25)) == {
            PERIOD: {"messages": 3, "alerts": 12, "unrouted": 0}
        }
        db.commit()
