"""A bench's own PostgreSQL database: on the server the test services run (`TEST_DATABASE_URL`, or the bench's
private services started on its ports), dropped and created anew for every run so that runs compare."""

from __future__ import annotations

import os
import platform

import sqlalchemy as sa


def url_for(database: str, given: str | None, services: dict[str, str]) -> str:
    """The URL of `database` on the server of `given` (or `TEST_DATABASE_URL`, or private services)."""
    url = given or os.environ.get("TEST_DATABASE_URL")
    if not url:
        from bench.api import start_services

        url, _redis = start_services(services)
    return sa.engine.make_url(url).set(database=database).render_as_string(hide_password=False)


def recreate(url: str) -> None:
    """Drop the URL's database (ending its sessions) and create it empty."""
    database = sa.engine.make_url(url).database
    admin = sa.create_engine(sa.engine.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": database},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()


def machine(engine: sa.Engine, settings: tuple[str, ...]) -> dict[str, str]:
    """What the figures were measured on: CPUs, Python, the server's version and the named settings."""
    with engine.connect() as conn:
        version = conn.scalar(sa.text("SHOW server_version"))
        values = dict(
            conn.execute(
                sa.text("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(:names)"),
                {"names": list(settings)},
            ).all()
        )
    return {
        "cpu": f"{os.cpu_count()} CPUs, {platform.machine()}",
        "python": platform.python_version(),
        "postgresql": version,
        "settings": ", ".join(f"{k} {v}" for k, v in sorted(values.items())),
    }
