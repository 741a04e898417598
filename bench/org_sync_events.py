"""Benchmark of incremental org sync through events, end to end (not a test): issue 3, "What must be shown",
bench item 4 — "incremental: 10,000 events applied, events per second and 99th-percentile apply latency".

A sandbox pushes its contact events over encrypted HTTP to the app served on loopback (werkzeug, threaded), which
records each event (`dingtalk_events.received_at`) and queues it on RQ; a few `flask --app wsgi worker` processes
run the handlers (re-fetch through the gateway, apply, `handled_at`). The tree is seeded with a full sync, then
`POST /_sandbox/changes` is driven in batches until the wanted number of events was emitted (each change yields
one or more events), the bench waits until every recorded event is handled, and reports:

* events/s end to end: events / (last `handled_at` − first `received_at`), and the ingest rate alone;
* per-event apply latency `handled_at − received_at`: p50 / p95 / p99 / max (queueing included: when the
  handlers are slower than the pushes, the backlog is part of the latency);
* at the real limit (20 calls/s per API in the sandbox and the gateway), events/s against the bound the limit
  implies: every user event costs ≥ 1 `user/get` and every department event ≥ 1 `department/get`, two APIs with
  separate budgets, so the bound is events / (max(user events, department events) / 20) events/s;
* that the stored tree then equals `/_sandbox/truth` exactly (tests/org_sync/truth.py).

    eval "$(bash scripts/test-services.sh)" && .venv/bin/python bench/org_sync_events.py

Needs PostgreSQL and Redis (--database-url/--redis-url, else TEST_DATABASE_URL/TEST_REDIS_URL): RQ workers are
separate processes. The database is reset and Redis flushed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _proxy in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_proxy, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

import requests  # noqa: E402

from tests.support.sandbox import SandboxProcess, free_port  # noqa: E402
from workbench import close_app  # noqa: E402

COMMAND = 'eval "$(bash scripts/test-services.sh)" && .venv/bin/python bench/org_sync_events.py'
LIFTED = 1_000_000
USER_GET, DEPT_GET = "/topapi/v2/user/get", "/topapi/v2/department/get"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]


def make_app(env: dict[str, str]):
    import redis

    from config import load_settings
    from tests.conftest import migrate, reset_postgres
    from workbench import create_app

    reset_postgres(env["DATABASE_URL"])
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    settings = load_settings(env, read_dotenv=False)
    migrate(settings.database_url)
    return create_app(settings)


def event_states(app) -> dict[str, int]:
    import sqlalchemy as sa

    from workbench.db import get_db
    from workbench.dingtalk.events import DingTalkEvent

    with app.app_context(), get_db().engine.connect() as conn:
        return dict(conn.execute(sa.select(DingTalkEvent.state, sa.func.count()).group_by(DingTalkEvent.state)).all())


def event_times(app) -> list[tuple[str, dt.datetime, dt.datetime | None]]:
    import sqlalchemy as sa

    from workbench.db import get_db
    from workbench.dingtalk.events import DingTalkEvent

    with app.app_context(), get_db().engine.connect() as conn:
        return list(
            conn.execute(sa.select(DingTalkEvent.event_type, DingTalkEvent.received_at, DingTalkEvent.handled_at))
        )


def retry_failed(app) -> list[dict[str, Any]]:
    """Events the workers left failed (RQ retries are not run: the workers have no RQ scheduler): their errors,
    then one retry each by hand, in this process, so the tree comparison shows whether a retry repairs them."""
    import sqlalchemy as sa

    from workbench.db import get_db
    from workbench.dingtalk.events import DingTalkEvent, handle_event

    with app.app_context():
        session = get_db().session()
        failed = session.execute(
            sa.select(DingTalkEvent.id, DingTalkEvent.event_type, DingTalkEvent.last_error).where(
                DingTalkEvent.state != "handled"
            )
        ).all()
        session.close()
        out = []
        for row_id, event_type, error in failed:
            try:
                handle_event(row_id)
                retried = "ok"
            except Exception as exc:
                retried = f"{type(exc).__name__}: {exc}"[:200]
            out.append({"id": row_id, "type": event_type, "error": (error or "")[:200], "retry": retried})
            print(f"  failed event {row_id} {event_type}: {error!r:.200}; retried by hand: {retried}", file=sys.stderr)
        get_db().session().close()
    return out


def start_workers(count: int, env: dict[str, str], log_dir: Path) -> list[subprocess.Popen]:
    child_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    workers = []
    for n in range(count):
        log = (log_dir / f"worker-{n}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "worker"],
                cwd=ROOT,
                env=child_env,
                stdout=log,
                stderr=log,
            )
        )
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.terminate()
    for proc in workers:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def drive(sandbox: SandboxProcess, target: int, batch: int, seed: int, drivers: int) -> dict[str, Any]:
    """POST /_sandbox/changes in batches (from `drivers` threads at once) until `target` events were emitted."""
    lock = threading.Lock()
    totals = {"events": 0, "delivered": 0, "changes": 0, "batches": 0, "user": 0, "dept": 0}
    next_seed = [seed]
    errors: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                if totals["events"] >= target or errors:
                    return
                batch_seed = next_seed[0]
                next_seed[0] += 1
                # Ask for what is still missing (about 1.2 events per change), at most `batch` changes.
                count = max(1, min(batch, int((target - totals["events"]) / 1.2) + 1))
                totals["events"] += count  # reserve, corrected below, so parallel drivers do not overshoot much
            reply = requests.post(
                f"{sandbox.url}/_sandbox/changes", json={"count": count, "seed": batch_seed}, timeout=600
            )
            if reply.status_code != 200:
                with lock:
                    errors.append(f"{reply.status_code} {reply.text[:300]}")
                return
            body = reply.json()
            with lock:
                totals["events"] += body["count"] - count
                totals["delivered"] += body["delivered"]
                totals["changes"] += count
                totals["batches"] += 1
                for e in body["events"]:
                    totals["dept" if e["event_type"].startswith("org_dept") else "user"] += 1
                done = totals["events"]
            print(f"  … {done:,} events pushed", file=sys.stderr, flush=True)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(drivers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"POST /_sandbox/changes failed: {errors[0]}")
    totals["drive_s"] = time.perf_counter() - started
    return totals


def run(scale: str, qps: int, target: int, args: argparse.Namespace) -> dict[str, Any]:
    from werkzeug.serving import make_server

    from org_sync.full_sync import run_full_sync
    from tests.org_sync.truth import tree_differences

    web_port = free_port()
    var_dir = Path(tempfile.mkdtemp(prefix="bench-org-events-"))
    sandbox = SandboxProcess(
        "--scale", scale, "--seed", str(args.seed), "--qps", str(qps), "--events", "http",
        "--callback-url", f"http://127.0.0.1:{web_port}/dingtalk/callback",
    )  # fmt: skip
    with sandbox:
        env = {
            "SANDBOX_PORT": str(sandbox.port),
            "WORKBENCH_VAR_DIR": str(var_dir),
            "DINGTALK_QPS": str(qps),
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "ORG_SYNC_RECONCILE_SECONDS": "0",  # no nightly reconciliation slot inside the measurement
        }
        app = make_app(env)
        server = make_server("127.0.0.1", web_port, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        workers: list[subprocess.Popen] = []
        try:
            started = time.perf_counter()
            with app.app_context():
                seeded = run_full_sync()
            seed_s = time.perf_counter() - started
            assert seeded.state == "succeeded", seeded.state
            assert not tree_differences(app, sandbox), "the full sync did not match the truth"
            print(f"{scale} @ {qps}/s: seeded by a full sync in {seed_s:.1f} s", file=sys.stderr, flush=True)

            workers = start_workers(args.workers, env, var_dir)
            time.sleep(3)  # let the workers import and connect before the first event
            sandbox.admin("POST", "stats/reset")
            pushed = drive(sandbox, target, args.batch, args.change_seed, args.drivers)

            deadline = time.monotonic() + args.timeout
            settled_at: float | None = None
            while True:
                states = event_states(app)
                recorded = sum(states.values())
                handled = states.get("handled", 0)
                if recorded >= pushed["events"] and handled == recorded:
                    break
                # Nothing left to run but failed events: give RQ's retry `--stuck` seconds, then report them.
                if recorded >= pushed["events"] and not states.get("received"):
                    settled_at = settled_at or time.monotonic()
                    if time.monotonic() - settled_at > args.stuck:
                        break
                else:
                    settled_at = None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not all events handled in {args.timeout} s: {states}")
                if any(w.poll() is not None for w in workers):
                    raise RuntimeError("a worker exited; see its log in " + str(var_dir))
                print(f"  … {states}", file=sys.stderr, flush=True)
                time.sleep(2)
            stats = sandbox.admin("GET", "stats").json()["apis"]
            rows = event_times(app)  # measured before any retry by hand
            failed = retry_failed(app)
            differences = tree_differences(app, sandbox)
        finally:
            stop_workers(workers)
            server.shutdown()
            close_app(app)

    received = len(rows)
    rows = [r for r in rows if r[2] is not None]  # the figures are over the events the workers handled
    first = min(r[1] for r in rows)
    last_received = max(r[1] for r in rows)
    last = max(r[2] for r in rows)
    span = (last - first).total_seconds()
    latencies = [(r[2] - r[1]).total_seconds() * 1000 for r in rows]
    by_api = {path: s["accepted"] for path, s in stats.items()}
    user_events = sum(1 for r in rows if not r[0].startswith("org_dept"))
    dept_events = len(rows) - user_events
    result = {
        "scale": scale,
        "qps": qps,
        "events": len(rows),
        "received": received,
        "failed": failed,
        "user_events": user_events,
        "dept_events": dept_events,
        "changes": pushed["changes"],
        "batches": pushed["batches"],
        "delivered_first_try": pushed["delivered"],
        "seed_s": seed_s,
        "span_s": span,
        "ingest_s": (last_received - first).total_seconds(),
        "events_per_s": len(rows) / span,
        "ingest_per_s": len(rows) / max((last_received - first).total_seconds(), 1e-9),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "mean_ms": statistics.fmean(latencies),
        "user_get": by_api.get(USER_GET, 0),
        "dept_get": by_api.get(DEPT_GET, 0),
        "other_calls": sum(v for k, v in by_api.items() if k not in (USER_GET, DEPT_GET)),
        "throttled": sum(s["throttled"] for s in stats.values()),
        "max_in_1s": max((s["max_accepted_in_any_1s"] for s in stats.values()), default=0),
        "differences": len(differences),
        "first_differences": differences[:5],
    }
    # The limit's bound: user events need user/get, department events department/get, side by side.
    result["bound_s"] = max(user_events, dept_events) / qps
    result["bound_per_s"] = len(rows) / result["bound_s"]
    result["calls_bound_s"] = max(result["user_get"], result["dept_get"]) / qps
    print(result, file=sys.stderr, flush=True)
    return result


def section(results: list[dict[str, Any]], args: argparse.Namespace, command: str) -> list[str]:
    out = [
        "### Incremental (events)",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs · Python "
        f"{platform.python_version()} · {platform.platform()} · PostgreSQL + Redis/RQ, {args.workers} "
        f"`flask worker` processes, app served by werkzeug (threaded) on loopback.",
        "",
        "Reproduce:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Sandbox seed {args.seed}, tree seeded by a full sync; then `POST /_sandbox/changes` in batches of up to "
        f"{args.batch} changes (change seeds from {args.change_seed}, {args.drivers} driver(s) at once) until the "
        "wanted number of events was emitted; each event is pushed by encrypted HTTP to `/dingtalk/callback`, "
        "recorded (`received_at`), queued on RQ and applied by a worker (`handled_at`). End to end = events / "
        "(last `handled_at` − first `received_at`). Latency = `handled_at − received_at` per event, queueing "
        "included. Bound at the limit = events / (max(user events, department events) / limit): each user event "
        "costs ≥ 1 `user/get`, each department event ≥ 1 `department/get`, separate budgets.",
        "",
        "| scale | limit | events (user / dept) | changes | ingest | end to end | p50 | p95 | p99 | max "
        "| calls user/get / department/get / other | bound | events/s ÷ bound | tree = truth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        limit = "lifted" if r["qps"] >= LIFTED else f"{r['qps']}/s"
        bound = f"{r['bound_per_s']:,.1f}/s" if r["qps"] < LIFTED else "—"
        ratio = f"{r['events_per_s'] / r['bound_per_s']:.3f}" if r["qps"] < LIFTED else "—"
        retried = f" (after {len(r['failed'])} failed event(s) retried by hand)" if r["failed"] else ""
        out.append(
            f"| {r['scale']} | {limit} | {r['events']:,} ({r['user_events']:,} / {r['dept_events']:,}) | "
            f"{r['changes']:,} | {r['ingest_per_s']:,.1f}/s | **{r['events_per_s']:,.1f}/s** ({r['span_s']:,.1f} s) "
            f"| {r['p50_ms']:,.0f} ms | {r['p95_ms']:,.0f} ms | **{r['p99_ms']:,.0f} ms** | {r['max_ms']:,.0f} ms | "
            f"{r['user_get']:,} / {r['dept_get']:,} / {r['other_calls']:,} | {bound} | {ratio} | "
            f"{'yes' if r['differences'] == 0 else str(r['differences']) + ' differences'}"
            f"{retried} |"
        )
    out.append("")
    for r in results:
        for f in r["failed"]:
            out.append(
                f"- {r['scale']} at {'lifted' if r['qps'] >= LIFTED else str(r['qps']) + '/s'}: event {f['id']} "
                f"(`{f['type']}`) was left **failed** by the workers and not retried within the wait "
                "(RQ's interval retry needs an RQ scheduler, which `flask worker` does not start, and "
                "`requeue_unhandled` skips a job id still pending): "
                f"`{f['error'].splitlines()[0] if f['error'] else ''}`; retried once by hand after the measurement: "
                f"{f['retry']}. It is left out of the figures above."
            )
    if any(r["failed"] for r in results):
        out.append("")
    return out


def write_section(lines: list[str]) -> None:
    """Append (or replace) the subsection at the end of the "## Org sync" section of docs/BENCHMARKS.md."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    text = path.read_text(encoding="utf-8")
    block = "\n".join(lines).rstrip("\n") + "\n"
    start = text.index("\n## Org sync\n")
    end = text.find("\n## ", start + 1)
    end = len(text) if end < 0 else end
    body = text[start:end]
    if "\n### Incremental (events)\n" in body:
        cut = body.index("\n### Incremental (events)\n")
        rest = body.find("\n### ", cut + 1)
        body = body[:cut] + ("\n" + body[rest:] if rest >= 0 else "")
    body = body.rstrip("\n") + "\n\n" + block
    tail = text[end:]
    path.write_text(text[:start] + body + ("\n" + tail.lstrip("\n") if tail else ""), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="county", help="sandbox scale of both runs")
    parser.add_argument("--seed", type=int, default=3, help="sandbox seed")
    parser.add_argument("--events", type=int, default=10_000, help="events with the limit lifted")
    parser.add_argument("--real-events", type=int, default=3_000, help="events at the real 20/s (0: skip)")
    parser.add_argument("--real-qps", type=int, default=20)
    parser.add_argument("--lifted", action=argparse.BooleanOptionalAction, default=True, help="run the lifted run")
    parser.add_argument("--workers", type=int, default=4, help="RQ worker processes")
    parser.add_argument("--batch", type=int, default=500, help="changes per POST /_sandbox/changes (≤ 1000)")
    parser.add_argument("--drivers", type=int, default=2, help="POST /_sandbox/changes requests at once")
    parser.add_argument("--change-seed", type=int, default=2026)
    parser.add_argument("--stuck", type=float, default=45, help="seconds to wait for failed events to be retried")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the handlers")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args()
    if not (args.database_url and args.redis_url):
        parser.error("PostgreSQL and Redis are needed: --database-url/--redis-url or TEST_DATABASE_URL/TEST_REDIS_URL")

    results = []
    if args.lifted and args.events:
        results.append(run(args.scale, LIFTED, args.events, args))
    if args.real_events:
        results.append(run(args.scale, args.real_qps, args.real_events, args))
    extra = [a for a in sys.argv[1:] if a != "--no-write"]
    lines = section(results, args, COMMAND + "".join(" " + a for a in extra))
    print("\n".join(lines))
    if not args.no_write:
        write_section(lines)


if __name__ == "__main__":
    main()
