"""Shared fixtures: a real sandbox process, real Redis and PostgreSQL (from `make test`), and the app on both
database backends (SQLite with in-process jobs — the embedded default — and PostgreSQL with Redis and RQ)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis as redis_lib
import sqlalchemy as sa

from tests.support.sandbox import SandboxProcess
from workbench import close_app

# Chromium pages and a served app for the mini apps' browser tests (`live`, `phone`, `desk`).
pytest_plugins = ["tests.support.browser"]

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
    close_app(app)


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


# -- an app whose database already holds the session sandbox's tree ---------------------------------------------
# Applying the small province takes seconds; auth, catalog and H5 tests need it in nearly every test, so it is
# applied once per backend and copied: the SQLite file by file copy, PostgreSQL by `CREATE DATABASE … TEMPLATE`.

_SEEDED: dict[str, str] = {}
_TRUTH: dict = {}


def _session_truth(sandbox: SandboxProcess) -> dict:
    """The truth the seeded databases were built from, read once (later tests may change the sandbox)."""
    if not _TRUTH:
        _TRUTH.update(sandbox.admin("GET", "truth").json())
    return _TRUTH


def _build_app(env: dict[str, str]):
    from config import load_settings
    from workbench import create_app

    settings = load_settings(env, read_dotenv=False)
    migrate(settings.database_url)
    return create_app(settings)


def _with_database(url: str, name: str) -> str:
    return sa.engine.make_url(url).set(database=name).render_as_string(hide_password=False)


def _recreate_database(admin_url: str, name: str, template: str | None = None) -> None:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    engine.dispose()


def _seeded_source(backend: str, sandbox: SandboxProcess, request, tmp_path_factory) -> str:
    """The seeded SQLite file or PostgreSQL template database of this session, built on first use."""
    if backend in _SEEDED:
        return _SEEDED[backend]
    from tests.org_sync.test_apply import DictSource, seed_from_truth

    env = {"SANDBOX_PORT": str(sandbox.port)}
    if backend == "sqlite":
        directory = tmp_path_factory.mktemp("seeded")
        env["WORKBENCH_VAR_DIR"] = str(directory)
        source = str(directory / "workbench.db")
    else:
        admin_url = _with_database(request.getfixturevalue("postgres_url"), "postgres")
        _recreate_database(admin_url, "workbench_seeded")
        env |= {
            "DATABASE_URL": _with_database(admin_url, "workbench_seeded"),
            "WORKBENCH_VAR_DIR": str(tmp_path_factory.mktemp("seeded")),
        }
        source = "workbench_seeded"
    app = _build_app(env)
    truth = _session_truth(sandbox)
    seed_from_truth(app, DictSource(truth["departments"], truth["users"]))
    close_app(app)
    _SEEDED[backend] = source
    return source


@pytest.fixture
def tree(sandbox: SandboxProcess) -> dict:
    """The tree `tree_app` holds: the session sandbox's truth (departments with `_level`, users with
    `dept_id_list`)."""
    return _session_truth(sandbox)


@pytest.fixture
def tree_app(backend: str, tmp_path, sandbox: SandboxProcess, request, tmp_path_factory):
    """Like `app`, with the sandbox's tree already applied (the state after a full sync)."""
    import shutil

    source = _seeded_source(backend, sandbox, request, tmp_path_factory)
    env = {"SANDBOX_PORT": str(sandbox.port), "WORKBENCH_VAR_DIR": str(tmp_path)}
    if backend == "sqlite":
        shutil.copy(source, tmp_path / "workbench.db")
    else:
        admin_url = _with_database(request.getfixturevalue("postgres_url"), "postgres")
        _recreate_database(admin_url, "workbench_tree", template=source)
        redis_url = request.getfixturevalue("redis_url")
        redis_lib.Redis.from_url(redis_url).flushdb()
        env |= {"DATABASE_URL": _with_database(admin_url, "workbench_tree"), "REDIS_URL": redis_url}
    app = _build_app(env)
    yield app
    close_app(app)


@pytest.fixture
def tree_client(tree_app):
    return tree_app.test_client()
