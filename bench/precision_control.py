"""Benchmark of 精密智控 roster intake and dispatch (issue 9; not a test): `--rows` roster rows (default 1,000,000)
taken in from one CSV file and dispatched, in rows per second, against a bare bulk insert of the same rows into the
same PostgreSQL in the same run.

Set-up (PostgreSQL only): the database `workbench_bench_precision_control` on the server of `--database-url`, else
of TEST_DATABASE_URL, else of private services started by scripts/test-services.sh (like bench/supervision.py);
dropped, recreated and migrated to head. The tree: a sandbox at `county` scale (Hubei, Wufeng county: one county
bureau, one medical community, its lead hospital and ten member institutions) applied by a full sync. Service
areas like the county demonstration's (tests/precision_control/test_county_demo.py): the county to its bureau, a
township per institution, a village per township to the next institution. The roster: a CSV with the documented
Chinese headers, one distinct valid ID number per row (`idcard.make`), name, mobile, address, a division code
cycling over the mapped townships and villages, an unmapped township of the county and a code outside it (so some
rows queue), both categories and priorities.

Measured, as a province commission administrator (a `Principal` loaded as a request would load it):
- ours = `roster.import_file` (what `POST /campaigns/<id>/roster` calls, minus HTTP: every row checked, the ID
  number hashed, four fields encrypted with masked copies, deduplicated, linked to residents, written in one
  transaction with its audit record) into a draft campaign, then `service.update_campaign(state=active)`, which
  dispatches every person (set-based `dispatch.dispatch_persons`); rows/s = rows ÷ (intake + dispatch);
- the baseline = `COPY … FROM STDIN (FORMAT csv, HEADER)` of the very same file into a plain table of eight text
  columns, no constraint, no index (the fastest way rows get into PostgreSQL); median of `--repeat` runs, the table
  truncated between them;
- then the same file uploaded again (every row a duplicate: the idempotency path), for reference.
The ratio is ours ÷ baseline in rows per second. `--profile` runs the intake under cProfile and prints where the
time went; the intake's own CPU time is printed too (the rest is the server's, or waiting for a CPU).

Activation also announces the new tasks (`cards.send_assignment_notices`, timed on its own; service.dispatch_new
analyses the fresh tasks first, as dispatch does the persons: without statistics PostgreSQL nested-loops and the
notices took minutes for 20,000 tasks).

    .venv/bin/python bench/precision_control.py                   # 1,000,000 rows
    .venv/bin/python bench/precision_control.py --rows 100000     # a quick try
    .venv/bin/python bench/precision_control.py --rows 200000 --profile
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import database as bench_database  # noqa: E402

COMMAND = ".venv/bin/python bench/precision_control.py"
SERVICES = {
    "TEST_SERVICES_DIR": "/tmp/workbench-bench-precision-control",
    "TEST_PG_PORT": "55710",
    "TEST_REDIS_PORT": "56710",
}
DATABASE = "workbench_bench_precision_control"
COUNTY = "420528"  # 五峰土家族自治县, the `county` scale's county
HEADER = ["姓名", "身份证号", "手机号", "现住址", "行政区划代码", "类别", "来源", "优先级"]
BASELINE_COLUMNS = ("name", "id_number", "phone", "address", "division_code", "category", "source", "priority")


# --- set-up ---------------------------------------------------------------------------------------------------


def database_url(args: argparse.Namespace) -> str:
    return bench_database.url_for(DATABASE, args.database_url, SERVICES)


def make_app(url: str, sandbox_port: int, var_dir: str):
    from config import load_settings
    from tests.conftest import migrate
    from workbench import create_app

    env = {
        "DATABASE_URL": url,
        "SANDBOX_PORT": str(sandbox_port),
        "WORKBENCH_VAR_DIR": var_dir,
        "DINGTALK_QPS": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    settings = load_settings(env, read_dotenv=False)
    migrate(settings.database_url)
    return create_app(settings)


def prepare(session, truth: dict) -> tuple[Any, int, dict[str, int]]:
    """(the province administrator's principal, the province node, the service areas set: code → node)."""
    from mini_apps.precision_control import areas
    from org_sync.models import OrgMember, OrgNode
    from tests.support.tree import Tree
    from workbench.auth.principal import INSTITUTION_LEVELS, load_principal

    tree = Tree(truth)
    userid = tree.member_at("province_commission")["userid"]
    principal = load_principal(session, session.scalar(sa.select(OrgMember.id).where(OrgMember.userid == userid)))
    nodes = session.execute(sa.select(OrgNode.id, OrgNode.level).where(OrgNode.deleted_at.is_(None))).all()
    province = next(n.id for n in nodes if n.level == "province_commission")
    county = next(n.id for n in nodes if n.level == "county_bureau")
    institutions = sorted(n.id for n in nodes if n.level in INSTITUTION_LEVELS)
    mapped = {COUNTY: county}
    for k, institution in enumerate(institutions):
        township = f"{COUNTY}{100 + k:03d}"
        mapped[township] = institution
        mapped[f"{township}201"] = institutions[(k + 1) % len(institutions)]
    areas.set_areas(session, principal, [{"division_code": c, "node_id": n} for c, n in mapped.items()])
    return principal, province, mapped


def roster_csv(rows: int, codes: list[str]) -> bytes:
    """`rows` distinct persons: ID numbers of the county, sequence 001-999 of each birth day from 1930 on."""
    from mini_apps.family_doctor import idcard

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    start = dt.date(1930, 1, 1)
    for i in range(rows):
        number = idcard.make(COUNTY, start + dt.timedelta(days=i // 999), i % 999 + 1)
        writer.writerow(
            [
                f"居民{i % 100_000}",
                number,
                f"139{i:08d}",
                f"{COUNTY}村{i % 5000}组{i % 97}号",
                codes[i % len(codes)],
                ("发热", "密接")[i % 2],
                "发热门诊" if i % 3 else "",
                ("普通", "紧急")[i % 7 == 0],
            ]
        )
    return out.getvalue().encode()


def campaign(principal, session, province: int) -> int:
    from mini_apps.precision_control import service

    body = {
        "name": "基准测试：发热人群排查",
        "owner_node_id": province,
        "population": "发热门诊就诊者",
        "categories": ["发热", "密接"],
        "task_template": {
            "kind": "follow_up",
            "fields": [
                {"code": "result", "label": "检测结果", "type": "choice", "required": True, "choices": ["阴性", "阳性"]}
            ],
        },
        "deadline_hours": {"routine": 72, "urgent": 24},
        "escalation_hours": [0, 24, 48],
        "index_rule": {"measure": "completion_rate", "thresholds": [60, 70, 80, 90]},
        "starts_on": dt.date(2026, 11, 1),
        "ends_on": dt.date(2026, 12, 31),
        "retention_until": dt.date(2027, 6, 30),
    }
    return service.create_campaign(principal, body, session)["id"]


# --- measurements ---------------------------------------------------------------------------------------------


def baseline(engine: sa.Engine, content: bytes, rows: int, repeat: int) -> list[float]:
    """COPY of the same file into a plain table, `repeat` times (truncated before each, untimed)."""
    columns = ", ".join(f"{c} text" for c in BASELINE_COLUMNS)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_roster_baseline"))
        conn.execute(sa.text(f"CREATE TABLE bench_roster_baseline ({columns})"))
    times = []
    for _ in range(repeat):
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE bench_roster_baseline"))
        raw = engine.raw_connection()
        try:
            started = time.perf_counter()
            with raw.cursor() as cursor:
                copy_sql = f"COPY bench_roster_baseline ({', '.join(BASELINE_COLUMNS)}) FROM STDIN (FORMAT csv, HEADER)"
                with cursor.copy(copy_sql) as copy:
                    view = memoryview(content)
                    for offset in range(0, len(view), 1 << 20):
                        copy.write(view[offset : offset + (1 << 20)])
            raw.commit()
            times.append(time.perf_counter() - started)
        finally:
            raw.close()
    with engine.connect() as conn:
        copied = conn.scalar(sa.text("SELECT count(*) FROM bench_roster_baseline"))
    assert copied == rows, (copied, rows)
    return times


def timed(module: Any, name: str) -> list[float]:
    """Wrap `module.name(session, …)` to record how long each call takes (the list returned fills as it is
    called)."""
    real = getattr(module, name)
    spent: list[float] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    setattr(module, name, wrapper)
    return spent


def machine(engine: sa.Engine) -> dict[str, str]:
    return bench_database.machine(engine, ("shared_buffers", "work_mem", "synchronous_commit", "max_wal_size"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (its database is not touched; a bench one is made)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="roster rows (distinct persons)")
    parser.add_argument("--repeat", type=int, default=3, help="baseline runs (the median is used)")
    parser.add_argument("--profile", action="store_true", help="run the intake under cProfile and print the top")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import logging
    import tempfile

    logging.basicConfig(level=logging.WARNING)

    from mini_apps.precision_control import cards, roster, service
    from mini_apps.precision_control.models import CampaignPerson, ControlTask
    from org_sync.full_sync import run_full_sync
    from tests.support.sandbox import SandboxProcess
    from workbench import close_app, db

    url = database_url(args)
    bench_database.recreate(url)
    engine = sa.create_engine(url)
    data: dict[str, Any] = {"rows": args.rows, "machine": machine(engine), "load": [os.getloadavg()[0]]}
    with (
        SandboxProcess("--scale", "county", "--seed", "3", "--qps", "1000000") as sandbox,
        tempfile.TemporaryDirectory() as var,
    ):
        app = make_app(url, sandbox.port, var)
        try:
            with app.app_context():
                started = time.perf_counter()
                if run_full_sync().state != "succeeded":
                    raise SystemExit("full sync failed")
                print(f"tree synced in {time.perf_counter() - started:.1f} s", flush=True)
                session = db.session()
                principal, province, mapped = prepare(session, sandbox.admin("GET", "truth").json())
                codes = [c for c in mapped if c != COUNTY] + [f"{COUNTY}999", "420502003"]
                started = time.perf_counter()
                content = roster_csv(args.rows, codes)
                data["file_mb"] = len(content) / 1e6
                print(f"roster of {args.rows:,} rows ({data['file_mb']:.1f} MB) made in "
                      f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
                campaign_id = campaign(principal, session, province)

                profiler = None
                if args.profile:
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                started, cpu = time.perf_counter(), time.process_time()
                report = roster.import_file(principal, campaign_id, "roster.csv", content, session)
                data["intake"] = time.perf_counter() - started
                data["intake_cpu"] = time.process_time() - cpu
                if profiler is not None:
                    profiler.disable()
                assert (report["added"], report["rejected"]) == (args.rows, 0), report
                print(f"intake: {data['intake']:.1f} s ({args.rows / data['intake']:,.0f} rows/s), "
                      f"{data['intake_cpu']:.1f} s of it this process's CPU", flush=True)  # fmt: skip
                notices = timed(cards, "send_assignment_notices")
                started = time.perf_counter()
                service.update_campaign(principal, campaign_id, {"state": "active"}, session)
                data["dispatch"] = time.perf_counter() - started
                data["notices"] = sum(notices)
                print(f"dispatch: {data['dispatch']:.1f} s ({args.rows / data['dispatch']:,.0f} rows/s), of which "
                      f"assignment notices {data['notices']:.1f} s", flush=True)  # fmt: skip
                data["load"].append(os.getloadavg()[0])

                persons = session.scalar(
                    sa.select(sa.func.count())
                    .select_from(CampaignPerson)
                    .where(CampaignPerson.campaign_id == campaign_id)
                )
                states = dict(
                    session.execute(
                        sa.select(ControlTask.state, sa.func.count())
                        .where(ControlTask.campaign_id == campaign_id)
                        .group_by(ControlTask.state)
                    ).all()
                )
                assert persons == sum(states.values()) == args.rows, (persons, states)
                data["states"] = states

                started = time.perf_counter()
                again = roster.import_file(principal, campaign_id, "roster.csv", content, session)
                data["again"] = time.perf_counter() - started
                assert (again["added"], again["duplicates"]) == (0, args.rows), again
                print(f"re-upload (all duplicates): {data['again']:.1f} s", flush=True)
        finally:
            close_app(app)

    data["baseline"] = baseline(engine, content, args.rows, args.repeat)
    data["load"].append(os.getloadavg()[0])
    print(f"baseline COPY: {[round(t, 2) for t in data['baseline']]} s", flush=True)
    print()
    print(render(data))
    if profiler is not None:
        import pstats

        print("\nintake profile (top 25 by own time):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    engine.dispose()


def render(data: dict[str, Any]) -> str:
    rows = data["rows"]
    ours = data["intake"] + data["dispatch"]
    base = statistics.median(data["baseline"])
    ours_rate, base_rate = rows / ours, rows / base
    m = data["machine"]
    lines = [
        f"Rows: {rows:,} ({data['file_mb']:.1f} MB CSV); tasks by state after dispatch: {data['states']}",
        "",
        "| step | seconds | rows/s |",
        "|---|---:|---:|",
        f"| intake (`roster.import_file`) | {data['intake']:.1f} | {rows / data['intake']:,.0f} |",
        f"| of which this process's CPU | {data['intake_cpu']:.1f} | |",
        f"| dispatch (activation) | {data['dispatch']:.1f} | {rows / data['dispatch']:,.0f} |",
        f"| of which announcing the tasks (`cards.send_assignment_notices`) | {data['notices']:.1f} | |",
        f"| **ours: intake + dispatch** | {ours:.1f} | **{ours_rate:,.0f}** |",
        f"| **baseline: COPY of the same file** (median of {len(data['baseline'])}) | {base:.2f} "
        f"| **{base_rate:,.0f}** |",
        f"| re-upload of the same file (all duplicates) | {data['again']:.1f} | {rows / data['again']:,.0f} |",
        "",
        f"**Ratio ours ÷ baseline: {ours_rate / base_rate:.3f}** "
        f"(the baseline is {base_rate / ours_rate:.0f}× faster).",
        "",
        f"Machine: {m['cpu']}, Python {m['python']}, PostgreSQL {m['postgresql']} ({m['settings']}); "
        f"load average {', '.join(f'{x:.1f}' for x in data['load'])} (start, after dispatch, after baseline).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
