"""Incremental sync end to end: a real sandbox changes its contacts and pushes the events over HTTP (real crypto)
to the app served on loopback; the handlers re-fetch through the gateway and the tree equals the truth again.
On both backends: SQLite with in-process jobs, PostgreSQL with RQ."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from config import load_settings
from org_sync import events as org_events
from org_sync.classify import classify
from org_sync.full_sync import run_full_sync
from org_sync.models import OrgChange, OrgMember, OrgMembership, OrgNode
from tests.conftest import migrate, run_jobs
from tests.org_sync.truth import assert_tree_matches_truth, tree_differences
from tests.support.sandbox import ROOT, SandboxProcess, free_port
from workbench import close_app, create_app, db
from workbench.dingtalk.events import DingTalkEvent, Event, handle_event, ingest
from workbench.dingtalk.stream import event_from_stream


def event_rows(app) -> list[DingTalkEvent]:
    with app.app_context():
        rows = db.session().scalars(sa.select(DingTalkEvent).order_by(DingTalkEvent.id)).all()
        db.session().close()
        return rows


def change_count(app) -> int:
    with app.app_context():
        return db.session().scalar(sa.select(sa.func.count()).select_from(OrgChange))


def assert_levels_as_if_classified_afresh(app, sandbox: SandboxProcess) -> None:
    """After moves and renames every live node has exactly the level a fresh classification of the current tree
    gives it (parents first): subtrees were reclassified where their parent's level or their depth changed."""
    departments = sandbox.admin("GET", "truth", params={"only": "departments"}).json()["departments"]
    children: dict[int | None, list[dict]] = {}
    for d in departments:
        children.setdefault(d.get("parent_id"), []).append(d)
    expected: dict[int, str] = {}
    stack = [(d, None, 0) for d in children[None]]
    while stack:
        dept, parent_level, depth = stack.pop()
        level = classify(dept["name"], dept.get("code"), parent_level, depth).level
        expected[dept["dept_id"]] = level
        stack += [(child, level, depth + 1) for child in children.get(dept["dept_id"], [])]
    with app.app_context():
        stored = dict(
            db.session().execute(sa.select(OrgNode.dept_id, OrgNode.level).where(OrgNode.deleted_at.is_(None))).all()
        )
    assert stored == expected


def assert_paths_follow_parents(app) -> None:
    """Every node's materialised path and depth agree with its parent's, after any moves."""
    with app.app_context():
        nodes = {n.id: n for n in db.session().scalars(sa.select(OrgNode))}
    for node in nodes.values():
        parent = nodes.get(node.parent_id)
        assert node.path == (parent.path if parent else "/") + f"{node.id}/", node.dept_id
        assert node.depth == (parent.depth + 1 if parent else 0), node.dept_id


def seed(app, sandbox: SandboxProcess) -> None:
    """Start from the tree a full sync leaves."""
    with app.app_context():
        assert run_full_sync().state == "succeeded"
    assert_tree_matches_truth(app, sandbox)


def settle(app, expected_events: int) -> list[DingTalkEvent]:
    """Run the queued handlers and check every event was recorded and handled."""
    run_jobs(app)
    rows = event_rows(app)
    assert len(rows) == expected_events
    failed = [(r.event_type, r.last_error) for r in rows if r.state != "handled"]
    assert not failed, failed[:5]
    return rows


def served_app(app_env: dict[str, str], sandbox: SandboxProcess, web_port: int):
    settings = load_settings({**app_env, "SANDBOX_PORT": str(sandbox.port)}, read_dotenv=False)
    migrate(settings.database_url)
    app = create_app(settings)
    server = make_server("127.0.0.1", web_port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return app, server


@pytest.fixture
def pushing(app_env) -> Iterator[tuple]:
    """A private sandbox (small province) pushing its events over HTTP to the app served on loopback."""
    web_port = free_port()
    sandbox = SandboxProcess(
        "--scale", "small", "--seed", "3", "--events", "http",
        "--callback-url", f"http://127.0.0.1:{web_port}/dingtalk/callback",
    )  # fmt: skip
    with sandbox:
        app, server = served_app(app_env, sandbox, web_port)
        yield app, sandbox
        server.shutdown()
        close_app(app)


@contextmanager
def silent_sandbox(app_env: dict[str, str], *args: str) -> Iterator[tuple]:
    """A private sandbox whose events reach nobody (no callback, no Stream): the test delivers them itself."""
    with SandboxProcess("--scale", "small", "--events", "http", "--retry-delays", "", "--qps", "200", *args) as sandbox:
        env = {**app_env, "SANDBOX_PORT": str(sandbox.port), "DINGTALK_QPS": "200"}  # correctness here, not pacing
        settings = load_settings(env, read_dotenv=False)
        migrate(settings.database_url)
        app = create_app(settings)
        yield app, sandbox
        close_app(app)


@pytest.fixture
def silent(app_env) -> Iterator[tuple]:
    with silent_sandbox(app_env, "--seed", "4") as pair:
        yield pair


def deliver(app, events: list[dict]) -> None:
    """Ingest the events a `POST /_sandbox/changes` reported, as the ingress would have."""
    with app.app_context():
        for e in events:
            data = {"deptId": e["dept_ids"]} if e["event_type"].startswith("org_dept") else {"userId": e["user_ids"]}
            ingest(Event(e["eventId"], e["event_type"], None, None, data, "http"))


def test_three_hundred_changes_by_http_push_leave_the_tree_exact(pushing):
    app, sandbox = pushing
    seed(app, sandbox)
    reply = sandbox.admin("POST", "changes", json={"count": 300, "seed": 2026})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["delivered"] == body["count"] >= 300
    kinds = {e["event_type"] for e in body["events"]}
    assert {"user_add_org", "user_leave_org", "user_modify_org", "user_dept_change"} <= kinds
    assert {"org_dept_create", "org_dept_modify", "org_dept_remove"} <= kinds

    started = time.monotonic()
    rows = settle(app, body["count"])
    print(f"{body['count']} events applied in {time.monotonic() - started:.1f}s after delivery")
    assert {r.channel for r in rows} == {"http"}
    assert_tree_matches_truth(app, sandbox)
    assert_levels_as_if_classified_afresh(app, sandbox)
    with app.app_context():
        # Every change is logged against the event that caused it.
        logged = set(db.session().scalars(sa.select(OrgChange.event_id).distinct()))
        assert len(logged & {e["eventId"] for e in body["events"]}) > body["count"] * 0.8
    assert_paths_follow_parents(app)

    # A second round on top of the first: still exact.
    reply = sandbox.admin("POST", "changes", json={"count": 120, "seed": 7})
    total = body["count"] + reply.json()["count"]
    settle(app, total)
    assert_tree_matches_truth(app, sandbox)


def test_events_in_reverse_order_converge(silent):
    """Every event of 150 changes, delivered last-first: people join departments whose org_dept_create has not
    arrived, departments move under parents not created yet, removals come before the moves out."""
    app, sandbox = silent
    seed(app, sandbox)
    reply = sandbox.admin("POST", "changes", json={"count": 150, "seed": 99}).json()
    assert reply["delivered"] == 0  # nobody listening: the test delivers
    assert tree_differences(app, sandbox)  # the changes are real

    # The out-of-order case really happens: a user event whose user ends up in a department created earlier in
    # the batch is now applied before that department's org_dept_create.
    final = {u["userid"]: set(u["dept_id_list"]) for u in sandbox.admin("GET", "truth").json()["users"]}
    created_at = {
        d: i for i, e in enumerate(reply["events"]) if e["event_type"] == "org_dept_create" for d in e["dept_ids"]
    }
    early = [
        e["eventId"]
        for j, e in enumerate(reply["events"])
        if e["event_type"] in ("user_add_org", "user_dept_change")
        for u in e["user_ids"]
        if any(created_at.get(d, j) < j for d in final.get(u, ()))
    ]
    assert early
    deliver(app, list(reversed(reply["events"])))
    settle(app, reply["count"])
    assert_tree_matches_truth(app, sandbox)
    assert_levels_as_if_classified_afresh(app, sandbox)


def test_a_user_whose_departments_are_unknown_fetches_them_and_their_ancestors(silent):
    """user_add_org into an empty tree: the member's departments and every ancestor up to the root are fetched."""
    app, sandbox = silent
    truth = sandbox.admin("GET", "truth").json()
    depts = {d["dept_id"]: d for d in truth["departments"]}
    user = max(truth["users"], key=lambda u: len(u["dept_id_list"]))
    with app.app_context():
        ingest(Event("e-early", "user_add_org", None, None, {"userId": [user["userid"]]}, "http"))
    settle(app, 1)
    expected: set[int] = set()
    for dept_id in user["dept_id_list"]:
        while dept_id is not None:
            expected.add(dept_id)
            dept_id = depts[dept_id].get("parent_id")
    with app.app_context():
        session = db.session()
        stored = {n.dept_id: n for n in session.scalars(sa.select(OrgNode))}
        assert set(stored) == expected
        assert all(stored[d].name == depts[d]["name"] for d in expected)
        member = session.scalar(sa.select(OrgMember).where(OrgMember.userid == user["userid"]))
        positions = session.scalars(
            sa.select(OrgNode.dept_id).join(OrgMembership).where(OrgMembership.member_id == member.id)
        ).all()
        assert sorted(positions) == sorted(user["dept_id_list"])
        before = session.scalar(sa.select(sa.func.count()).select_from(OrgChange))
        # The department's own (late) org_dept_create then changes nothing.
        ingest(Event("e-late", "org_dept_create", None, None, {"deptId": [user["dept_id_list"][0]]}, "http"))
    settle(app, 2)
    assert change_count(app) == before


def test_the_three_payload_casings(pushing):
    """HTTP push flat (`userId`), legacy (`UserId`/`DeptId`, `OptStaffId`, `TimeStamp`), and the Stream shape."""
    app, sandbox = pushing
    truth = sandbox.admin("GET", "truth").json()
    users = [u["userid"] for u in truth["users"][:3]]
    leaf = next(d for d in truth["departments"] if d.get("parent_id") and d["dept_id"] not in {1})
    flat = {"userId": [users[0]], "timeStamp": "1700000000000"}
    legacy = {"UserId": [users[1]], "TimeStamp": "1700000000000", "OptStaffId": "manager01"}
    legacy_dept = {"DeptId": [leaf["dept_id"]], "TimeStamp": "1700000000000"}
    for event_type, data in (("user_add_org", flat), ("user_modify_org", legacy), ("org_dept_modify", legacy_dept)):
        reply = sandbox.admin("POST", "events", json={"event_type": event_type, "data": data})
        assert reply.json()["delivery"]["outcome"] == "delivered", reply.text
    headers = SimpleNamespace(
        event_id="stream-1", event_type="user_active_org", event_corp_id=truth["corp_id"], event_born_time="1700000000"
    )
    with app.app_context():
        ingest(event_from_stream(headers, {"timeStamp": "1700000000000", "userId": [users[2]]}))
    rows = settle(app, 4)
    assert {r.channel for r in rows} == {"http", "stream"}
    with app.app_context():
        session = db.session()
        stored = set(session.scalars(sa.select(OrgMember.userid)))
        assert stored == set(users)
        assert session.scalar(sa.select(OrgNode).where(OrgNode.dept_id == leaf["dept_id"])) is not None


def test_handlers_accept_raw_legacy_keys(app, sandbox):
    """Defensive: data that was not normalised (`UserId`, `DeptId`, a single id) still names its entities."""
    truth = sandbox.admin("GET", "truth").json()
    userid = truth["users"][0]["userid"]
    dept_id = truth["departments"][5]["dept_id"]
    with app.app_context():
        org_events.on_user_event(Event("x1", "user_add_org", truth["corp_id"], None, {"UserId": userid}))
        org_events.on_department_event(Event("x2", "org_dept_create", None, None, {"DeptId": [str(dept_id)]}))
        session = db.session()
        assert session.scalar(sa.select(OrgMember.corp_id).where(OrgMember.userid == userid)) == truth["corp_id"]
        assert session.scalar(sa.select(OrgNode.corp_id).where(OrgNode.dept_id == dept_id)) == truth["corp_id"]
    assert org_events.event_ids({"userId": ["a", "b", "a"], "UserId": "c"}, "userId", "UserId") == ["a", "b", "c"]


def test_redelivered_and_repeated_events_apply_once(pushing):
    app, sandbox = pushing
    seed(app, sandbox)
    body = sandbox.admin("POST", "changes", json={"count": 60, "seed": 5}).json()
    rows = settle(app, body["count"])
    assert_tree_matches_truth(app, sandbox)
    applied = change_count(app)
    with app.app_context():
        # A redelivery (same event id) is recorded once and not handled again.
        first = rows[0]
        again = Event(first.event_id, first.event_type, first.corp_id, first.born_at, first.data, "http")
        assert ingest(again) is False
        # Handlers re-run on every event (a retried job) change nothing.
        for row in rows:
            db.session().get(DingTalkEvent, row.id).state = "received"
        db.session().commit()
        for row in rows:
            handle_event(row.id)
        # And the same changes announced again under new ids (at-least-once on legacy channels) neither.
        for row in rows:
            ingest(Event(f"again-{row.event_id}", row.event_type, row.corp_id, None, row.data, "http"))
    settle(app, 2 * body["count"])
    assert change_count(app) == applied
    assert_tree_matches_truth(app, sandbox)


def test_dingtalk_failing_now_and_then_is_retried_through(app_env):
    """With 15% of DingTalk calls failing (502 pages, 系统繁忙, slow replies), the gateway's retries carry every
    handler through and the tree is exact."""
    with silent_sandbox(app_env, "--seed", "6", "--fault-rate", "0.15", "--fault-delay", "0.2") as (app, sandbox):
        seed(app, sandbox)
        reply = sandbox.admin("POST", "changes", json={"count": 100, "seed": 31}).json()
        deliver(app, reply["events"])
        settle(app, reply["count"])
        assert_tree_matches_truth(app, sandbox)


@pytest.mark.parametrize("backend", ["postgresql"])  # in-process jobs run one at a time
def test_several_rq_workers_at_once_leave_the_tree_exact(app_env, backend):
    """Production runs several workers: events of one batch are handled in parallel by three `flask worker`
    processes (creates race, moves interleave); the tree lock and the retry on races keep it exact."""
    with silent_sandbox(app_env, "--seed", "8") as (app, sandbox):
        seed(app, sandbox)
        reply = sandbox.admin("POST", "changes", json={"count": 250, "seed": 4}).json()
        deliver(app, reply["events"])  # queued in Redis; nothing runs yet
        env = {**os.environ, **app_env, "SANDBOX_PORT": str(sandbox.port), "DINGTALK_QPS": "200"}
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--burst"]
        workers = [
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        for worker in workers:
            _, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err.decode()[-2000:]
        settle(app, reply["count"])
        assert_tree_matches_truth(app, sandbox)
        assert_levels_as_if_classified_afresh(app, sandbox)
        assert_paths_follow_parents(app)
