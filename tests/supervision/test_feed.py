"""The statistics feed: systems registered per subtree with a key shown once, batches checked whole (every bad item
reported, nothing stored), idempotent re-posts, versioned corrections, reading values with their history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import pytest
import sqlalchemy as sa

from org_sync.models import OrgNode
from supervision.models import FeedSystem, IndicatorRollup, IndicatorSubmission, IndicatorValue
from tests.conftest import run_jobs
from tests.supervision.test_values import indicator_for_tests
from workbench import db
from workbench.audit import AuditRecord
from workbench.db import utcnow

RATE, COUNT, QUAL, YEARLY, OFF, UNBOUNDED, COUNTY_WIDE = (
    "T-FEED-RATE",
    "T-FEED-COUNT",
    "T-FEED-QUAL",
    "T-FEED-YEAR",
    "T-FEED-OFF",
    "T-FEED-UNBOUNDED",
    "T-FEED-COUNTY",
)


@dataclass
class Feed:
    world: object
    system_id: int
    key: str
    units: list[int]  # institutions of the system's county

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _make_indicators(app) -> None:
    with app.app_context():
        session = db.session()
        indicator_for_tests(session, RATE)
        indicator_for_tests(session, COUNT, kind="count", bounded=False)
        indicator_for_tests(session, QUAL, kind="qualitative", scale=1, unit="分", period="year")
        indicator_for_tests(session, YEARLY, period="year")
        indicator_for_tests(session, OFF, active=False)
        indicator_for_tests(session, UNBOUNDED, bounded=False, unit="天", scale=1)
        indicator_for_tests(session, COUNTY_WIDE, reporting_level="county")
        session.commit()


def _register(client, headers: dict, node_id: int, name: str = "县医保结算平台"):
    return client.post("/api/supervision/feed-systems", json={"name": name, "node_id": node_id}, headers=headers)


@pytest.fixture
def feed(tree_app, tree_client, sup_world) -> Feed:
    _make_indicators(tree_app)
    reply = _register(tree_client, sup_world.county_admin.headers, sup_world.county_id)
    assert reply.status_code == 201, reply.get_json()
    body = reply.get_json()
    return Feed(sup_world, body["id"], body["api_key"], sup_world.institution_ids)


def _post(client, feed: Feed | None, body, headers: dict | None = None):
    # Serialised here so NaN and Infinity can be sent as the bare literals some senders emit.
    return client.post(
        "/api/supervision/feed",
        data=json.dumps(body),
        content_type="application/json",
        headers=headers if headers is not None else feed.headers,
    )


def _counts(app) -> tuple[int, int]:
    with app.app_context():
        session = db.session()
        return (
            session.scalar(sa.select(sa.func.count()).select_from(IndicatorValue)),
            session.scalar(sa.select(sa.func.count()).select_from(IndicatorSubmission)),
        )


def _item(code: str, unit: int | dict, period: str, numerator, denominator=None, **extra) -> dict:
    item = {"indicator": code, "unit": unit if isinstance(unit, dict) else {"id": unit}, "period": period}
    item["numerator"] = numerator
    if denominator is not None:
        item["denominator"] = denominator
    return item | extra


# -- feed systems ------------------------------------------------------------------------------------------------


def test_a_county_admin_registers_systems_for_its_own_subtree_only(tree_app, tree_client, sup_world):
    county, province = sup_world.county_admin.headers, sup_world.province_admin.headers
    reply = _register(tree_client, county, sup_world.county_id, "县人民医院 HIS")
    assert reply.status_code == 201
    made = reply.get_json()
    assert len(made["api_key"]) >= 43 and made["key_hint"] == made["api_key"][-4:]
    assert reply.headers["Cache-Control"] == "no-store"

    # Above its county: refused as if the node did not exist.
    reply = _register(tree_client, county, sup_world.province_id, "省平台")
    assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "node_id"
    # An institution inside the county is fine; a clinician may not register anything.
    assert _register(tree_client, county, sup_world.institution_ids[0], "卫生院 HIS").status_code == 201
    assert _register(tree_client, sup_world.clinician.headers, sup_world.institution_ids[0], "x").status_code == 403
    # Names are unique; bad input names its field.
    reply = _register(tree_client, county, sup_world.county_id, "县人民医院 HIS")
    assert reply.status_code == 409 and reply.get_json()["error"]["field"] == "name"
    reply = tree_client.post("/api/supervision/feed-systems", json={"name": "y", "node_id": "12"}, headers=county)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "node_id"

    with tree_app.app_context():
        session = db.session()
        other_county = session.scalar(
            sa.select(OrgNode.id).where(OrgNode.level == "county_bureau", OrgNode.id != sup_world.county_id)
        )
        stored = session.get(FeedSystem, made["id"])
        # Only the hash is kept.
        assert made["api_key"] not in (stored.key_hash, stored.key_hint) and len(stored.key_hash) == 64
        assert (
            session.scalar(sa.select(sa.func.count()).where(AuditRecord.action == "supervision.feed_system.create"))
            == 2
        )
    assert _register(tree_client, county, other_county, "邻县平台").status_code == 404
    assert _register(tree_client, province, other_county, "邻县平台").status_code == 201

    listed = tree_client.get("/api/supervision/feed-systems", headers=county).get_json()["items"]
    assert {s["name"] for s in listed} == {"县人民医院 HIS", "卫生院 HIS"}
    assert all("api_key" not in s for s in listed)
    listed = tree_client.get("/api/supervision/feed-systems", headers=province).get_json()["items"]
    assert {s["name"] for s in listed} == {"县人民医院 HIS", "卫生院 HIS", "邻县平台"}


def test_the_key_is_shown_once_and_rotation_kills_the_old_one(tree_app, tree_client, feed):
    county = feed.world.county_admin.headers
    body = {"batch_id": "k1", "items": [_item(COUNT, feed.units[0], "2025-10", 100)]}
    assert _post(tree_client, feed, body).status_code == 201

    reply = tree_client.post(f"/api/supervision/feed-systems/{feed.system_id}/key", headers=county)
    assert reply.status_code == 200
    new_key = reply.get_json()["api_key"]
    assert new_key != feed.key
    old = _post(tree_client, feed, body | {"batch_id": "k2"})
    assert old.status_code == 401 and old.get_json()["error"]["code"] == "unauthorized"
    feed.key = new_key
    assert _post(tree_client, feed, body | {"batch_id": "k2"}).status_code == 201

    # Switched off: refused; on again: accepted. Only its administrators may do either.
    path = f"/api/supervision/feed-systems/{feed.system_id}"
    assert tree_client.patch(path, json={"active": False}, headers=feed.world.clinician.headers).status_code == 403
    reply = tree_client.patch(path, json={"active": False}, headers=county)
    assert reply.status_code == 200 and reply.get_json()["active"] is False and "api_key" not in reply.get_json()
    assert _post(tree_client, feed, body | {"batch_id": "k3"}).status_code == 401
    assert tree_client.patch(path, json={"active": True}, headers=county).status_code == 200
    assert _post(tree_client, feed, body | {"batch_id": "k3"}).status_code == 201
    assert tree_client.patch(path + "0", json={"active": True}, headers=county).status_code == 404

    with tree_app.app_context():
        actions = db.session().scalars(
            sa.select(AuditRecord.action).where(AuditRecord.action.like("supervision.%")).order_by(AuditRecord.id)
        )
        assert list(actions) == [
            "supervision.feed_system.create",
            "supervision.feed.batch",
            "supervision.feed_system.rotate_key",
            "supervision.feed.batch",
            "supervision.feed_system.update",
            "supervision.feed_system.update",
            "supervision.feed.batch",
        ]


def test_the_feed_needs_a_feed_key(tree_client, feed):
    body = {"batch_id": "a1", "items": [_item(COUNT, feed.units[0], "2025-10", 1)]}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": feed.key},
        feed.world.county_admin.headers,
    ):
        reply = _post(tree_client, None, body, headers=headers)
        assert reply.status_code == 401, headers
        assert reply.get_json()["error"]["code"] == "unauthorized"


# -- batches -----------------------------------------------------------------------------------------------------


def test_a_good_batch_is_stored_and_a_repost_is_not_counted_twice(tree_app, tree_client, feed):
    a, b = feed.units[:2]
    body = {
        "batch_id": "2025-10-his-001",
        "items": [
            _item(RATE, a, "2025-10", 123, 456),
            _item(RATE, b, "2025-10", 10.5, 20),
            _item(COUNT, a, "2025-10", 1200),
            _item(QUAL, a, "2025", 1, 1, verdict="达标：人事、财务统一管理"),
            _item(UNBOUNDED, b, "2025-10", 900, 100),  # bed-days over discharges: above 1 is fine
        ],
    }
    before = _counts(tree_app)
    reply = _post(tree_client, feed, body)
    assert reply.status_code == 201, reply.get_json()
    result = reply.get_json()
    assert (result["items"], result["new"], result["corrected"], result["unchanged"]) == (5, 5, 0, 0)
    assert result["corrections"] == [] and result["batch_id"] == "2025-10-his-001"
    assert _counts(tree_app) == (before[0] + 5, before[1] + 1)

    again = _post(tree_client, feed, body)
    assert again.status_code == 200
    assert again.get_json() | {"replayed": None} == result | {"replayed": None}
    assert again.get_json()["replayed"] is True
    # The same content with units named differently and items reordered is the same batch.
    with tree_app.app_context():
        dept_of_a = db.session().get(OrgNode, a).dept_id
    reordered = {
        "batch_id": body["batch_id"],
        "items": [*body["items"][1:], _item(RATE, {"dept_id": dept_of_a}, "2025-10", 123.0, 456)],
    }
    assert _post(tree_client, feed, reordered).status_code == 200
    assert _counts(tree_app) == (before[0] + 5, before[1] + 1)

    with tree_app.app_context():
        session = db.session()
        stored = session.scalars(sa.select(IndicatorValue).where(IndicatorValue.unit_id == b)).all()
        assert {(v.period, float(v.numerator), float(v.denominator)) for v in stored} == {
            ("2025-10", 10.5, 20.0),
            ("2025-10", 900.0, 100.0),
        }
        assert {v.source for v in stored} == {f"feed:{feed.system_id}"}
        audit = session.scalar(sa.select(AuditRecord).where(AuditRecord.action == "supervision.feed.batch"))
        assert audit.actor == f"feed:{feed.system_id}"
        assert audit.detail["new"] == 5 and "numerator" not in json.dumps(audit.detail)


def test_the_same_batch_id_with_other_content_is_a_conflict(tree_app, tree_client, feed):
    a, b = feed.units[:2]
    body = {"batch_id": "dup", "items": [_item(RATE, a, "2025-10", 1, 2), _item(RATE, b, "2025-10", 3, 4)]}
    assert _post(tree_client, feed, body).status_code == 201
    before = _counts(tree_app)
    for items in (
        [_item(RATE, a, "2025-10", 1, 2), _item(RATE, b, "2025-10", 3, 5)],  # a figure differs
        [_item(RATE, a, "2025-10", 1, 2)],  # an item fewer
        [_item(RATE, a, "2025-10", 1, 2), _item(RATE, b, "2025-09", 3, 4)],  # another key
    ):
        reply = _post(tree_client, feed, {"batch_id": "dup", "items": items})
        assert reply.status_code == 409 and reply.get_json()["error"]["field"] == "batch_id"
    assert _counts(tree_app) == before


def test_a_later_batch_corrects_versioned_with_the_old_row_kept(tree_app, tree_client, feed):
    a, b = feed.units[:2]
    first = {"batch_id": "m10-a", "items": [_item(RATE, a, "2025-10", 30, 40), _item(RATE, b, "2025-10", 10, 20)]}
    assert _post(tree_client, feed, first).status_code == 201
    first_id = _post(tree_client, feed, first).get_json()["submission_id"]
    second = {
        "batch_id": "m10-b",
        "items": [
            _item(RATE, a, "2025-10", 30.0, 40),  # the same figure: unchanged
            _item(RATE, b, "2025-10", 12, 20),  # late correction
            _item(COUNT, b, "2025-10", 77),  # new
        ],
    }
    reply = _post(tree_client, feed, second)
    assert reply.status_code == 201
    result = reply.get_json()
    assert (result["new"], result["corrected"], result["unchanged"]) == (1, 1, 1)
    [correction] = result["corrections"]
    assert correction["indicator"] == RATE and correction["unit_id"] == b and correction["period"] == "2025-10"
    assert (correction["numerator"], correction["denominator"]) == (12, 20)
    previous = correction["previous"]
    assert previous["source"] == f"feed:{feed.system_id}" and previous["submission_id"] == first_id
    assert (previous["numerator"], previous["denominator"]) == (10, 20)
    # Re-posted later, it still answers what it did, even after a third batch moved the value on.
    third = {"batch_id": "m10-c", "items": [_item(RATE, b, "2025-10", 13, 20)]}
    assert _post(tree_client, feed, third).get_json()["corrected"] == 1
    replay = _post(tree_client, feed, second)
    assert replay.status_code == 200 and replay.get_json()["corrections"] == result["corrections"]
    # The first batch re-posted is still the first batch (its unchanged and superseded keys included).
    assert _post(tree_client, feed, first).status_code == 200

    with tree_app.app_context():
        session = db.session()
        versions = session.scalars(
            sa.select(IndicatorValue)
            .where(
                IndicatorValue.unit_id == b, IndicatorValue.period == "2025-10", IndicatorValue.denominator.isnot(None)
            )
            .order_by(IndicatorValue.id)
        ).all()
        assert [(float(v.numerator), v.is_current) for v in versions] == [(10, False), (12, False), (13, True)]
        assert versions[1].supersedes_id == versions[0].id and versions[2].supersedes_id == versions[1].id

    # Reading: the current value, and with history every version with its source.
    headers = feed.world.county_admin.headers
    query = {"indicator": RATE, "unit_id": b, "period": "2025-10"}
    current = tree_client.get("/api/supervision/values", query_string=query, headers=headers).get_json()
    assert [(v["numerator"], v["value"], v["is_current"]) for v in current["items"]] == [(13, 65.0, True)]
    history = tree_client.get(
        "/api/supervision/values", query_string=query | {"history": 1}, headers=headers
    ).get_json()
    assert [(v["numerator"], v["is_current"]) for v in history["items"]] == [(13, True), (12, False), (10, False)]
    assert {v["source"] for v in history["items"]} == {f"feed:{feed.system_id}"}
    every_period = tree_client.get(
        "/api/supervision/values", query_string={"indicator": RATE, "unit_id": b}, headers=headers
    ).get_json()
    assert [(v["period"], v["numerator"]) for v in every_period["items"]] == [("2025-10", 13)]
    # A clinician may not read; a unit outside the reader's scope is not there for them.
    assert (
        tree_client.get("/api/supervision/values", query_string=query, headers=feed.world.clinician.headers).status_code
        == 403
    )
    with tree_app.app_context():
        outside = _outside_institution(feed)
    reply = tree_client.get("/api/supervision/values", query_string=query | {"unit_id": outside}, headers=headers)
    assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "unit_id"
    reply = tree_client.get("/api/supervision/values", query_string=query | {"period": "2025-Q4"}, headers=headers)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "period"


def test_racing_posts_are_answered_without_a_500(tree_app, tree_client, feed, monkeypatch):
    """Two requests at once: the same batch (the loser is answered as a re-post), or two batches writing the same
    key (the one current row per key refuses the second: 409, nothing of it stored). The race is staged by hiding
    what the first request stored from the second's look-ups."""
    from supervision import feed as feed_module
    from supervision import values

    a, b = feed.units[:2]
    body = {"batch_id": "race", "items": [_item(RATE, a, "2025-10", 1, 2), _item(COUNT, b, "2025-10", 3)]}
    first = _post(tree_client, feed, body)
    assert first.status_code == 201
    before = _counts(tree_app)

    real_submission = feed_module._submission
    looked: list[str] = []

    def not_yet_there(session, source, batch_id):
        looked.append(batch_id)
        return None if len(looked) == 1 else real_submission(session, source, batch_id)

    monkeypatch.setattr(feed_module, "_submission", not_yet_there)
    again = _post(tree_client, feed, body)
    assert again.status_code == 200 and len(looked) == 2
    assert again.get_json() | {"replayed": None} == first.get_json() | {"replayed": None}
    monkeypatch.setattr(feed_module, "_submission", real_submission)

    monkeypatch.setattr(values, "current_values", lambda session, keys: {})
    other = {"batch_id": "race-2", "items": [_item(RATE, a, "2025-10", 2, 2)]}
    reply = _post(tree_client, feed, other)
    assert reply.status_code == 409 and reply.get_json()["error"]["code"] == "conflict"
    assert _counts(tree_app) == before


def _outside_institution(feed: Feed) -> int:
    session = db.session()
    county_path = session.get(OrgNode, feed.world.county_id).path
    return session.scalar(
        sa.select(OrgNode.id).where(
            OrgNode.level == "member_institution", sa.not_(OrgNode.path.startswith(county_path))
        )
    )


def test_every_bad_item_is_reported_and_nothing_is_stored(tree_app, tree_client, feed):
    a, b, c = feed.units[:3]
    with tree_app.app_context():
        session = db.session()
        outside = _outside_institution(feed)
        outside_dept = session.get(OrgNode, outside).dept_id
        gone = session.get(OrgNode, c)
        gone.deleted_at = utcnow()
        session.commit()
    future = f"{date.today().year + 1}-01"
    nan, inf = float("nan"), float("inf")
    good = _item(RATE, a, "2025-10", 1, 2)
    cases = [  # (item, the field its error names)
        (_item("NO-SUCH", a, "2025-10", 1, 2), "indicator"),
        (_item(OFF, a, "2025-10", 1, 2), "indicator"),
        (_item(RATE, 999999, "2025-10", 1, 2), "unit"),
        (_item(RATE, c, "2025-10", 1, 2), "unit"),  # deleted
        (_item(RATE, outside, "2025-10", 1, 2), "unit"),  # outside the system's subtree
        (_item(RATE, {"dept_id": outside_dept}, "2025-10", 1, 2), "unit"),
        (_item(RATE, {"code": "NO-SUCH-CODE"}, "2025-10", 1, 2), "unit"),
        (_item(RATE, feed.world.county_id, "2025-10", 1, 2), "unit"),  # a bureau for an institution indicator
        (_item(COUNTY_WIDE, a, "2025-10", 1, 2), "unit"),  # an institution for a county-wide one
        (_item(RATE, {"id": "12"}, "2025-10", 1, 2), "unit.id"),
        (_item(RATE, {"id": a, "code": "x"}, "2025-10", 1, 2), "unit"),
        (_item(RATE, a, "2025-13", 1, 2), "period"),
        (_item(RATE, a, "2025-Q3", 1, 2), "period"),  # a monthly indicator
        (_item(YEARLY, a, "2025-10", 1, 2), "period"),  # a yearly one
        (_item(RATE, a, future, 1, 2), "period"),
        (_item(RATE, a, "2025-07", "12", 20), "numerator"),
        (_item(RATE, a, "2025-07", True, 20), "numerator"),
        (_item(RATE, a, "2025-07", nan, 20), "numerator"),
        (_item(RATE, a, "2025-07", 1, inf), "denominator"),
        (_item(RATE, a, "2025-07", -1, 20), "numerator"),
        (_item(RATE, a, "2025-07", 1, -20), "denominator"),
        (_item(RATE, a, "2025-07", 0.00001, 20), "numerator"),  # finer than the columns keep
        (_item(RATE, a, "2025-06", 5), "denominator"),  # a rate without one
        (_item(COUNT, a, "2025-06", 5, 10), "denominator"),  # a count with one
        (_item(RATE, a, "2025-05", 21, 20), "numerator"),  # above the whole
        (_item(UNBOUNDED, a, "2025-05", 3, 0), "denominator"),  # something over nothing
        (_item(QUAL, a, "2024", 2, 1, verdict="达标"), "numerator"),
        (_item(QUAL, a, "2023", 1, 2, verdict="达标"), "denominator"),
        (_item(QUAL, b, "2024", 1, 1), "verdict"),
        (_item(COUNT, a, "2025-04", 5, verdict="达标"), "verdict"),
        (_item(RATE, a, "2025-10", 1, 2), ""),  # the same key as the good item: a repeat
        (dict(_item(RATE, a, "2025-03", 1, 2), denominater=2), "denominater"),
        ("not an object", ""),
    ]
    body = {"batch_id": "bad", "items": [good] + [item for item, _ in cases]}
    before = _counts(tree_app)
    reply = _post(tree_client, feed, body)
    assert reply.status_code == 422
    errors = reply.get_json()["errors"]
    assert reply.get_json()["error"]["code"] == "validation_error"
    by_index: dict[int, set[str]] = {}
    for error in errors:
        assert error["message"]
        by_index.setdefault(error["index"], set()).add(error["field"])
    assert 0 not in by_index  # the good item is not blamed
    for index, (_item_, field) in enumerate(cases, start=1):
        expected = f"items.{index}" + (f".{field}" if field else "")
        assert expected in by_index.get(index, set()), (index, _item_, by_index.get(index))
    assert set(by_index) == set(range(1, len(cases) + 1))
    assert _counts(tree_app) == before
    with tree_app.app_context():
        refused = db.session().scalar(
            sa.select(AuditRecord)
            .where(AuditRecord.action == "supervision.feed.batch")
            .where(AuditRecord.outcome == "failed")
        )
        assert refused.detail["errors"] == len(errors) and refused.actor == f"feed:{feed.system_id}"

    # Several problems of one item are all reported.
    reply = _post(tree_client, feed, {"batch_id": "bad2", "items": [_item("NO-SUCH", 999999, "2025-13", -1, "x")]})
    assert {e["field"] for e in reply.get_json()["errors"]} == {
        "items.0.indicator",
        "items.0.unit",
        "items.0.period",
        "items.0.numerator",
        "items.0.denominator",
    }
    # The batch's own shape.
    for body, field in (
        ({"items": [good]}, "batch_id"),
        ({"batch_id": "x", "items": []}, "items"),
        ({"batch_id": "x", "items": {}}, "items"),
        ({"batch_id": "x" * 101, "items": [good]}, "batch_id"),
        ([good], "body"),
    ):
        reply = _post(tree_client, feed, body)
        assert reply.status_code == 422 and reply.get_json()["errors"][0]["field"] == field, body
    reply = tree_client.post(
        "/api/supervision/feed", data=b"{not json", content_type="application/json", headers=feed.headers
    )
    assert reply.status_code == 400 and reply.get_json()["error"]["code"] == "bad_request"
    from supervision.feed import MAX_BODY

    reply = tree_client.post(
        "/api/supervision/feed", data=b" " * (MAX_BODY + 1), content_type="application/json", headers=feed.headers
    )
    assert reply.status_code == 413
    assert _counts(tree_app) == before


def test_a_unit_named_by_code_or_dingtalk_id_inside_the_subtree(tree_app, tree_client, feed):
    a, b = feed.units[:2]
    with tree_app.app_context():
        session = db.session()
        node_a, node_b = session.get(OrgNode, a), session.get(OrgNode, b)
        node_a.code = "12330122TESTCODE1"
        session.commit()
        dept_b = node_b.dept_id
    body = {
        "batch_id": "forms",
        "items": [
            _item(COUNT, {"code": "12330122TESTCODE1"}, "2025-10", 5),
            _item(COUNT, {"dept_id": dept_b}, "2025-10", 6),
        ],
    }
    assert _post(tree_client, feed, body).get_json()["new"] == 2
    with tree_app.app_context():
        stored = (
            db.session()
            .execute(sa.select(IndicatorValue.unit_id, IndicatorValue.numerator).order_by(IndicatorValue.unit_id))
            .all()
        )
        assert sorted((u, float(n)) for u, n in stored) == sorted([(a, 5.0), (b, 6.0)])


def test_a_batch_of_5000_items_and_its_recomputation(tree_app, tree_client, sup_world):
    """A province-wide system posts 5,000 items in one batch; the periods it changed are recomputed."""
    _make_indicators(tree_app)
    reply = _register(tree_client, sup_world.province_admin.headers, sup_world.province_id, "省统计直报")
    key = reply.get_json()["api_key"]
    headers = {"Authorization": f"Bearer {key}"}
    with tree_app.app_context():
        units = list(
            db.session().scalars(
                sa.select(OrgNode.id)
                .where(
                    OrgNode.level.in_(("medical_community_lead", "member_institution")), OrgNode.deleted_at.is_(None)
                )
                .order_by(OrgNode.id)
            )
        )
    items = []
    year, month = 2015, 1
    while len(items) < 5000:
        period = f"{year}-{month:02d}"
        for unit in units:
            items.append(_item(RATE, unit, period, unit % 7, 10))
            items.append(_item(COUNT, unit, period, unit * 3))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    items = items[:5000]
    before = _counts(tree_app)
    reply = _post(tree_client, None, {"batch_id": "big", "items": items}, headers=headers)
    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json()["new"] == 5000
    assert _counts(tree_app) == (before[0] + 5000, before[1] + 1)
    # One more than allowed is refused whole.
    reply = _post(tree_client, None, {"batch_id": "too-big", "items": [*items, items[0]]}, headers=headers)
    assert reply.status_code == 422 and reply.get_json()["errors"][0]["field"] == "items"

    # The re-post changes nothing and queues nothing new.
    assert _post(tree_client, None, {"batch_id": "big", "items": items}, headers=headers).status_code == 200
    run_jobs(tree_app)
    with tree_app.app_context():
        session = db.session()
        rollup = session.get(IndicatorRollup, (_indicator_id(session, COUNT), sup_world.province_id, "2015-01"))
        assert rollup is not None and float(rollup.numerator) == sum(unit * 3 for unit in units)


def _indicator_id(session, code: str) -> int:
    from supervision.models import Indicator

    return session.scalar(sa.select(Indicator.id).where(Indicator.code == code))
