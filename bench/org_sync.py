"""Benchmark of the org full sync against a local sandbox (not a test): prints its figures and appends them to
the "Org sync" section of docs/BENCHMARKS.md (issue 3, "What must be shown", items 1-3).

(1) Calls used by a full sync against the minimum the tree needs (one `listsub` per department plus one
    `user/list` page per 100 direct members of each department), at small, county and city scale; with
    `department/get` for units (the default) and without it (`detail="none"`). Target ≤ 1.05.
(2) Wall time at the real limit (sandbox and gateway at 20 calls/s per API) at county scale against the bound
    the limit implies: the busiest API's calls / 20 (the APIs have separate budgets and run side by side).
    Target ≤ 1.15 × the bound.
(3) Province scale with the limit lifted: wall time and peak RSS of the whole sync (database writes included)
    against a naive baseline run on the same sandbox and database: serial casdoor-style — `listsub` per
    department, `listsimple` pages, one `user/get` per person, one INSERT and COMMIT per member and per
    membership. The baseline runs in full at city scale; at province scale its per-person phase runs under a
    time cap and the rest is extrapolated from its measured per-person rate (the output says so).
    Target ≥ 10× faster, < 500 MB.

Each sync runs in a child process (so its peak RSS is its own); the sandbox is another process.

    eval "$(bash scripts/test-services.sh)" && .venv/bin/python bench/org_sync.py

PostgreSQL and Redis come from --database-url/--redis-url, else TEST_DATABASE_URL/TEST_REDIS_URL; without them
the runs use SQLite and in-process limiting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _proxy in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_proxy, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from bench.report import write_section  # noqa: E402
from tests.support.sandbox import SandboxProcess  # noqa: E402

COMMAND = 'eval "$(bash scripts/test-services.sh)" && .venv/bin/python bench/org_sync.py'
LIFTED = 1_000_000
LISTSUB, USER_LIST, DEPT_GET = "/topapi/v2/department/listsub", "/topapi/v2/user/list", "/topapi/v2/department/get"


# --- child: one sync in its own process ---------------------------------------------------------------------------


def _app(port: int, qps: int, database_url: str | None, redis_url: str | None):
    from config import load_settings
    from tests.conftest import migrate, reset_postgres
    from workbench import create_app

    env = {
        "SANDBOX_PORT": str(port),
        "WORKBENCH_VAR_DIR": tempfile.mkdtemp(prefix="bench-org-"),
        "DINGTALK_QPS": str(qps),
    }
    env["LOG_LEVEL"] = "WARNING"
    if database_url:
        reset_postgres(database_url)
        env["DATABASE_URL"] = database_url
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        env["REDIS_URL"] = redis_url
    settings = load_settings(env, read_dotenv=False)
    migrate(settings.database_url)
    return create_app(settings)


def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    from org_sync.full_sync import run_full_sync

    app = _app(args.port, args.qps, args.database_url, args.redis_url)
    last = [0.0]

    def progress(p) -> None:
        if time.monotonic() - last[0] > 10:
            last[0] = time.monotonic()
            print(
                f"  … {p.depts_listed:,}/{p.depts_known:,} depts, {p.people:,} people, {p.calls_per_s:,.0f} calls/s",
                file=sys.stderr,
            )

    with app.app_context():
        started = time.perf_counter()
        result = run_full_sync(detail=args.detail, progress=progress, workers=args.workers)
        wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "state": result.state,
        "by_api": result.api_calls["by_api"],
        "total_calls": result.api_calls["total"],
        "throttles": result.api_calls["throttles"],
        "retries": result.api_calls["retries"],
        "members": result.counts["members"]["created"],
        "nodes": result.counts["nodes"]["created"],
        "apply_s": result.counts["apply_s"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """casdoor's syncer, transcribed: serial, N+1 user/get, one write and commit per row."""
    from collections import deque

    from org_sync.fetch import user_row
    from org_sync.models import OrgMember, OrgMembership, OrgNode
    from workbench.db import get_db, utcnow
    from workbench.dingtalk import get_gateway

    app = _app(args.port, args.qps, args.database_url, args.redis_url)
    calls = {"listsub": 0, "listsimple": 0, "user/get": 0}
    with app.app_context():
        gw, session = get_gateway(), get_db().session
        started = time.perf_counter()
        depts: list[int] = []
        queue = deque([1])
        while queue:
            dept = queue.popleft()
            depts.append(dept)
            calls["listsub"] += 1
            for child in gw.oapi(LISTSUB, {"dept_id": dept}).get("result") or []:
                queue.append(child["dept_id"])
                node = OrgNode(
                    corp_id="c",
                    dept_id=child["dept_id"],
                    name=child["name"],
                    level="x",
                    layer="x",
                    level_source="x",
                    path="/",
                    sort_order=0,
                    depth=0,
                )
                session.add(node)
                session.commit()
        t_depts = time.perf_counter() - started
        userids: dict[str, None] = {}
        for dept in depts:
            cursor = 0
            while True:
                calls["listsimple"] += 1
                body = {"dept_id": dept, "cursor": cursor, "size": 100}
                result = gw.oapi("/topapi/user/listsimple", body).get("result") or {}
                userids.update(dict.fromkeys(u["userid"] for u in result.get("list") or []))
                if not result.get("has_more"):
                    break
                cursor = result["next_cursor"]
        t_lists = time.perf_counter() - started
        node_ids = dict(session.query(OrgNode.dept_id, OrgNode.id).all())
        # The cap limits the per-person phase only: the department and listing phases always run in full.
        deadline = time.perf_counter() + args.cap if args.cap else None
        done = 0
        capped = False
        for userid in userids:
            if deadline and time.perf_counter() > deadline:
                capped = True
                break
            calls["user/get"] += 1
            item = gw.oapi("/topapi/v2/user/get", {"userid": userid})["result"]
            member = OrgMember(corp_id="c", created_at=utcnow(), updated_at=utcnow(), **user_row(item))
            session.add(member)
            session.commit()
            for dept in item.get("dept_id_list") or []:
                if dept in node_ids:
                    session.add(OrgMembership(member_id=member.id, node_id=node_ids[dept]))
                    session.commit()
            done += 1
        wall = time.perf_counter() - started
    people_s = wall - t_lists
    return {
        "wall_s": wall,
        "capped": capped,
        "people_done": done,
        "people_total": len(userids),
        "dept_phase_s": t_depts,
        "list_phase_s": t_lists - t_depts,
        "people_phase_s": people_s,
        # Extrapolation when capped: the phases done, plus every remaining person at the measured per-person rate.
        "estimated_full_s": t_lists + people_s / max(done, 1) * len(userids),
        "calls": calls,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(kind: str, sandbox: SandboxProcess, qps: int, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--port", str(sandbox.port), "--qps", str(qps)]
    for name in ("database_url", "redis_url"):
        if getattr(args, name):
            command += [f"--{name.replace('_', '-')}", getattr(args, name)]
    for key, value in extra.items():
        command += [f"--{key}", str(value)]
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, cwd=ROOT, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# --- parent ----------------------------------------------------------------------------------------------------------


def minimum_calls(sandbox: SandboxProcess) -> tuple[int, int, int]:
    """(departments, user pages, minimum calls) of the sandbox's current tree."""
    depts = sandbox.admin("GET", "truth", params={"only": "departments"}).json()["departments"]
    pages = sum(math.ceil(d["member_count"] / 100) for d in depts)
    return len(depts), pages, len(depts) + pages


def item1(args: argparse.Namespace, out: list[str]) -> None:
    out += [
        "### 1. Calls used against the minimum (limit lifted; seed 3)",
        "",
        "Minimum = one `listsub` per department + one `user/list` page per 100 direct members of each department",
        "(`ceil(members / 100)`, so an empty department needs no page). A sync cannot know a department is empty",
        "without asking, so it pays one `user/list` per empty department too; `department/get` is fetched only for",
        "nodes that look like units (for `code` and the real `order`).",
        "",
        "| scale | departments | minimum | listsub | user/list | department/get | total | ratio (≤ 1.05) "
        "| ratio without department/get |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scale in ("small", "county", "city"):
        with SandboxProcess("--scale", scale, "--seed", "3", "--qps", str(LIFTED)) as sandbox:
            depts, _pages, minimum = minimum_calls(sandbox)
            ours = run_child("ours", sandbox, LIFTED, args, detail="units")
            bare = run_child("ours", sandbox, LIFTED, args, detail="none")
        by = ours["by_api"]
        row = (
            f"| {scale} | {depts:,} | {minimum:,} | {by.get(LISTSUB, 0):,} | {by.get(USER_LIST, 0):,} | "
            f"{by.get(DEPT_GET, 0):,} | {ours['total_calls']:,} | {ours['total_calls'] / minimum:.3f} | "
            f"{bare['total_calls'] / minimum:.3f} |"
        )
        print(row, flush=True)
        out.append(row)
    out.append("")


def item2(args: argparse.Namespace, out: list[str]) -> None:
    with SandboxProcess("--scale", "county", "--seed", "3", "--qps", "20") as sandbox:
        depts, _pages, _minimum = minimum_calls(sandbox)
        sandbox.admin("POST", "stats/reset")
        ours = run_child("ours", sandbox, 20, args, detail="units")
        stats = sandbox.admin("GET", "stats").json()["apis"]
    busiest = max(ours["by_api"].values())
    bound = busiest / 20
    throttled = sum(s["throttled"] for s in stats.values())
    peak = max(s["max_accepted_in_any_1s"] for s in stats.values())
    ratio = ours["wall_s"] / bound
    out += [
        "### 2. Wall time at the real limit (county scale, seed 3, 20 calls/s per API in the sandbox and the gateway)",
        "",
        "Bound = the busiest API's calls / 20 per second: the three APIs have separate budgets and run side by side.",
        "The gateway's limiter admits at most 20 calls in any 1.04 s (its 40 ms jitter guard), i.e. 19.2/s at best.",
        "",
        "| departments | calls (listsub / user/list / get) | busiest API | bound | wall | wall / bound (≤ 1.15) "
        "| throttled by sandbox (retried) | most accepted in 1 s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
        f"| {depts:,} | {ours['by_api'].get(LISTSUB, 0)} / {ours['by_api'].get(USER_LIST, 0)} / "
        f"{ours['by_api'].get(DEPT_GET, 0)} | {busiest} | {bound:.1f} s | {ours['wall_s']:.1f} s | {ratio:.3f} | "
        f"{throttled} | {peak} |",
        "",
    ]
    print("\n".join(out[-3:]), flush=True)


def item3(args: argparse.Namespace, out: list[str]) -> None:
    out += [
        "### 3. Whole sync with the limit lifted: ours against the naive baseline, side by side",
        "",
        "Same sandbox, same database, one after the other; each in its own process (peak RSS is the sync's own).",
        "Ours: `run_full_sync`, 8 threads per API. Baseline = casdoor's syncer: serial, `listsub` BFS, `listsimple`",
        "pages, one `user/get` per person, one INSERT + COMMIT per department, member and membership.",
        "",
        "| scale | network | people | ours: wall | ours: calls | ours: apply | ours: peak RSS (< 500 MB) "
        "| baseline: wall | baseline: calls | baseline: peak RSS | speed-up (≥ 10×) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scale in ("city", args.province_scale):
        with SandboxProcess("--scale", scale, "--seed", "1", "--qps", str(LIFTED)) as sandbox:
            ours = run_child("ours", sandbox, LIFTED, args, detail="units")
            print(f"{scale}: ours {ours}", file=sys.stderr, flush=True)
            cap = 0 if scale == "city" else args.baseline_cap
            base = run_child("baseline", sandbox, LIFTED, args, cap=cap)
            print(f"{scale}: baseline {base}", file=sys.stderr, flush=True)
        base_wall = base["estimated_full_s"] if base["capped"] else base["wall_s"]
        note = (
            f"{base_wall:,.0f} s (est.; capped at {base['wall_s']:,.0f} s after {base['people_done']:,} of "
            f"{base['people_total']:,} people)"
            if base["capped"]
            else f"{base_wall:,.1f} s"
        )
        base_calls = base["calls"]["listsub"] + base["calls"]["listsimple"] + base["people_total"]
        out.append(_row(scale, "loopback", ours, note, base, base_wall))
        print(out[-1], flush=True)
        if not args.latency_ms:
            continue
        # The serial baseline waits out every call's latency one after another, so its wall time at a latency is
        # its loopback time plus calls × latency; ours runs its calls side by side and is measured again.
        latency = args.latency_ms / 1000
        with SandboxProcess(
            "--scale", scale, "--seed", "1", "--qps", str(LIFTED), "--latency", str(latency)
        ) as sandbox:
            slow = run_child("ours", sandbox, LIFTED, args, detail="units", workers=args.latency_workers)
            print(f"{scale}: ours at {args.latency_ms:g} ms {slow}", file=sys.stderr, flush=True)
        slow_base = base_wall + base_calls * latency
        note = f"{slow_base:,.0f} s (loopback + {base_calls:,} calls × {args.latency_ms:g} ms)"
        network = f"+{args.latency_ms:g} ms per call, ours {args.latency_workers} threads per API"
        out.append(_row(scale, network, slow, note, base, slow_base))
        print(out[-1], flush=True)
    out.append("")


def _row(scale: str, network: str, ours: dict[str, Any], note: str, base: dict[str, Any], base_wall: float) -> str:
    return (
        f"| {scale} | {network} | {ours['members']:,} | {ours['wall_s']:,.1f} s | {ours['total_calls']:,} | "
        f"{ours['apply_s']:,.1f} s | {ours['peak_rss_mb']:,.0f} MB | {note} | {sum(base['calls'].values()):,}"
        f"{'+' if base['capped'] else ''} | {base['peak_rss_mb']:,.0f} MB | {base_wall / ours['wall_s']:,.1f}× |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", default="1,2,3", help="which figures: 1 calls, 2 real limit, 3 lifted limit")
    parser.add_argument("--province-scale", default="province", help="scale of the big run in item 3")
    parser.add_argument("--baseline-cap", type=float, default=300, help="seconds the baseline may run at that scale")
    parser.add_argument("--latency-ms", type=float, default=0, help="item 3: also run ours with this added per call")
    parser.add_argument("--latency-workers", type=int, default=32, help="item 3: our threads per API at that latency")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    parser.add_argument("--child", choices=("ours", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--qps", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--detail", default="units", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--cap", type=float, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = child_ours(args) if args.child == "ours" else child_baseline(args)
        print(json.dumps(result))
        return

    items = set(args.items.split(","))
    backend = "PostgreSQL + Redis" if args.database_url else "SQLite, in-process limiter"
    out = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs · Python "
        f"{platform.python_version()} · {platform.platform()} · database: {backend}.",
        "",
        "Reproduce:",
        "",
        "```sh",
        COMMAND + ("" if items == {"1", "2", "3"} else f" --items {args.items}"),
        "```",
        "",
    ]
    if "1" in items:
        item1(args, out)
    if "2" in items:
        item2(args, out)
    if "3" in items:
        item3(args, out)
    print("\n".join(out))
    if not args.no_write:
        write_section("\n".join(["## Org sync", "", *out]), "## Org sync", keep_from="### Incremental (events)")


if __name__ == "__main__":
    main()
