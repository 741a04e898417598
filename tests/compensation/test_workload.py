"""Workload intake on both backends: a feed batch of counts and records becomes quantities with every excluded
unit and its reason; a replay changes nothing, a reused batch_id with other content is a conflict; a later batch
is a correction (version 2 current, version 1 kept); each bad input is a 422 naming `items.N.<field>` with nothing
stored; manual entry counts only once the county approves it on the card (sandbox); reads are scoped."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
import requests
import sqlalchemy as sa
from werkzeug.serving import make_server

from bot import cards as bot_cards
from bot.models import BotCard
from mini_apps.compensation.models import (
    EquivalentTable,
    EquivalentValue,
    ServiceItem,
    WorkloadBatch,
    WorkloadExclusion,
    WorkloadQuantity,
)
from org_sync.models import OrgMember, OrgMembership, OrgNode
from tests.conftest import run_jobs
from tests.support.auth import bearer, sign_in
from tests.support.sandbox import free_port
from workbench import db
from workbench.audit import AuditRecord
from workbench.auth.principal import INSTITUTION_LEVELS

API = "/api/compensation/workload"
GATE = ["sbp", "dbp", "next_visit"]


@dataclass
class WorkloadWorld:
    pc: object  # tests.precision_control.conftest.ControlWorld
    key: str  # the county's feed system's API key
    institution_id: int  # the clinician's institution
    neighbour_id: int  # another institution of the county, neither above nor below it
    other_institution_id: int  # an institution of the other county
    bureau_id: int  # a county bureau node (not an institution)

    @property
    def feed_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _seed_catalog(app, province_id: int) -> None:
    """Items and two published province tables: 2026-01 … 2026-09 without NEW-ITEM, 2026-10 on with it."""
    with app.app_context():
        session = db.session()
        items = {
            "OP-VISIT": ServiceItem(
                code="OP-VISIT", name="门诊诊疗", package="basic_medical", unit="人次", created_by="test"
            ),
            "HTN-FU": ServiceItem(
                code="HTN-FU",
                name="高血压随访",
                package="public_health",
                unit="人次",
                quality_rule={"required_fields": GATE},
                created_by="test",
            ),
            "CONTRACT": ServiceItem(
                code="CONTRACT", name="家庭医生签约", package="contract", unit="人年", created_by="test"
            ),
            "NEW-ITEM": ServiceItem(
                code="NEW-ITEM", name="新增项目", package="basic_medical", unit="次", created_by="t"
            ),
            "OLD-ITEM": ServiceItem(
                code="OLD-ITEM", name="停用项目", package="basic_medical", unit="次", active=False, created_by="t"
            ),
        }
        session.add_all(items.values())
        session.flush()
        first = EquivalentTable(
            region_node_id=province_id,
            version="2026A",
            name="2026 省当量表",
            valid_from=date(2026, 1, 1),
            valid_to=date(2026, 9, 30),
            state="published",
            created_by="test",
        )
        second = EquivalentTable(
            region_node_id=province_id,
            version="2026B",
            name="2026 省当量表（修订）",
            valid_from=date(2026, 10, 1),
            state="published",
            created_by="test",
        )
        session.add_all([first, second])
        session.flush()
        values = {"OP-VISIT": "1.0000", "HTN-FU": "1.7000", "CONTRACT": "3.0000", "OLD-ITEM": "1.0000"}
        for table, codes in ((first, values), (second, values | {"NEW-ITEM": "0.8000"})):
            session.add_all(
                EquivalentValue(table_id=table.id, item_id=items[code].id, tier=1, value=Decimal(value))
                for code, value in codes.items()
            )
        session.commit()


def _institution_of(app, userid: str, candidates: list[int]) -> tuple[int, int]:
    """The institution the member works in (the deepest one on their position's path: a member institution lies
    below its lead hospital) and a neighbour unrelated to it (neither above nor below)."""
    with app.app_context():
        session = db.session()
        paths = session.scalars(
            sa.select(OrgNode.path)
            .join(OrgMembership, OrgMembership.node_id == OrgNode.id)
            .join(OrgMember, OrgMember.id == OrgMembership.member_id)
            .where(OrgMember.userid == userid)
        ).all()
        nodes = dict(session.execute(sa.select(OrgNode.id, OrgNode.path).where(OrgNode.id.in_(candidates))).all())
    own = max((i for i, path in nodes.items() if any(p.startswith(path) for p in paths)), key=lambda i: len(nodes[i]))
    neighbour = next(
        i for i, path in nodes.items() if not path.startswith(nodes[own]) and not nodes[own].startswith(path)
    )
    return own, neighbour


@pytest.fixture
def world(tree_app, tree_client, pc_world) -> WorkloadWorld:
    _seed_catalog(tree_app, pc_world.province_id)
    made = tree_client.post(
        "/api/supervision/feed-systems",
        json={"name": "县 HIS", "node_id": pc_world.county_id},
        headers=pc_world.county_admin.headers,
    )
    assert made.status_code == 201, made.get_json()
    with tree_app.app_context():
        session = db.session()
        other_path = session.get(OrgNode, pc_world.other_county_id).path
        other = session.scalar(
            sa.select(OrgNode.id)
            .where(OrgNode.path.startswith(other_path), OrgNode.level.in_(INSTITUTION_LEVELS))
            .order_by(OrgNode.id)
        )
    own, neighbour = _institution_of(tree_app, pc_world.clinician.userid, pc_world.institution_ids)
    return WorkloadWorld(
        pc=pc_world,
        key=made.get_json()["api_key"],
        institution_id=own,
        neighbour_id=neighbour,
        other_institution_id=other,
        bureau_id=pc_world.county_id,
    )


def _dept_id(app, institution_id: int) -> int:
    with app.app_context():
        return db.session().get(OrgNode, institution_id).dept_id


def _counts(app) -> tuple[int, int, int]:
    with app.app_context():
        session = db.session()
        return tuple(
            session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in (WorkloadBatch, WorkloadQuantity, WorkloadExclusion)
        )


def _post(client, world: WorkloadWorld, batch_id: str, items: list[dict]):
    return client.post(f"{API}/feed", json={"batch_id": batch_id, "items": items}, headers=world.feed_headers)


def _count(world: WorkloadWorld, item: str, quantity, period: str = "2026-10", **extra) -> dict:
    return {"institution": {"id": world.institution_id}, "period": period, "item": item, "quantity": quantity} | extra


def _records(world: WorkloadWorld, records: list[dict], period: str = "2026-10", **extra) -> dict:
    return {"institution": {"id": world.institution_id}, "period": period, "item": "HTN-FU", "records": records} | extra


FULL = {"sbp": 135, "dbp": 85, "next_visit": "2026-11-20"}


def _quantities(client, person, **query) -> list[dict]:
    reply = client.get(f"{API}/", query_string=query, headers=person.headers)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()["items"]


# -- the feed ---------------------------------------------------------------------------------------------------


def test_a_batch_of_counts_and_records_becomes_quantities_with_exclusions_and_reasons(
    tree_app, tree_client, world: WorkloadWorld
):
    doctor = world.pc.clinician.userid
    items = [
        _count(world, "OP-VISIT", 1200),
        _count(world, "OP-VISIT", 310, doctor=doctor),
        _count(world, "CONTRACT", 45.5) | {"institution": {"dept_id": _dept_id(tree_app, world.institution_id)}},
        _records(
            world,
            [
                {"id": "F-1", "fields": FULL},
                {"id": "F-2", "fields": FULL | {"dbp": None}},  # None counts as missing
                {"id": "F-3", "fields": {"sbp": 140, "dbp": "", "next_visit": " "}},  # so do "" and blanks
                {"id": 4, "fields": FULL | {"note": "额外字段不影响"}},
            ],
        ),
    ]
    reply = _post(tree_client, world, "his-2026-10-a", items)
    assert reply.status_code == 201, reply.get_json()
    result = reply.get_json()
    assert (result["items"], result["new"], result["corrected"], result["unchanged"]) == (4, 4, 0, 0)
    assert result["excluded"] == 2

    rows = _quantities(tree_client, world.pc.county_admin, institution_id=world.institution_id, period="2026-10")
    by_key = {(r["item"]["code"], r["doctor"]["userid"] if r["doctor"] else None): r for r in rows}
    assert set(by_key) == {("OP-VISIT", None), ("OP-VISIT", doctor), ("CONTRACT", None), ("HTN-FU", None)}
    assert (by_key[("OP-VISIT", None)]["qty_raw"], by_key[("OP-VISIT", None)]["qty_verified"]) == ("1200.00", "1200.00")
    assert by_key[("OP-VISIT", doctor)]["qty_verified"] == "310.00"
    assert by_key[("CONTRACT", None)]["qty_verified"] == "45.50"
    htn = by_key[("HTN-FU", None)]
    assert (htn["qty_raw"], htn["qty_verified"], htn["excluded"]) == ("4.00", "2.00", 2)
    assert htn["version"] == 1 and htn["is_current"] and htn["source"] == "feed"

    excluded = tree_client.get(f"{API}/quantities/{htn['id']}/exclusions", headers=world.pc.county_admin.headers)
    assert excluded.status_code == 200, excluded.get_json()
    reasons = {e["record_ref"]: (e["rule"], e["reason"], e["units"]) for e in excluded.get_json()["items"]}
    assert reasons == {
        "F-2": ("required_fields", "缺少必填项：dbp", "1.00"),
        "F-3": ("required_fields", "缺少必填项：dbp、next_visit", "1.00"),
    }
    with tree_app.app_context():
        actions = db.session().scalars(sa.select(AuditRecord.action).where(AuditRecord.outcome == "ok")).all()
    assert "compensation.workload.feed" in actions


def test_the_same_batch_again_is_a_replay_and_other_content_a_conflict(tree_app, tree_client, world: WorkloadWorld):
    items = [_count(world, "OP-VISIT", 100), _records(world, [{"id": "a", "fields": FULL}, {"id": "b", "fields": {}}])]
    first = _post(tree_client, world, "b-1", items)
    assert first.status_code == 201, first.get_json()
    before = _counts(tree_app)
    # The same content, numbers written differently (100 and 100.0 are one quantity): a replay.
    again = _post(tree_client, world, "b-1", [_count(world, "OP-VISIT", 100.0), items[1]])
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["replayed"] is True
    assert {k: again.get_json()[k] for k in ("id", "new", "excluded")} == {
        k: first.get_json()[k] for k in ("id", "new", "excluded")
    }
    assert _counts(tree_app) == before
    conflict = _post(tree_client, world, "b-1", [_count(world, "OP-VISIT", 101), items[1]])
    assert conflict.status_code == 409 and conflict.get_json()["error"]["field"] == "batch_id"
    assert _counts(tree_app) == before


def test_a_later_batch_corrects_as_a_new_version_and_the_history_keeps_both(
    tree_app, tree_client, world: WorkloadWorld
):
    admin = world.pc.county_admin
    assert (
        _post(tree_client, world, "m-1", [_count(world, "OP-VISIT", 100), _count(world, "CONTRACT", 10)]).status_code
        == 201
    )
    [v1] = _quantities(tree_client, admin, institution_id=world.institution_id, item="OP-VISIT")
    # OP-VISIT corrected, CONTRACT resent unchanged, HTN-FU new.
    corrected = _post(
        tree_client,
        world,
        "m-2",
        [
            _count(world, "OP-VISIT", 120),
            _count(world, "CONTRACT", 10),
            _records(world, [{"id": "r", "fields": {"sbp": 1}}]),
        ],
    )
    assert corrected.status_code == 201, corrected.get_json()
    result = corrected.get_json()
    assert (result["new"], result["corrected"], result["unchanged"]) == (1, 1, 1)
    [correction] = result["corrections"]
    assert correction["previous"]["quantity_id"] == v1["id"] and correction["previous"]["qty_verified"] == "100.00"
    assert correction["qty_verified"] == "120.00" and correction["version"] == 2

    [v2] = _quantities(tree_client, admin, institution_id=world.institution_id, item="OP-VISIT")
    assert (v2["version"], v2["qty_verified"], v2["supersedes_id"]) == (2, "120.00", v1["id"])
    [contract] = _quantities(tree_client, admin, institution_id=world.institution_id, item="CONTRACT")
    assert contract["version"] == 1  # unchanged: no new version
    for quantity_id in (v1["id"], v2["id"]):
        history = tree_client.get(f"{API}/quantities/{quantity_id}/history", headers=admin.headers)
        assert history.status_code == 200
        versions = history.get_json()["items"]
        assert [(h["version"], h["qty_verified"], h["is_current"]) for h in versions] == [
            (1, "100.00", False),
            (2, "120.00", True),
        ]
    # A gated item corrected: the new version carries its own exclusions, the old version keeps its own.
    [htn1] = _quantities(tree_client, admin, institution_id=world.institution_id, item="HTN-FU")
    assert _post(tree_client, world, "m-3", [_records(world, [{"id": "r", "fields": FULL}])]).status_code == 201
    [htn2] = _quantities(tree_client, admin, institution_id=world.institution_id, item="HTN-FU")
    assert (htn2["version"], htn2["qty_verified"], htn2["excluded"]) == (2, "1.00", 0)
    old = tree_client.get(f"{API}/quantities/{htn1['id']}/exclusions", headers=admin.headers).get_json()
    assert [e["reason"] for e in old["items"]] == ["缺少必填项：dbp、next_visit"]
    with tree_app.app_context():
        session = db.session()
        current = session.scalar(
            sa.select(sa.func.count()).where(
                WorkloadQuantity.is_current.is_(True),
                WorkloadQuantity.item_id.in_(sa.select(ServiceItem.id).where(ServiceItem.code == "OP-VISIT")),
            )
        )
    assert current == 1


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (lambda w: _count(w, "OP-VISIT", -1), "items.1.quantity"),
        (lambda w: _count(w, "OP-VISIT", "12"), "items.1.quantity"),
        (lambda w: _count(w, "OP-VISIT", 1.234), "items.1.quantity"),
        (lambda w: _count(w, "NEW-ITEM", 5, period="2026-09"), "items.1.item"),  # not in September's table
        (lambda w: _count(w, "NOPE", 5), "items.1.item"),
        (lambda w: _count(w, "OLD-ITEM", 5), "items.1.item"),
        (lambda w: _count(w, "HTN-FU", 5), "items.1.quantity"),  # a gated item sent as a count
        (lambda w: _records(w, [{"id": "x", "fields": FULL}]) | {"item": "OP-VISIT"}, "items.1.records"),
        (lambda w: _count(w, "OP-VISIT", 5, period="2099-01"), "items.1.period"),
        (lambda w: _count(w, "OP-VISIT", 5, period="2026-13"), "items.1.period"),
        (lambda w: _count(w, "OP-VISIT", 5) | {"institution": {"id": w.other_institution_id}}, "items.1.institution"),
        (lambda w: _count(w, "OP-VISIT", 5) | {"institution": {"id": w.bureau_id}}, "items.1.institution"),
        (lambda w: _count(w, "OP-VISIT", 5, doctor="nobody-here"), "items.1.doctor"),
        (lambda w: _count(w, "OP-VISIT", 5, doctor=w.pc.county_admin.userid), "items.1.doctor"),  # not there
        (lambda w: _count(w, "CONTRACT", 7), "items.1.item"),  # the same key as item 0
        (lambda w: _records(w, [{"id": "x", "fields": FULL}, {"id": "x", "fields": FULL}]), "items.1.records.1.id"),
    ],
)
def test_bad_input_is_422_naming_the_item_field_and_nothing_is_stored(tree_app, tree_client, world, bad, field):
    before = _counts(tree_app)
    reply = _post(tree_client, world, "bad", [_count(world, "CONTRACT", 3), bad(world)])
    assert reply.status_code == 422, reply.get_json()
    body = reply.get_json()
    assert body["error"]["field"] == field, body
    assert field in {e["field"] for e in body["errors"]}
    assert _counts(tree_app) == before


def test_nan_and_oversized_batches_are_refused(tree_app, tree_client, world: WorkloadWorld):
    before = _counts(tree_app)
    raw = (
        f'{{"batch_id": "nan", "items": [{{"institution": {{"id": {world.institution_id}}}, "period": "2026-10", '
        '"item": "OP-VISIT", "quantity": NaN}]}'
    )
    reply = tree_client.post(f"{API}/feed", data=raw, headers=world.feed_headers | {"Content-Type": "application/json"})
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "items.0.quantity"
    many = [_count(world, "OP-VISIT", 1, period=f"20{10 + i // 12:02d}-{i % 12 + 1:02d}") for i in range(5001)]
    reply = _post(tree_client, world, "many", many)
    assert reply.status_code == 422 and reply.get_json()["error"]["field"] == "items"
    assert _counts(tree_app) == before
    assert tree_client.post(f"{API}/feed", json={"batch_id": "x", "items": []}).status_code == 401


def test_an_item_of_the_new_table_counts_from_the_period_the_table_starts(tree_client, world: WorkloadWorld):
    reply = _post(tree_client, world, "new", [_count(world, "NEW-ITEM", 9, period="2026-10")])
    assert reply.status_code == 201, reply.get_json()


# -- manual entry with approval ---------------------------------------------------------------------------------


@pytest.fixture
def served(tree_app) -> Iterator[str]:
    """The workbench on a real port with the card callback registered, so sandbox clicks reach it."""
    port = free_port()
    server = make_server("127.0.0.1", port, tree_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tree_app.app_context():
        bot_cards.register_callback(f"http://127.0.0.1:{port}/bot/card/callback")
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def _click(app, sandbox, entry: dict, action: str) -> str:
    """The first approver taps 同意/拒绝 on their card in the sandbox; then the callback runs. Their userid."""
    run_jobs(app)  # deliver the cards
    userid = entry["approval"]["approvers"][0]
    with app.app_context():
        track = db.session().scalar(
            sa.select(BotCard.out_track_id).where(
                BotCard.out_track_id.like(f"bot-approval:{entry['approval']['id']}:0:%")
            )
        )
    reply = sandbox.admin("POST", f"cards/{track}/click", json={"userid": userid, "action_id": action})
    assert reply.status_code == 200, reply.text
    assert "apply_error" not in reply.json(), reply.json()
    run_jobs(app)  # the approval's callback
    return userid


def _manual(client, person, institution_id: int, lines: list[dict], period: str = "2026-10", **extra):
    return client.post(
        f"{API}/manual",
        json={"institution_id": institution_id, "period": period, "lines": lines, **extra},
        headers=person.headers,
    )


def test_a_manual_entry_counts_only_once_the_county_approves_it(
    tree_app, tree_client, sandbox, world: WorkloadWorld, served
):
    admin = world.pc.county_admin
    created = _manual(
        tree_client,
        admin,
        world.institution_id,
        [
            {"item": "OP-VISIT", "quantity": 80},
            {"item": "CONTRACT", "quantity": 2.5, "doctor": world.pc.clinician.userid},
        ],
        note="HIS 故障期间手工统计",
    )
    assert created.status_code == 201, created.get_json()
    entry = created.get_json()
    assert entry["state"] == "pending" and entry["approval"]["approvers"]
    assert [line["quantity"] for line in entry["lines"]] == ["80.00", "2.50"]
    assert _quantities(tree_client, admin, institution_id=world.institution_id) == []  # nothing counts yet

    approver = _click(tree_app, sandbox, entry, "approval.agree")
    done = tree_client.get(f"{API}/manual/{entry['id']}", headers=admin.headers).get_json()
    assert done["state"] == "applied" and done["decided_by"] == approver and done["reason"] is None
    rows = _quantities(tree_client, admin, institution_id=world.institution_id)
    assert sorted((r["item"]["code"], r["qty_verified"], r["source"]) for r in rows) == [
        ("CONTRACT", "2.50", "manual"),
        ("OP-VISIT", "80.00", "manual"),
    ]
    # A manual entry corrects a feed's figure through the same versioning.
    assert _post(tree_client, world, "after", [_count(world, "OP-VISIT", 90)]).status_code == 201
    [op] = _quantities(tree_client, admin, institution_id=world.institution_id, item="OP-VISIT")
    assert (op["version"], op["qty_verified"], op["source"]) == (2, "90.00", "feed")


def test_a_refused_manual_entry_counts_nothing_and_keeps_the_reason(
    tree_app, tree_client, sandbox, world: WorkloadWorld, served
):
    admin = world.pc.county_admin
    created = _manual(tree_client, admin, world.institution_id, [{"item": "OP-VISIT", "quantity": 80}])
    assert created.status_code == 201, created.get_json()
    before = _counts(tree_app)
    approver = _click(tree_app, sandbox, created.get_json(), "approval.refuse")
    done = tree_client.get(f"{API}/manual/{created.get_json()['id']}", headers=admin.headers).get_json()
    assert done["state"] == "refused" and approver in done["reason"] and done["decided_at"]
    assert _quantities(tree_client, admin, institution_id=world.institution_id) == []
    assert _counts(tree_app)[1:] == before[1:]


def test_manual_entry_checks_its_lines_and_who_may_enter(tree_app, tree_client, world: WorkloadWorld):
    admin = world.pc.county_admin
    before = _counts(tree_app)
    bad = _manual(
        tree_client,
        admin,
        world.institution_id,
        [{"item": "OP-VISIT", "quantity": 1}, {"item": "HTN-FU", "quantity": 3}, {"item": "OP-VISIT", "quantity": -2}],
    )
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.get_json()["error"]["errors"]}
    assert {"lines.1.quantity", "lines.2.quantity"} <= fields
    future = _manual(tree_client, admin, world.institution_id, [{"item": "OP-VISIT", "quantity": 1}], period="2099-01")
    assert future.status_code == 422 and future.get_json()["error"]["field"] == "period"
    assert (
        _manual(
            tree_client, world.pc.other_county_admin, world.institution_id, [{"item": "OP-VISIT", "quantity": 1}]
        ).status_code
        == 404
    )
    assert (
        _manual(
            tree_client, world.pc.clinician, world.institution_id, [{"item": "OP-VISIT", "quantity": 1}]
        ).status_code
        == 403
    )
    assert _counts(tree_app) == before


def test_an_institution_admin_enters_for_their_own_institution(tree_app, tree_client, sandbox, world: WorkloadWorld):
    granted = tree_client.post(
        "/api/auth/grants",
        json={"userid": world.pc.clinician.userid, "role": "institution_admin", "node_id": world.institution_id},
        headers=world.pc.county_admin.headers,
    )
    assert granted.status_code == 201, granted.get_json()
    clinician = bearer(sign_in(tree_client, sandbox, world.pc.clinician.userid))
    reply = tree_client.post(
        f"{API}/manual",
        json={
            "institution_id": world.institution_id,
            "period": "2026-10",
            "lines": [{"item": "OP-VISIT", "quantity": 5}],
        },
        headers=clinician,
    )
    assert reply.status_code == 201, reply.get_json()
    assert world.pc.clinician.userid not in reply.get_json()["approval"]["approvers"]
    reply = tree_client.post(
        f"{API}/manual",
        json={
            "institution_id": world.neighbour_id,
            "period": "2026-10",
            "lines": [{"item": "OP-VISIT", "quantity": 5}],
        },
        headers=clinician,
    )
    assert reply.status_code == 404 and reply.get_json()["error"]["field"] == "institution_id"


# -- reads --------------------------------------------------------------------------------------------------------


def test_reads_are_scoped(tree_app, tree_client, sandbox, world: WorkloadWorld):
    assert _post(tree_client, world, "s-1", [_records(world, [{"id": "x", "fields": {}}])]).status_code == 201
    [row] = _quantities(tree_client, world.pc.county_admin)
    assert _quantities(tree_client, world.pc.province_admin, institution_id=world.institution_id)[0]["id"] == row["id"]
    other = world.pc.other_county_admin.headers
    assert (
        tree_client.get(f"{API}/", query_string={"institution_id": world.institution_id}, headers=other).status_code
        == 404
    )
    assert _quantities(tree_client, world.pc.other_county_admin) == []
    assert tree_client.get(f"{API}/quantities/{row['id']}/history", headers=other).status_code == 404
    assert tree_client.get(f"{API}/quantities/{row['id']}/exclusions", headers=other).status_code == 404
    assert tree_client.get(f"{API}/", headers=world.pc.clinician.headers).status_code == 403
    # An institution administrator reads their own institution, not a neighbour's.
    granted = tree_client.post(
        "/api/auth/grants",
        json={"userid": world.pc.clinician.userid, "role": "institution_admin", "node_id": world.institution_id},
        headers=world.pc.county_admin.headers,
    )
    assert granted.status_code == 201, granted.get_json()
    own = bearer(sign_in(tree_client, sandbox, world.pc.clinician.userid))
    reply = tree_client.get(f"{API}/", query_string={"institution_id": world.institution_id}, headers=own)
    assert reply.status_code == 200 and [r["id"] for r in reply.get_json()["items"]] == [row["id"]]
    assert (
        tree_client.get(f"{API}/", query_string={"institution_id": world.neighbour_id}, headers=own).status_code == 404
    )
    excluded = tree_client.get(f"{API}/quantities/{row['id']}/exclusions", headers=own).get_json()["items"]
    assert excluded[0]["reason"] == "缺少必填项：sbp、dbp、next_visit"


# -- concurrent corrections -------------------------------------------------------------------------------------


def test_concurrent_corrections_of_one_quantity_leave_one_current_version_and_an_unbroken_chain(
    tree_app, world: WorkloadWorld, served
):
    """Batches correcting the same quantity at once (a real server, one thread each): every one is recorded,
    versions 1 … n each supersede the one before, exactly one is current. A sender retries what the database
    could not take at that moment (SQLite refuses a write on a stale snapshot rather than wait)."""

    def send(n: int) -> int:
        body = {"batch_id": f"race-{n}", "items": [_count(world, "OP-VISIT", 100 + n)]}
        for _attempt in range(20):
            reply = requests.post(f"{served}{API}/feed", json=body, headers=world.feed_headers, timeout=60)
            if reply.status_code in (200, 201):
                return reply.status_code
        return reply.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(send, range(6)))
    assert set(statuses) <= {200, 201}, statuses
    with tree_app.app_context():
        rows = (
            db.session()
            .execute(
                sa.select(
                    WorkloadQuantity.id,
                    WorkloadQuantity.version,
                    WorkloadQuantity.supersedes_id,
                    WorkloadQuantity.is_current,
                ).order_by(WorkloadQuantity.version)
            )
            .all()
        )
    assert [row.version for row in rows] == [1, 2, 3, 4, 5, 6]
    assert [row.supersedes_id for row in rows] == [None] + [row.id for row in rows[:-1]]
    assert [row.is_current for row in rows] == [False] * 5 + [True]
