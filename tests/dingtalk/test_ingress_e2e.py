"""Events from the sandbox reach the workbench end to end: HTTP push with real crypto (the sandbox's own
implementation against ours) and Stream through the official SDK in the real `flask stream` worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from config import load_settings
from tests.conftest import migrate, run_jobs
from tests.support.sandbox import ROOT, SandboxProcess, free_port
from workbench import create_app
from workbench.dingtalk.events import DingTalkEvent


def rows(app) -> list[DingTalkEvent]:
    with app.app_context():
        session = app.extensions["workbench.db"].session()
        result = session.scalars(sa.select(DingTalkEvent).order_by(DingTalkEvent.id)).all()
        session.close()
        return result


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def pushing_sandbox(app_env) -> Iterator[tuple]:
    """A sandbox that pushes events over HTTP to an app served on loopback."""
    web_port = free_port()
    sandbox = SandboxProcess(
        "--scale",
        "small",
        "--seed",
        "3",
        "--events",
        "http",
        "--callback-url",
        f"http://127.0.0.1:{web_port}/dingtalk/callback",
    )
    settings = load_settings({**app_env, "SANDBOX_PORT": str(sandbox.port)}, read_dotenv=False)
    migrate(settings.database_url)
    app = create_app(settings)
    server = make_server("127.0.0.1", web_port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sandbox:
        yield app, sandbox
    server.shutdown()
    app.extensions["workbench.db"].dispose()


def test_console_check_url_passes(pushing_sandbox):
    _app, sandbox = pushing_sandbox
    result = sandbox.admin("POST", "check-url").json()
    assert result["ok"], result


def test_contact_changes_arrive_by_http_push_once_each(pushing_sandbox):
    app, sandbox = pushing_sandbox
    seen = []
    app.extensions["workbench.events"].on(
        "user_add_org",
        "user_modify_org",
        "user_leave_org",
        "user_dept_change",
        "org_dept_create",
        "org_dept_modify",
        "org_dept_remove",
    )(lambda event: seen.append(event.event_id))

    reply = sandbox.admin("POST", "changes", json={"count": 25, "seed": 11})
    assert reply.status_code == 200, reply.text
    events = reply.json()["events"]
    assert events, reply.json()
    recorded = wait_for(lambda: (r := rows(app)) and len(r) >= len(events) and r)
    assert sorted(r.event_id for r in recorded) == sorted(e["eventId"] for e in events)
    run_jobs(app)
    assert sorted(seen) == sorted(e["eventId"] for e in events)
    assert {r.state for r in rows(app)} == {"handled"}


def test_stream_worker_records_events_from_the_official_sdk(tmp_path):
    sandbox = SandboxProcess("--scale", "small", "--seed", "5", "--events", "stream")
    env = {
        **os.environ,
        "SANDBOX_PORT": str(sandbox.port),
        "WORKBENCH_VAR_DIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    settings = load_settings({"SANDBOX_PORT": str(sandbox.port), "WORKBENCH_VAR_DIR": str(tmp_path)}, read_dotenv=False)
    migrate(settings.database_url)
    app = create_app(settings)
    with sandbox:
        log = (tmp_path / "stream.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "stream"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
        try:
            wait_for(lambda: sandbox.admin("GET", "health").json().get("stream_connections", 0) > 0, 30)
            reply = sandbox.admin("POST", "events", json={"event_type": "user_add_org", "data": {"userId": ["u42"]}})
            assert reply.status_code == 200, reply.text
            [row] = wait_for(lambda: rows(app))
            assert (row.event_type, row.channel, row.data.get("userId")) == ("user_add_org", "stream", ["u42"])
        finally:
            worker.terminate()
            worker.wait(10)
    app.extensions["workbench.db"].dispose()
