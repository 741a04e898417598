"""Full sync against a real sandbox process, on SQLite (in-process jobs) and PostgreSQL (Redis, RQ): exact
trees, changes, resume after an interruption, the deletion guard, the lock, the CLI and the jobs."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

import pytest
import redis as redis_lib
import sqlalchemy as sa
from flask import Flask
from sqlalchemy import orm

from bot.models import OutboxMessage
from org_sync import alerts, full_sync, walk
from org_sync.diff import Refusal
from org_sync.fetch import DEPT_GET, LISTSUB, USER_LIST, InjectedFault
from org_sync.full_sync import CorpLock, SyncLocked, run_full_sync
from org_sync.models import OrgChange, OrgMember, OrgMembership, OrgNode, OrgSyncRun
from org_sync.staging import OrgStageDept, OrgStageMembership, OrgStageUser
from tests.conftest import migrate, reset_postgres, run_jobs
from tests.org_sync.truth import assert_tree_matches_truth, stored_tree, truth_tree
from tests.support.sandbox import SandboxProcess
from workbench import close_app
from workbench.db import get_db, utcnow

CORP = "dingsandboxcorp00001"


@pytest.fixture
def make_app(backend: str, tmp_path, request) -> Iterator[Callable[[SandboxProcess], Flask]]:
    """An app on this test's backend talking to a given sandbox, with the gateway's limit lifted (the sandbox
    runs with --qps 1000 too): these tests are about correctness, bench/org_sync.py about speed."""
    apps: list[Flask] = []

    def build(sandbox: SandboxProcess) -> Flask:
        from config import load_settings
        from workbench import create_app

        env = {"SANDBOX_PORT": str(sandbox.port), "WORKBENCH_VAR_DIR": str(tmp_path), "DINGTALK_QPS": "1000"}
        if backend == "postgresql":
            url = request.getfixturevalue("postgres_url")
            reset_postgres(url)
            redis_url = request.getfixturevalue("redis_url")
            redis_lib.Redis.from_url(redis_url).flushdb()
            env |= {"DATABASE_URL": url, "REDIS_URL": redis_url}
        settings = load_settings(env, read_dotenv=False)
        migrate(settings.database_url)
        app = create_app(settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        close_app(app)


@pytest.fixture
def small() -> Iterator[SandboxProcess]:
    with SandboxProcess("--scale", "small", "--seed", "3", "--qps", "1000") as process:
        yield process


def _count(app: Flask, stmt) -> int:
    with app.app_context(), get_db().engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


def _run_row(app: Flask, run_id: int):
    with app.app_context(), get_db().engine.connect() as conn:
        return conn.execute(sa.select(OrgSyncRun.__table__).where(OrgSyncRun.id == run_id)).mappings().one()


def minimum_calls(sandbox: SandboxProcess) -> int:
    """One listing per department plus one user page per 100 direct members of each department."""
    body = sandbox.admin("GET", "truth").json()
    return sum(1 + math.ceil(d["member_count"] / 100) for d in body["departments"])


def _levels_match_truth(app: Flask, sandbox: SandboxProcess) -> tuple[int, int, list]:
    truth = {
        d["dept_id"]: d for d in sandbox.admin("GET", "truth", params={"only": "departments"}).json()["departments"]
    }
    with app.app_context(), get_db().engine.connect() as conn:
        stored = dict(conn.execute(sa.select(OrgNode.dept_id, OrgNode.level).where(OrgNode.deleted_at.is_(None))).all())
    wrong = [
        (truth[d]["name"], truth[d]["_level"], level) for d, level in stored.items() if truth[d]["_level"] != level
    ]
    return len(stored) - len(wrong), len(stored), wrong


def test_full_sync_small_equals_the_truth_and_a_second_run_changes_nothing(make_app, small):
    app = make_app(small)
    with app.app_context():
        result = run_full_sync()
    assert result.state == "succeeded"
    assert_tree_matches_truth(app, small)

    right, total, wrong = _levels_match_truth(app, small)
    assert right / total >= 0.99, wrong[:10]

    _, depts, users = truth_tree(small)
    assert result.counts["nodes"]["created"] == len(depts)
    assert result.counts["members"]["created"] == len(users)
    by_api = result.api_calls["by_api"]
    assert by_api[LISTSUB] == len(depts)  # one listing per department, no more
    assert by_api[USER_LIST] >= len(depts)
    assert result.api_calls["total"] <= 1.05 * minimum_calls(small)
    run = _run_row(app, result.run_id)
    assert run["state"] == "succeeded" and run["finished_at"] is not None
    assert run["counts"]["members"]["created"] == len(users)
    assert _count(app, sa.select(sa.func.count()).select_from(OrgStageUser)) == 0  # staging cleaned up

    # A person in several departments is one member with several memberships.
    multi = [u for u, (_, d, _) in users.items() if len(d) > 1]
    assert multi
    assert _count(app, sa.select(sa.func.count()).select_from(OrgMember)) == len(users)
    positions = sum(len(d) for _, d, _ in users.values())
    assert _count(app, sa.select(sa.func.count()).select_from(OrgMembership)) == positions
    assert result.counts["memberships"] == {"removed": 0, "added": positions, "updated": 0}

    # Materialised paths: every node's path is its parent's plus its own id.
    with app.app_context(), get_db().engine.connect() as conn:
        nodes = {r.id: r for r in conn.execute(sa.select(OrgNode.id, OrgNode.parent_id, OrgNode.path, OrgNode.depth))}
    for node in nodes.values():
        expected = (nodes[node.parent_id].path if node.parent_id else "/") + f"{node.id}/"
        assert node.path == expected
        assert node.depth == node.path.count("/") - 2

    with app.app_context():
        again = run_full_sync()
    assert again.state == "succeeded"
    assert all(v == 0 for entity in ("nodes", "members", "memberships") for v in again.counts[entity].values())
    assert _count(app, sa.select(sa.func.count()).select_from(OrgChange).where(OrgChange.run_id == again.run_id)) == 0


def test_full_sync_county_equals_the_truth(make_app):
    with SandboxProcess("--scale", "county", "--seed", "3", "--qps", "1000") as county:
        app = make_app(county)
        with app.app_context():
            result = run_full_sync()
        assert result.state == "succeeded"
        assert_tree_matches_truth(app, county)
        right, total, wrong = _levels_match_truth(app, county)
        assert right == total, wrong[:10]
        assert result.api_calls["total"] <= 1.05 * minimum_calls(county)


def test_second_sync_after_changes_is_exact_logs_the_changes_and_keeps_corrections(make_app, small):
    app = make_app(small)
    with app.app_context():
        run_full_sync()
        # An admin corrects a level; later syncs must keep it.
        db = get_db()
        with db.engine.begin() as conn:
            corrected = conn.execute(
                sa.select(OrgNode.dept_id)
                .where(OrgNode.level == "internal_department")
                .order_by(OrgNode.dept_id)
                .limit(1)
            ).scalar_one()
            conn.execute(
                sa.update(OrgNode).where(OrgNode.dept_id == corrected).values(level_override="member_institution")
            )
    truth_before = truth_tree(small)
    reply = small.admin("POST", "changes", json={"count": 200, "seed": 11})
    assert reply.status_code == 200, reply.text

    with app.app_context():
        result = run_full_sync()
    assert result.state == "succeeded"
    assert_tree_matches_truth(app, small)

    with app.app_context(), get_db().engine.connect() as conn:
        actions = dict(
            conn.execute(
                sa.select(OrgChange.action, sa.func.count())
                .where(OrgChange.run_id == result.run_id, OrgChange.entity == "node")
                .group_by(OrgChange.action)
            ).all()
        )
        member_actions = dict(
            conn.execute(
                sa.select(OrgChange.action, sa.func.count())
                .where(OrgChange.run_id == result.run_id, OrgChange.entity == "member")
                .group_by(OrgChange.action)
            ).all()
        )
        node = conn.execute(
            sa.select(OrgNode.level, OrgNode.level_source, OrgNode.level_override, OrgNode.deleted_at).where(
                OrgNode.dept_id == corrected
            )
        ).one()
        rename = conn.execute(
            sa.select(OrgChange.entity_key, OrgChange.changes).where(
                OrgChange.run_id == result.run_id, OrgChange.action == "rename"
            )
        ).first()
    assert actions.get("rename") and actions.get("move") and actions.get("delete"), actions
    assert member_actions.get("create") and member_actions.get("delete") and member_actions.get("update"), (
        member_actions
    )
    assert result.counts["nodes"]["renamed"] == actions["rename"]
    assert result.counts["nodes"]["moved"] == actions["move"]
    old_name = truth_before[1][int(rename.entity_key)][1]
    assert rename.changes["name"][0] == old_name and rename.changes["name"][1] != old_name
    if node.deleted_at is None:
        assert (node.level, node.level_source, node.level_override) == (
            "member_institution",
            "override",
            "member_institution",
        )
    # Soft deletes: the removed departments are still there, with deleted_at.
    assert (
        _count(app, sa.select(sa.func.count()).select_from(OrgNode).where(OrgNode.deleted_at.is_not(None)))
        == (result.counts["nodes"]["deleted"])
    )


def _live_snapshot(app: Flask) -> tuple:
    return stored_tree(app, CORP)


def test_an_interrupted_run_resumes_without_duplicates_or_losses(make_app, small):
    app = make_app(small)
    with app.app_context():
        first = run_full_sync()
    small.admin("POST", "changes", json={"count": 150, "seed": 4})
    before = _live_snapshot(app)

    # An outage after 300 calls: the run stops, its staging is kept, the live tree is untouched.
    with app.app_context(), pytest.raises(InjectedFault):
        run_full_sync(fail_after_calls=300)
    with app.app_context(), get_db().engine.connect() as conn:
        run = conn.execute(sa.select(OrgSyncRun.__table__).order_by(OrgSyncRun.id.desc())).mappings().first()
        staged_depts = conn.execute(
            sa.select(sa.func.count()).select_from(OrgStageDept).where(OrgStageDept.run_id == run["id"])
        ).scalar_one()
        done = conn.execute(
            sa.select(sa.func.count())
            .select_from(OrgStageDept)
            .where(OrgStageDept.run_id == run["id"], OrgStageDept.listed, OrgStageDept.paged)
        ).scalar_one()
    assert run["id"] != first.run_id and run["state"] == "running"
    assert "InjectedFault" in run["error"]
    assert run["api_calls"]["total"] == 300
    assert 0 < done < staged_depts
    assert _live_snapshot(app) == before  # nothing half-applied is visible

    # A second interruption, then the resume that completes.
    with app.app_context(), pytest.raises(InjectedFault):
        run_full_sync(fail_after_calls=200)
    with app.app_context():
        result = run_full_sync(resume=True)
    assert result.run_id == run["id"]
    assert result.state == "succeeded"
    assert result.api_calls["sessions"] == 3
    assert_tree_matches_truth(app, small)

    # Resuming repeats at most the calls that were in flight when each session stopped.
    assert result.api_calls["total"] <= minimum_calls(small) * 1.05 + 2 * 2 * full_sync.WORKERS_PER_API * 3
    with app.app_context(), get_db().engine.connect() as conn:
        duplicates = conn.execute(
            sa.select(OrgChange.entity, OrgChange.entity_key, OrgChange.action, sa.func.count())
            .where(OrgChange.run_id == result.run_id)
            .group_by(OrgChange.entity, OrgChange.entity_key, OrgChange.action)
            .having(sa.func.count() > 1)
        ).all()
        members = conn.execute(sa.select(sa.func.count()).select_from(OrgMember)).scalar_one()
        distinct = conn.execute(sa.select(sa.func.count(sa.distinct(OrgMember.userid)))).scalar_one()
    assert duplicates == []
    assert members == distinct


def test_a_failed_staging_write_commits_nothing_after_it_and_the_run_resumes_exactly(make_app, small, monkeypatch):
    """Batches are committed by a writer thread while the walk goes on: once one fails, no later batch (whose
    checkpoint flags could claim rows that were never written) may be committed."""
    app = make_app(small)
    commit = walk.Walker._commit
    commits: list[int] = []

    def failing(self, batch, api_calls, checkpoint):
        commits.append(len(commits) + 1)
        if len(commits) == 2:
            raise sa.exc.OperationalError("INSERT INTO org_stage_users", {}, Exception("the database went away"))
        commit(self, batch, api_calls, checkpoint)

    monkeypatch.setattr(walk.Walker, "_commit", failing)
    with app.app_context(), pytest.raises(sa.exc.OperationalError):
        run_full_sync()
    assert commits == [1, 2]  # neither the batches queued behind it nor the last one were attempted
    monkeypatch.undo()
    with app.app_context():
        result = run_full_sync(resume=True)
    assert result.state == "succeeded" and result.api_calls["sessions"] == 2
    assert_tree_matches_truth(app, small)


def test_a_fresh_start_abandons_the_interrupted_run(make_app, small):
    app = make_app(small)
    with app.app_context(), pytest.raises(InjectedFault):
        run_full_sync(fail_after_calls=50)
    with app.app_context():
        result = run_full_sync(resume=False)
    assert result.state == "succeeded"
    assert_tree_matches_truth(app, small)
    with app.app_context(), get_db().engine.connect() as conn:
        states = conn.execute(sa.select(OrgSyncRun.state).order_by(OrgSyncRun.id)).scalars().all()
        leftover = conn.execute(sa.select(sa.func.count()).select_from(OrgStageMembership)).scalar_one()
    assert states == ["failed", "succeeded"]
    assert leftover == 0


def test_the_deletion_guard_refuses_a_run_that_would_remove_30_percent_of_people_and_alerts_the_admins(
    make_app, small, caplog
):
    app = make_app(small)
    with app.app_context():
        run_full_sync()
    _, _, users = truth_tree(small)
    # Make DingTalk "lose" 30% of the people we store: store extra members (with positions) that DingTalk no
    # longer lists, 3/7 of its count, so that they are 30% of the stored members.
    vanished = math.ceil(len(users) * 3 / 7)
    now = utcnow()
    with app.app_context(), get_db().engine.begin() as conn:
        node_id = conn.execute(sa.select(OrgNode.id).where(OrgNode.dept_id == 1)).scalar_one()
        conn.execute(
            sa.insert(OrgMember),
            [
                {
                    "corp_id": CORP,
                    "userid": f"gone{i:05d}",
                    "name": f"离职{i}",
                    "active": True,
                    "is_admin": False,
                    "is_boss": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(vanished)
            ],
        )
        ids = conn.execute(sa.select(OrgMember.id).where(OrgMember.userid.like("gone%"))).scalars().all()
        conn.execute(
            sa.insert(OrgMembership),
            [{"member_id": i, "node_id": node_id, "is_leader": False, "sort_order": 0} for i in ids],
        )
    before = _live_snapshot(app)
    changes_before = _count(app, sa.select(sa.func.count()).select_from(OrgChange))

    since = str(len(small.admin("GET", "messages").json()["messages"]))  # in-process jobs may deliver at once
    with caplog.at_level(logging.ERROR, logger="org_sync.alerts"), app.app_context():
        result = run_full_sync()
    assert result.state == "refused"
    assert result.counts["would_delete"]["members"] == vanished
    run = _run_row(app, result.run_id)
    assert run["state"] == "refused" and "30.0%" in run["error"]
    assert any(r.levelno == logging.ERROR and "refused" in r.getMessage() for r in caplog.records)
    assert _live_snapshot(app) == before  # nothing deleted, nothing else applied either
    assert _count(app, sa.select(sa.func.count()).select_from(OrgMember).where(OrgMember.deleted_at.is_not(None))) == 0
    assert _count(app, sa.select(sa.func.count()).select_from(OrgChange)) == changes_before

    # The corp's DingTalk administrators are alerted through the bot's outbox: one work notification per run,
    # committed with the refusal, stating the counts, the share and how to proceed; the sandbox receives it.
    with app.app_context(), get_db().engine.connect() as conn:
        admins = sorted(conn.execute(sa.select(OrgMember.userid).where(OrgMember.is_admin)).scalars())
        [row] = conn.execute(sa.select(OutboxMessage.__table__)).mappings().all()
    assert admins
    assert row["idempotency_key"] == alerts.refused_key(result.run_id)
    assert (row["channel"], sorted(row["recipients"]), row["priority"]) == ("work_notice", admins, 2)
    text = row["payload"]["text"]
    for fact in (f"第 {result.run_id} 次", f"{vanished} / {len(users) + vanished}（30.0%）", "允许上限：5.0%"):
        assert fact in text, text
    assert "flask --app wsgi org-sync full --force" in text and "未做任何更改" in text
    run_jobs(app)
    [row] = _outbox_rows(app)
    assert row.state == "sent" and sorted(row.delivered) == admins
    got = [
        m
        for m in small.admin("GET", "messages", params={"kind": "work_notice", "since": since}).json()["messages"]
        if f"第 {result.run_id} 次" in str(m["content"])
    ]
    assert [sorted(m["userids"]) for m in got] == [admins]
    # Idempotent per run: alerting the same run again queues nothing new.
    with app.app_context(), orm.Session(get_db().engine) as db:
        refusal = Refusal(vanished, len(users) + vanished, 0, 1, 0.05)
        alerts.alert_refused(db, result.run_id, CORP, "full", run["error"], refusal)
        db.commit()
    assert len(_outbox_rows(app)) == 1

    # An operator who knows the removal is real lets it through.
    with app.app_context():
        forced = run_full_sync(max_delete_share=1.0)
    assert forced.state == "succeeded" and forced.counts["members"]["deleted"] == vanished
    assert_tree_matches_truth(app, small)
    assert len(_outbox_rows(app)) == 1  # a run that is let through alerts nobody


def test_a_refusal_is_recorded_even_when_its_alert_cannot_be_queued(make_app, small, monkeypatch, caplog):
    app = make_app(small)
    with app.app_context():
        run_full_sync()

    def broken(*args, **kwargs):
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(full_sync, "alert_refused", broken)
    with caplog.at_level(logging.ERROR, logger="org_sync.full_sync"), app.app_context():
        result = run_full_sync(max_delete_share=-1.0)  # any share is too much: refused with nothing to delete
    assert result.state == "refused"
    assert _run_row(app, result.run_id)["state"] == "refused"
    assert _outbox_rows(app) == []
    assert _count(app, sa.select(sa.func.count()).select_from(OrgStageUser)) == 0
    assert any("could not queue the alert" in r.getMessage() for r in caplog.records)


def _outbox_rows(app: Flask) -> list[OutboxMessage]:
    with app.app_context(), orm.Session(get_db().engine) as db:
        return list(db.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def test_only_one_full_sync_per_corp(make_app, small):
    app = make_app(small)
    with app.app_context():
        lock = CorpLock(CORP, get_db().engine, app.extensions["workbench.redis"])
        lock.acquire()
        try:
            with pytest.raises(SyncLocked):
                run_full_sync()
            with pytest.raises(SyncLocked):
                CorpLock(CORP, get_db().engine, app.extensions["workbench.redis"]).acquire()
        finally:
            lock.release()
        assert run_full_sync().state == "succeeded"  # released: the next one runs


def test_cli_full_status_and_reconcile(make_app, small):
    app = make_app(small)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["org-sync", "full"])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output
    assert "departments" in result.stderr  # the live progress line
    result = runner.invoke(args=["org-sync", "reconcile"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["org-sync", "status"])
    assert result.exit_code == 0
    assert "reconcile" in result.output and "full" in result.output
    assert_tree_matches_truth(app, small)


def test_jobs_run_the_sync_and_reconciliation_is_scheduled(make_app, small):
    from org_sync import jobs

    app = make_app(small)
    assert "org-sync-reconcile" in app.extensions["workbench.queue"].periodic
    with app.app_context():
        jobs.enqueue_full_sync()
    run_jobs(app)
    assert_tree_matches_truth(app, small)
    small.admin("POST", "changes", json={"count": 50, "seed": 2})
    with app.app_context():
        app.extensions["workbench.queue"].enqueue(jobs.reconcile_job)
    run_jobs(app)
    assert_tree_matches_truth(app, small)
    with app.app_context(), get_db().engine.connect() as conn:
        kinds = conn.execute(sa.select(OrgSyncRun.kind, OrgSyncRun.state).order_by(OrgSyncRun.id)).all()
    assert [tuple(k) for k in kinds] == [("full", "succeeded"), ("reconcile", "succeeded")]


def test_department_details_are_fetched_for_units_only(make_app, small):
    app = make_app(small)
    with app.app_context():
        result = run_full_sync()
        units = _count(
            app, sa.select(sa.func.count()).select_from(OrgNode).where(OrgNode.level != "internal_department")
        )
        with_code = _count(app, sa.select(sa.func.count()).select_from(OrgNode).where(OrgNode.code.is_not(None)))
    assert result.api_calls["by_api"][DEPT_GET] == units
    truth = small.admin("GET", "truth", params={"only": "departments"}).json()["departments"]
    assert with_code == sum(1 for d in truth if d.get("code"))


def test_killing_the_worker_mid_sync_and_starting_again_completes(make_app, tmp_path):
    """A real `flask org-sync full` process killed with SIGKILL half-way; the next start resumes its run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.support.sandbox import ROOT

    with SandboxProcess("--scale", "small", "--seed", "5", "--qps", "60") as sandbox:
        app = make_app(sandbox)
        settings = app.config["SETTINGS"]
        env = {
            **os.environ,
            "SANDBOX_PORT": str(sandbox.port),
            "WORKBENCH_VAR_DIR": str(tmp_path),
            "DATABASE_URL": settings.database_url,
            "DINGTALK_QPS": "60",
        }
        if settings.redis_url:
            env["REDIS_URL"] = settings.redis_url
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "org-sync", "full"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            listed = 0
            while time.monotonic() < deadline and listed < 150:
                time.sleep(0.2)
                listed = _count(app, sa.select(sa.func.count()).select_from(OrgStageDept).where(OrgStageDept.listed))
            assert listed >= 150, "the worker did not get going"
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        total = len(truth_tree(sandbox)[1])
        assert listed < total
        assert _count(app, sa.select(sa.func.count()).select_from(OrgNode)) == 0  # nothing applied yet

        with app.app_context():
            result = run_full_sync()  # the dead worker's lock is taken over, its run resumed
        assert result.state == "succeeded"
        assert result.api_calls["sessions"] == 2
        assert _count(app, sa.select(sa.func.count()).select_from(OrgSyncRun)) == 1
        assert_tree_matches_truth(app, sandbox)
