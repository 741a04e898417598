"""Shared fixtures: a real sandbox process, real Redis and PostgreSQL (from `make test`), and the app on both
database backends (SQLite with in-process jobs — the embedded default — and PostgreSQL with Redis and RQ)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis as redis_lib
import sqlalchemy as sa

from tests.support.sandbox import SandboxProcess

# The SDK honours HTTP proxies for http:// endpoints; the sandbox is on loopback.
for _proxy in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_proxy, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite with `make test`, which starts PostgreSQL and Redis")
    return value


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxProcess]:
    """One sandbox for the session (small province, seed 7, default 20 QPS)."""
    with SandboxProcess("--scale", "small", "--seed", "7") as process:
        yield process


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _required_env("TEST_REDIS_URL")


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _required_env("TEST_DATABASE_URL")


def reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def migrate(database_url: str, revision: str = "head") -> None:
    from alembic import command

    from workbench.cli import alembic_config

    command.upgrade(alembic_config(database_url), revision)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    """Run a test on the embedded default (SQLite, in-process jobs) and on production parts (PostgreSQL, RQ)."""
    return request.param


@pytest.fixture
def app_env(backend: str, tmp_path, sandbox: SandboxProcess, request) -> dict[str, str]:
    env = {"SANDBOX_PORT": str(sandbox.port), "WORKBENCH_VAR_DIR": str(tmp_path)}
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        reset_postgres(url)
        redis_url = request.getfixturevalue("redis_url")
        redis_lib.Redis.from_url(redis_url).flushdb()
        env |= {"DATABASE_URL": url, "REDIS_URL": redis_url}
    return env


@pytest.fixture
def app(app_env: dict[str, str]):
    from config import load_settings
    from workbench import create_app

    settings = load_settings(app_env, read_dotenv=False)
    migrate(settings.database_url)
    app = create_app(settings)
    yield app
    app.extensions["workbench.db"].dispose()
    app.extensions["workbench.gateway"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def run_jobs(app) -> None:
    """Run every queued job to completion, in whichever mode the app's queue is."""
    queue = app.extensions["workbench.queue"]
    with app.app_context():
        if queue.redis is None:
            queue.join()
        else:
            queue.work(burst=True)
