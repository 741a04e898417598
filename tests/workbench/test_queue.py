"""The job queue facade in both modes, and periodic jobs claimed once per slot across processes."""

import os
import subprocess
import sys
import time

import redis as redis_lib
from flask import Flask

from tests.support.sandbox import ROOT
from workbench.queue import JobQueue

RESULTS: list = []


def record(value):
    RESULTS.append(value)


def explode():
    raise RuntimeError("boom")


def slow(value):
    time.sleep(0.3)
    RESULTS.append(value)


def make_queue(redis=None) -> JobQueue:
    return JobQueue(Flask(__name__), redis)


def test_in_process_jobs_run_in_order_with_an_app_context():
    RESULTS.clear()
    queue = make_queue()
    queue.retry_intervals = [0, 0]
    for value in range(5):
        queue.enqueue(record, value)
    queue.enqueue(explode, retries=2)  # a failing job is retried, then given up, without stopping the worker
    queue.enqueue(record, "after")
    queue.join()
    assert RESULTS == [0, 1, 2, 3, 4, "after"]


def test_closing_lets_the_running_job_finish_and_drops_the_rest():
    RESULTS.clear()
    queue = make_queue()
    queue.enqueue(slow, "running")
    while queue._local.unfinished_tasks and not queue._local.empty():  # wait until the worker has taken it
        time.sleep(0.01)
    queue.enqueue(record, "queued")
    queue.enqueue(explode)  # would otherwise be retried after close
    queue.close()
    assert RESULTS == ["running"]
    queue.enqueue(record, "late")  # a thrown-away app's handlers may still enqueue: nothing runs
    queue.join()
    assert RESULTS == ["running"]


def test_rq_jobs_run_in_a_worker_and_a_job_id_is_enqueued_once(redis_client: redis_lib.Redis):
    RESULTS.clear()
    queue = make_queue(redis_client)
    queue.enqueue(record, "a", job_id="same")
    queue.enqueue(record, "a", job_id="same")  # still pending: not queued twice
    queue.enqueue(record, "b")
    with queue.app.app_context():
        queue.work(burst=True)
    assert RESULTS == ["a", "b"]


def test_periodic_slot_is_claimed_once_across_processes(redis_client: redis_lib.Redis):
    first, second = make_queue(redis_client), make_queue(redis_client)
    for queue in (first, second):
        queue.every(60, record, name="reconcile")
    now = 1_800_000_000.0
    assert first.tick(now) == ["reconcile"]
    assert second.tick(now + 1) == []  # same slot, another process
    assert second.tick(now + 60) == ["reconcile"]  # next slot
    assert len(first.rq_queue) == 2


def test_periodic_in_process():
    RESULTS.clear()
    queue = make_queue()
    queue.every(30, "tests.workbench.test_queue.record_tick", name="tick")
    assert queue.tick(0) == ["tick"]
    assert queue.tick(10) == []
    assert queue.tick(30) == ["tick"]
    queue.join()
    assert RESULTS == ["tick", "tick"]


def test_periodic_slots_start_only_near_their_beginning_and_at_their_offset():
    queue = make_queue()
    queue.every(86400, record, name="nightly", offset=18 * 3600 + 600)  # 02:10 China time
    midnight_utc = 1_800_057_600.0  # a UTC midnight
    assert queue.tick(midnight_utc + 3 * 3600) == []  # a restart in the middle of the day runs nothing
    assert queue.tick(midnight_utc + 18 * 3600 + 600 + 5) == ["nightly"]
    assert queue.tick(midnight_utc + 18 * 3600 + 600 + 30) == []  # once per slot


def record_tick():
    RESULTS.append("tick")


def fail_once(counter_key: str) -> None:
    """A job that fails on its first attempt (counted in Redis, shared with the test process)."""
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"])
    if client.incr(counter_key) == 1:
        raise RuntimeError("first attempt fails")


def test_a_failed_rq_job_is_retried_after_its_interval_by_the_worker(redis_client, redis_url, tmp_path):
    """Retries that wait (RQ Retry intervals) need the worker's scheduler; `flask worker` runs it."""
    queue = make_queue(redis_client)
    queue.retry_intervals = [1]
    queue.enqueue(fail_once, "retry-counter", retries=1)
    env = {**os.environ, "REDIS_URL": redis_url, "WORKBENCH_VAR_DIR": str(tmp_path)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and int(redis_client.get("retry-counter") or 0) < 2:
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(10)
    assert int(redis_client.get("retry-counter")) == 2


def test_retention_jobs_prune_only_what_is_old_and_done(app):
    from datetime import timedelta

    import sqlalchemy as sa

    from workbench import audit, db
    from workbench.audit import AuditRecord
    from workbench.db import utcnow
    from workbench.dingtalk.events import DingTalkEvent, prune_events

    now = utcnow()
    with app.app_context():
        session = db.session()
        session.add_all(
            [
                AuditRecord(at=now - timedelta(days=400), actor="a", action="old"),
                AuditRecord(at=now - timedelta(days=200), actor="a", action="kept"),
                DingTalkEvent(
                    event_id="e1", event_type="t", channel="http", state="handled", received_at=now - timedelta(days=40)
                ),
                DingTalkEvent(
                    event_id="e2", event_type="t", channel="http", state="failed", received_at=now - timedelta(days=40)
                ),
                DingTalkEvent(
                    event_id="e3", event_type="t", channel="http", state="handled", received_at=now - timedelta(days=2)
                ),
            ]
        )
        session.commit()
        assert audit.prune() == 1 and prune_events() == 1
        assert session.scalars(sa.select(AuditRecord.action)).all() == ["kept"]
        assert sorted(session.scalars(sa.select(DingTalkEvent.event_id))) == ["e2", "e3"]
