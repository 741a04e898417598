"""Commands for operators: `flask --app wsgi db upgrade`, `flask --app wsgi worker`, `flask --app wsgi stream`,
`flask --app wsgi rekey`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

ROOT = Path(__file__).resolve().parents[1]

db_cli = AppGroup("db", help="Database migrations (Alembic).")


def alembic_config(database_url: str):
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    return config


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from alembic import command

    command.upgrade(alembic_config(current_app.config["SETTINGS"].database_url), revision)


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION."""
    from alembic import command

    command.downgrade(alembic_config(current_app.config["SETTINGS"].database_url), revision)


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Autogenerate a migration from the models (review it before committing)."""
    from alembic import command

    command.revision(alembic_config(current_app.config["SETTINGS"].database_url), message, autogenerate=True)


@click.command("worker")
@click.option("--burst", is_flag=True, help="Run the queued jobs, then exit.")
def worker(burst: bool) -> None:
    """Run an RQ worker (and the periodic-job scheduler) against REDIS_URL."""
    queue = current_app.extensions["workbench.queue"]
    if queue.redis is None:
        raise click.ClickException("REDIS_URL is not set: jobs run inside the web process, no worker is needed")
    queue.work(burst=burst)


@click.command("stream")
def stream() -> None:
    """Receive DingTalk events over Stream mode (WebSocket) until interrupted."""
    from workbench.dingtalk import stream as stream_worker

    stream_worker.run(current_app._get_current_object())


@click.command("rekey")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10000))
@with_appcontext
def rekey(batch_size: int) -> None:
    """Re-encrypt stored personal data under the current FIELD_KEYS / LOOKUP_KEYS (resumable; rows already current
    are skipped). Run it after putting a new key first, before dropping the old one."""
    for name, rekey_part in current_app.extensions["workbench.rekey"].items():
        result = rekey_part(batch_size)
        click.echo(f"{name}: {result['rows']} rows, {result['rekeyed']} re-encrypted")


def register_rekey(app: Flask, name: str, rekey_part: Callable[[int], dict[str, int]]) -> None:
    """A part's encrypted table for `flask rekey` (`rekey_part(batch_size)`, see workbench.privacy.rekey_table)."""
    app.extensions.setdefault("workbench.rekey", {})[name] = rekey_part


def init_app(app: Flask) -> None:
    app.cli.add_command(db_cli)
    app.cli.add_command(worker)
    app.cli.add_command(stream)
    app.cli.add_command(rekey)
    app.extensions.setdefault("workbench.rekey", {})
