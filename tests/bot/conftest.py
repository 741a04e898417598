"""Fixtures of the bot tests: a custom robot in the sandbox, the province's userids, and sandbox counters."""

from __future__ import annotations

import pytest

from tests.conftest import run_jobs
from tests.support.sandbox import SandboxProcess

ADMIN = {"Authorization": "Bearer dev-admin-token"}


@pytest.fixture(scope="module")
def userids(sandbox: SandboxProcess) -> list[str]:
    users = sandbox.admin("GET", "truth?only=users").json()["users"]
    return sorted(u["userid"] for u in users)


@pytest.fixture
def robot(app, sandbox: SandboxProcess) -> dict:
    """A fresh custom robot (its own group) registered in the workbench as "alerts"."""
    from bot.outbox import register_robot

    created = sandbox.admin("POST", "robots", json={"title": "医共体告警"}).json()
    app.config["BOT_WEBHOOK_GROUP_WAIT"] = 0  # send at once; test_outbox covers the wait itself
    with app.app_context():
        register_robot("alerts", created["access_token"], created["secret"], "医共体告警")
    return created


def sandbox_messages(sandbox: SandboxProcess, **query: str) -> list[dict]:
    return sandbox.admin("GET", "messages", params=query).json()["messages"]


def accepted(sandbox: SandboxProcess, path: str) -> int:
    """How many calls to `path` the sandbox accepted so far (diff two readings)."""
    return sandbox.admin("GET", "stats").json()["apis"].get(path, {}).get("accepted", 0)


def deliver_all(app) -> None:
    run_jobs(app)
