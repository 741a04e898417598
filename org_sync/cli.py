"""`flask org-sync …`: full sync (with a live progress line), reconciliation, and the last runs."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from org_sync.full_sync import Progress, SyncLocked, run_full_sync
from org_sync.models import OrgSyncRun
from workbench.db import get_db

org_sync_cli = AppGroup("org-sync", help="Sync the organisation tree from DingTalk.")


def _progress_line(p: Progress) -> None:
    eta = f"{p.eta_s:,.0f}s" if p.eta_s is not None else "—"
    line = (
        f"\rdepartments {p.depts_listed:,}/{p.depts_known:,} listed, {p.depts_paged:,} paged · "
        f"people {p.people:,} · {p.calls:,} calls ({p.calls_per_s:,.1f}/s) · "
        f"throttles {p.throttles} · retries {p.retries} · ETA {eta}   "
    )
    sys.stderr.write(line)
    sys.stderr.flush()


def _run(kind: str, resume: bool, force: bool) -> None:
    try:
        result = run_full_sync(
            kind=kind, resume=resume, progress=_progress_line, max_delete_share=1.0 if force else None
        )
    except SyncLocked as exc:
        raise click.ClickException(str(exc)) from None
    sys.stderr.write("\n")
    click.echo(f"run {result.run_id}: {result.state} in {result.duration_s:,.1f}s")
    for entity in ("nodes", "members", "memberships"):
        if entity in result.counts:
            click.echo(f"  {entity}: " + ", ".join(f"{k} {v}" for k, v in result.counts[entity].items()))
    click.echo(
        "  calls: "
        + ", ".join(f"{api} {n}" for api, n in result.api_calls.get("by_api", {}).items())
        + f"; throttles {result.api_calls.get('throttles', 0)}, retries {result.api_calls.get('retries', 0)}"
    )
    if result.state == "refused":
        raise click.ClickException("refused by the deletion guard (see the run's error); rerun with --force")


@org_sync_cli.command("full")
@click.option("--resume/--no-resume", default=True, help="Continue the last interrupted run (default).")
@click.option("--force", is_flag=True, help="Apply even if the deletion guard would refuse.")
def full_command(resume: bool, force: bool) -> None:
    """Fetch the whole tree from DingTalk and apply the difference."""
    _run("full", resume, force)


@org_sync_cli.command("reconcile")
@click.option("--resume/--no-resume", default=True)
@click.option("--force", is_flag=True, help="Apply even if the deletion guard would refuse.")
def reconcile_command(resume: bool, force: bool) -> None:
    """The full-sync engine run as a reconciliation: catches whatever the events missed."""
    _run("reconcile", resume, force)


@org_sync_cli.command("status")
@click.option("--limit", default=10, show_default=True)
def status_command(limit: int) -> None:
    """The last runs: kind, state, duration, changes, calls."""
    runs = OrgSyncRun.__table__
    with get_db().engine.connect() as conn:
        rows = conn.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(limit)).mappings().all()
    click.echo(f"{'run':>5} {'kind':<10} {'state':<10} {'started':<20} {'secs':>8} {'calls':>7}  changes")
    for r in rows:
        counts = r["counts"] or {}
        changes = " · ".join(
            f"{entity} " + " ".join(f"{k}={v}" for k, v in counts[entity].items() if v)
            for entity in ("nodes", "members", "memberships")
            if any((counts.get(entity) or {}).values())
        )
        secs = counts.get("duration_s", "")
        click.echo(
            f"{r['id']:>5} {r['kind']:<10} {r['state']:<10} {r['started_at']:%Y-%m-%d %H:%M:%S} "
            f"{secs!s:>8} {(r['api_calls'] or {}).get('total', ''):>7}  {changes or r['error'] or ''}"
        )
