"""Benchmark of compensation settlement (issue 10; not a test): settling a whole province — every county's twelve
monthly advances (月度预拨) and its annual true-up (年度清算) through `settlement.settle` — against the physical
bound measured in the same run: one PostgreSQL scan of every current workload row, aggregated to the grain
settlement needs.

Set-up (PostgreSQL only): the database `workbench_bench_compensation` on the server of `--database-url`, else of
TEST_DATABASE_URL, else of private services started by scripts/test-services.sh (like bench/supervision.py);
dropped, recreated and migrated to head. Then, seeded directly (Core executemany for the small tables, COPY for
members and workload, the workload's secondary indexes and foreign keys dropped during the load and rebuilt from
their definitions, then VACUUM ANALYZE):
- the tree as org sync writes it (materialised paths and depths): 1 province commission, 11 city commissions,
  `--counties` county bureaus (90: the province of reference/domain.md §7.3), one or two medical-community lead
  hospitals per county (two in four counties of five), eight member institutions under each lead — at 90 counties
  162 leads + 1,296 members = 1,458 grassroots institutions, every one settled;
- `--doctors` org members (default 60,000 × counties ÷ 90) with a membership in one institution each (round
  robin); one finance officer per county (a `finance_officer` grant on the county bureau, no position), whose
  principal (`load_principal`, as a request loads it) settles that county;
- 200 service items in the three packages (80 basic medical, 80 public health, 40 family-doctor contract); one
  published province table for 2026 with values for the three tiers, every third county a published adjustment
  of it (20 items, tiers 1 and 2, +10 %); institution tiers 1/2/3 round robin;
- prices per county and package for 2026: basic medical budget-driven everywhere, public health fixed in even
  counties and budget-driven in odd ones, contract fixed; a banding per county (fixed, linear and fixed bands);
  an assessment for every institution; a scheme per county (advance share 0.8; the gap-subsidy variant in every
  fourth county, whose institutions have a fee income every month); line items in March, June, September and
  December;
- workload for the twelve months of 2026: every institution has a row per month for 190 of the items (the
  institution rows); every doctor ten items a month (per-doctor rows): three of the ten doctor-only items
  (190–199, sent only per doctor: settlement sums the doctors' rows) and seven of the others (whose institution
  row is then exactly the sum of its doctors' rows, and settlement must read the institution row alone) — both
  paths of `_quantity_rows`. About 1 % of institution rows have excluded units (a `comp_workload_exclusions` row
  each, `qty_raw` = verified + excluded) and about 0.5 % an older, superseded version (a correction).

Measured, as each county's finance officer, committing like the API does:
- advances: for each month, every county's `settle(…, "advance", month)`, then (untimed: approvals are not the
  work measured) the month's drafts set to approved by one UPDATE, so the annual true-up sees them;
- annual: every county's `settle(…, "annual", "2026")`;
- per phase: wall time, this process's CPU time, the workload rows `_quantity_rows` returned (rows read), the
  settlements written, and the process's peak RSS during the phase (VmHWM, reset before each phase through
  /proc/self/clear_refs; the seeding's own peak is therefore not counted);
- the bound: `SELECT institution_id, period, item_id, coalesce(sum(qty_verified) FILTER (WHERE member_id IS
  NULL), sum(qty_verified)) FROM comp_workload WHERE is_current GROUP BY 1, 2, 3` — one (parallel) scan of every
  current row, doctors' rows included, producing the quantity settlement uses per institution, month and item
  (the institution's row, else its doctors' sum). Cache warmed by one unmeasured run; median of `--repeat`.
  Why this one: settlement must read every current row (each twice: once in its month's advance, once in the
  annual true-up) and reduce it to that grain; anything less (a count) does not produce what settlement needs,
  anything more (the 当量 join, prices, the snapshot) is settlement's own work. The ratio is settle (advances +
  annual) ÷ bound.
- a checksum (SHA-256) of every settled figure, line and frozen snapshot (ids included; the seed is
  deterministic), so two runs — or two implementations — can be compared;
- then internal distribution (二次分配, unless `--no-distribution`): every annual settlement approved (untimed),
  each institution given an administrator and a distribution rule (seeded, untimed), and
  `distribution.distribute(session, principal, settlement_id)` timed per annual settlement.

`--compare REV` settles the same data first with `mini_apps/compensation/settlement.py` as it is at git revision
REV (loaded from `git show`, in this process only), clears the settlements (untimed), then with the working tree's
module, and prints both side by side with both checksums. `--profile` runs one county's annual true-up under
cProfile (before the measured runs, on a copy of the data it then rolls back) and prints the top.

    .venv/bin/python bench/compensation.py                       # a quick try: 6 counties (~97 institutions)
    .venv/bin/python bench/compensation.py --counties 90         # the province (1,458 institutions, 60,000 doctors)
    .venv/bin/python bench/compensation.py --counties 90 --compare d641e89
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import database as bench_database  # noqa: E402

COMMAND = ".venv/bin/python bench/compensation.py"
SERVICES = {
    "TEST_SERVICES_DIR": "/tmp/workbench-bench-compensation",
    "TEST_PG_PORT": "55720",
    "TEST_REDIS_PORT": "56720",
}
DATABASE = "workbench_bench_compensation"
YEAR = 2026
MONTHS = [f"{YEAR}-{m:02d}" for m in range(1, 13)]
CITIES = 11
MEMBERS_PER_LEAD = 8
ITEMS = 200
PACKAGE_OF = ["basic_medical"] * 80 + ["public_health"] * 80 + ["contract"] * 40
DOCTOR_ONLY = list(range(190, 200))  # item indexes sent only per doctor
SHARED = list(range(190))  # item indexes with an institution row every month
DOCTOR_ITEMS_SHARED = 7
DOCTOR_ITEMS_ONLY = 3
BANDS = [
    {"min": 0, "max": 60, "coefficient": "0.8"},
    {"min": 60, "max": 90, "from": "0.9", "to": "1.0"},
    {"min": 90, "max": 100, "coefficient": "1.05"},
]
SCORES = ["55", "60", "75.5", "89.99", "90", "100", "68.3", "81", "92.5", "71"]
LAYERS = {
    "province_commission": "administrative",
    "city_commission": "administrative",
    "county_bureau": "administrative",
    "medical_community_lead": "operational",
    "member_institution": "service",
}
ACTOR = "bench:seed"


# --- set-up ---------------------------------------------------------------------------------------------------


def database_url(args: argparse.Namespace) -> str:
    return bench_database.url_for(DATABASE, args.database_url, SERVICES)


def tree(counties: int) -> tuple[list[dict[str, Any]], dict[int, list[int]]]:
    """The nodes (ids assigned here, paths and depths as org sync writes them) and county → institution ids."""
    rows: list[dict[str, Any]] = []

    def add(parent: dict | None, level: str, name: str) -> dict:
        node_id = len(rows) + 1
        row = {
            "id": node_id,
            "corp_id": "bench-corp",
            "dept_id": 1_000_000 + node_id,
            "parent_id": parent["id"] if parent else None,
            "name": name,
            "sort_order": node_id,
            "level": level,
            "layer": LAYERS[level],
            "level_source": "code",
            "path": (parent["path"] if parent else "/") + f"{node_id}/",
            "depth": 0 if parent is None else parent["depth"] + 1,
        }
        rows.append(row)
        return row

    province = add(None, "province_commission", "浙江省卫生健康委员会")
    cities = [add(province, "city_commission", f"第{i + 1}市卫生健康委员会") for i in range(CITIES)]
    institutions: dict[int, list[int]] = {}
    for c in range(counties):
        county = add(cities[c % CITIES], "county_bureau", f"第{c + 1}县卫生健康局")
        ids = institutions[county["id"]] = []
        # ~1.8 医共体 per county (§7.3): two in four counties of five, one in the fifth.
        for lead_no in range(1 if c % 5 == 4 else 2):
            lead = add(county, "medical_community_lead", f"第{c + 1}县第{lead_no + 1}医共体总院")
            ids.append(lead["id"])
            for m in range(MEMBERS_PER_LEAD):
                ids.append(add(lead, "member_institution", f"第{c + 1}县第{lead_no + 1}医共体成员单位{m + 1}")["id"])
    return rows, institutions


def _drop_for_load(conn: sa.Connection, table: str) -> list[str]:
    """Drop the table's secondary indexes and foreign keys; return the statements that rebuild them."""
    rebuild = []
    for name, definition in conn.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype = 'f'"
        ),
        {"t": table},
    ).all():
        conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
        rebuild.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for name, definition in conn.execute(
        sa.text(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = CAST(:t AS regclass) AND NOT x.indisprimary"
        ),
        {"t": table},
    ).all():
        conn.execute(sa.text(f'DROP INDEX "{name}"'))
        rebuild.insert(0, definition)
    return rebuild


def _copy(engine: sa.Engine, table: str, columns: tuple[str, ...], lines: Iterator[str]) -> None:
    """COPY text-format lines (tab-separated, \\N for NULL) into the table, in ~4 MB chunks."""
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            buffer = io.StringIO()
            for line in lines:
                buffer.write(line)
                if buffer.tell() > 1 << 22:
                    copy.write(buffer.getvalue())
                    buffer = io.StringIO()
            copy.write(buffer.getvalue())
        raw.commit()
    finally:
        raw.close()


def _value(item: int, tier: int) -> Decimal:
    """The province table's 当量: 0.5 … 12.5 by item, +20 % at tier 2, +40 % at tier 3 (4 places)."""
    base = Decimal("0.5") + Decimal(item % 49) * Decimal("0.25")
    return (base * (Decimal(1) + Decimal("0.2") * (tier - 1))).quantize(Decimal("0.0001"))


def _doctor_items(k: int) -> tuple[list[int], list[int]]:
    """Doctor k's items: seven shared ones (with an institution row) and three doctor-only ones."""
    shared = [SHARED[(k * 7 + j * 27) % len(SHARED)] for j in range(DOCTOR_ITEMS_SHARED)]
    only = [DOCTOR_ONLY[(k + j) % len(DOCTOR_ONLY)] for j in range(DOCTOR_ITEMS_ONLY)]
    return shared, only


def _doctor_qty(k: int, month: int, item: int) -> Decimal:
    units = (k * 3 + month * 5 + item) % 40 + 1
    return Decimal(units) + (Decimal("0.5") if item in DOCTOR_ONLY and (k + month) % 4 == 0 else 0)


def seed(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Everything settlement reads, for `args.counties` counties and `args.doctors` doctors."""
    from tests.conftest import migrate

    info: dict[str, Any] = {}
    started = time.perf_counter()
    bench_database.recreate(url)
    migrate(url)
    info["migrate"] = time.perf_counter() - started
    started = time.perf_counter()
    engine = sa.create_engine(url)
    nodes, by_county = tree(args.counties)
    counties = list(by_county)
    institutions = [i for ids in by_county.values() for i in ids]
    county_of = {i: c for c, ids in by_county.items() for i in ids}
    now = dt.datetime.now(dt.UTC)
    md = sa.MetaData()
    md.reflect(engine)
    t = md.tables

    with engine.begin() as conn:
        conn.execute(sa.insert(t["org_nodes"]), [{**n, "created_at": now, "updated_at": now} for n in nodes])
        # Members: the doctors (1 …), then one finance officer per county.
        officers = {c: args.doctors + n + 1 for n, c in enumerate(counties)}
    member_cols = ("id", "corp_id", "userid", "name", "active", "is_admin", "is_boss", "created_at", "updated_at")
    stamp = now.isoformat()

    def members() -> Iterator[str]:
        for k in range(args.doctors):
            yield f"{k + 1}\tbench-corp\tdoc{k + 1}\t医生{k + 1}\tt\tf\tf\t{stamp}\t{stamp}\n"
        for c, m in officers.items():
            yield f"{m}\tbench-corp\tfin{c}\t财务{c}\tt\tf\tf\t{stamp}\t{stamp}\n"

    _copy(engine, "org_members", member_cols, members())
    doctor_institution = [institutions[k % len(institutions)] for k in range(args.doctors)]
    _copy(
        engine,
        "org_memberships",
        ("member_id", "node_id", "is_leader", "sort_order"),
        (f"{k + 1}\t{doctor_institution[k]}\tf\t0\n" for k in range(args.doctors)),
    )
    with engine.begin() as conn:
        for table in ("org_nodes", "org_members"):
            conn.execute(
                sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            )
        conn.execute(
            sa.insert(t["auth_role_grants"]),
            [
                {"member_id": m, "role": "finance_officer", "node_id": c, "granted_by": ACTOR, "granted_at": now}
                for c, m in officers.items()
            ],
        )
        conn.execute(
            sa.insert(t["comp_items"]),
            [
                {
                    "id": n + 1,
                    "code": f"ITEM-{n + 1:03d}",
                    "name": f"服务项目{n + 1}",
                    "package": PACKAGE_OF[n],
                    "unit": "人次",
                    "quality_rule": {},
                    "active": True,
                    "created_by": ACTOR,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(ITEMS)
            ],
        )
        table_row = {
            "created_by": ACTOR,
            "created_at": now,
            "published_by": ACTOR,
            "published_at": now,
            "state": "published",
            "valid_from": dt.date(YEAR, 1, 1),
            "valid_to": None,
        }
        conn.execute(
            sa.insert(t["comp_tables"]),
            [
                {
                    **table_row,
                    "id": 1,
                    "region_node_id": 1,
                    "base_table_id": None,
                    "version": f"{YEAR}",
                    "name": f"{YEAR}年省标化工作当量表",
                    "adjust_min_pct": Decimal(-20),
                    "adjust_max_pct": Decimal(20),
                }
            ]
            + [
                {
                    **table_row,
                    "id": 2 + n,
                    "region_node_id": c,
                    "base_table_id": 1,
                    "version": f"{YEAR}-县调整",
                    "name": f"{YEAR}年县级调整",
                    "adjust_min_pct": None,
                    "adjust_max_pct": None,
                }
                for n, c in enumerate(counties[::3])
            ],
        )
        values = [
            {"table_id": 1, "item_id": n + 1, "tier": tier, "value": _value(n, tier)}
            for n in range(ITEMS)
            for tier in (1, 2, 3)
        ]
        values += [
            {
                "table_id": 2 + n,
                "item_id": item + 1,
                "tier": tier,
                "value": (_value(item, tier) * Decimal("1.1")).quantize(Decimal("0.0001")),
            }
            for n, _ in enumerate(counties[::3])
            for item in range(0, ITEMS, 10)
            for tier in (1, 2)
        ]
        conn.execute(sa.insert(t["comp_table_values"]), values)
        conn.execute(
            sa.insert(t["comp_institution_tiers"]),
            [
                {"institution_id": i, "tier": n % 3 + 1, "set_by": ACTOR, "set_at": now}
                for n, i in enumerate(institutions)
            ],
        )
        prices = []
        for n, c in enumerate(counties):
            size = len(by_county[c])
            prices.append({"county_id": c, "package": "basic_medical", "year": YEAR, "method": "budget",
                           "budget": Decimal(1_500_000) * size, "price": None})  # fmt: skip
            prices.append(
                {"county_id": c, "package": "public_health", "year": YEAR, "method": "fixed", "budget": None,
                 "price": Decimal("28.5000")}
                if n % 2 == 0
                else {"county_id": c, "package": "public_health", "year": YEAR, "method": "budget",
                      "budget": Decimal(900_000) * size, "price": None}
            )  # fmt: skip
            prices.append({"county_id": c, "package": "contract", "year": YEAR, "method": "fixed", "budget": None,
                           "price": Decimal("35.0000")})  # fmt: skip
        conn.execute(sa.insert(t["comp_unit_prices"]), [{**p, "set_by": ACTOR, "set_at": now} for p in prices])
        conn.execute(
            sa.insert(t["comp_bandings"]),
            [{"county_id": c, "year": YEAR, "version": 1, "bands": BANDS, "is_current": True, "set_by": ACTOR,
              "set_at": now} for c in counties],
        )  # fmt: skip
        conn.execute(
            sa.insert(t["comp_assessments"]),
            [{"institution_id": i, "year": YEAR, "score": Decimal(SCORES[n % len(SCORES)]), "set_by": ACTOR,
              "set_at": now} for n, i in enumerate(institutions)],
        )  # fmt: skip
        gap_counties = set(counties[::4])
        conn.execute(
            sa.insert(t["comp_county_schemes"]),
            [{"county_id": c, "year": YEAR, "advance_share": Decimal("0.8"), "gap_subsidy": c in gap_counties,
              "set_by": ACTOR, "set_at": now} for c in counties],
        )  # fmt: skip
        categories = ["infrastructure", "equipment", "informatisation", "training", "retirees", "policy"]
        conn.execute(
            sa.insert(t["comp_line_items"]),
            [{"institution_id": i, "period": f"{YEAR}-{m:02d}", "category": categories[(n + m) % 6],
              "amount": Decimal(10_000 + (n * 37 + m) % 50_000) + Decimal("0.50"), "created_by": ACTOR,
              "created_at": now} for n, i in enumerate(institutions) for m in (3, 6, 9, 12)],
        )  # fmt: skip
        conn.execute(
            sa.insert(t["comp_fee_incomes"]),
            [{"institution_id": i, "period": month, "amount": Decimal(20_000 + (n * 131 + m * 17) % 90_000),
              "set_by": ACTOR, "set_at": now}
             for n, i in enumerate(institutions) if county_of[i] in gap_counties for m, month in enumerate(MONTHS)],
        )  # fmt: skip
        batch_id = conn.execute(
            sa.insert(t["comp_workload_batches"]).returning(t["comp_workload_batches"].c.id),
            {"source": "feed", "batch_key": "bench", "sha256": "0" * 64, "state": "applied", "items": 0,
             "submitted_by": ACTOR, "submitted_at": now},
        ).scalar_one()  # fmt: skip
        rebuild = _drop_for_load(conn, "comp_workload") + _drop_for_load(conn, "comp_workload_exclusions")
    info["small_tables"] = time.perf_counter() - started

    # Workload, institution by institution (its doctors' sums are needed for its rows).
    started = time.perf_counter()
    counts = {"institution": 0, "doctor": 0, "superseded": 0, "excluded": 0}
    exclusions: list[str] = []
    doctors_of: dict[int, list[int]] = {i: [] for i in institutions}
    for k, i in enumerate(doctor_institution):
        doctors_of[i].append(k)
    next_id = 0

    b = batch_id

    def workload() -> Iterator[str]:
        nonlocal next_id
        for n, i in enumerate(institutions):
            mine = [(k, *_doctor_items(k)) for k in doctors_of[i]]
            for m, month in enumerate(MONTHS, start=1):
                sums: dict[int, Decimal] = {}
                for k, shared, only in mine:
                    for item in shared + only:
                        qty = _doctor_qty(k, m, item)
                        next_id += 1
                        counts["doctor"] += 1
                        yield f"{next_id}\t{i}\t{k + 1}\t{month}\t{item + 1}\t{qty}\t{qty}\t{b}\t1\tt\t\\N\t{stamp}\n"
                        if item not in DOCTOR_ONLY:
                            sums[item] = sums.get(item, Decimal(0)) + qty
                for item in SHARED:
                    qty = sums.get(item)
                    if qty is None:
                        qty = Decimal((n * 7 + item * 3 + m * 11) % 500 + 10)
                    next_id += 1
                    key = next_id
                    raw = qty
                    if key % 97 == 0:  # units the quality gate kept out
                        units = key % 3 + 1
                        raw = qty + units
                        counts["excluded"] += 1
                        exclusions.append(f"{key}\tREC-{key}\t{units}\trequired_fields\t缺少必填项：随访日期\n")
                    if key % 211 == 0:  # a correction: the first version kept, not current
                        counts["superseded"] += 1
                        yield f"{key}\t{i}\t\\N\t{month}\t{item + 1}\t{raw + 5}\t{qty + 5}\t{b}\t1\tf\t\\N\t{stamp}\n"
                        next_id += 1
                        yield f"{next_id}\t{i}\t\\N\t{month}\t{item + 1}\t{raw}\t{qty}\t{b}\t2\tt\t{key}\t{stamp}\n"
                        if exclusions and exclusions[-1].startswith(f"{key}\t"):
                            exclusions[-1] = f"{next_id}" + exclusions[-1][len(str(key)) :]
                    else:
                        yield f"{key}\t{i}\t\\N\t{month}\t{item + 1}\t{raw}\t{qty}\t{batch_id}\t1\tt\t\\N\t{stamp}\n"
                    counts["institution"] += 1

    columns = ("id", "institution_id", "member_id", "period", "item_id", "qty_raw", "qty_verified", "batch_id",
               "version", "is_current", "supersedes_id", "recorded_at")  # fmt: skip
    _copy(engine, "comp_workload", columns, workload())
    _copy(
        engine,
        "comp_workload_exclusions",
        ("quantity_id", "record_ref", "units", "rule", "reason"),
        iter(exclusions),
    )
    info["workload_copy"] = time.perf_counter() - started
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('comp_workload', 'id'), (SELECT max(id) FROM comp_workload))")
        )
        for statement in rebuild:
            conn.execute(sa.text(statement))
        conn.execute(
            sa.text("UPDATE comp_workload_batches SET items = :n WHERE id = :b"), {"n": next_id, "b": batch_id}
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        info["workload_mb"] = conn.scalar(sa.text("SELECT pg_total_relation_size('comp_workload')")) / 2**20
    info["indexes"] = time.perf_counter() - started
    info.update(
        counties=len(counties),
        leads=sum(1 for n in nodes if n["level"] == "medical_community_lead"),
        members=sum(1 for n in nodes if n["level"] == "member_institution"),
        institutions=len(institutions),
        doctors=args.doctors,
        adjusted_counties=len(counties[::3]),
        gap_counties=len(gap_counties),
        rows=counts,
        officers=officers,
    )
    engine.dispose()
    return info


# --- measurements ---------------------------------------------------------------------------------------------


def load_revision(rev: str) -> types.ModuleType:
    """`mini_apps/compensation/settlement.py` as it is at git revision `rev`, as a separate module (this process
    only; the tree is not touched)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:mini_apps/compensation/settlement.py"], cwd=ROOT, check=True, capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    name = f"bench_settlement_{rev}"
    module = types.ModuleType(name)
    module.__file__ = f"{rev}:mini_apps/compensation/settlement.py"
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def counted(module: types.ModuleType, name: str) -> tuple[list[int], Callable[[], None]]:
    """Wrap `module.name` to record the length of each result; returns the list and an undo."""
    real = getattr(module, name)
    sizes: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        sizes.append(len(result))
        return result

    setattr(module, name, wrapper)
    return sizes, lambda: setattr(module, name, real)


def settle_all(engine: sa.Engine, module: types.ModuleType, info: dict[str, Any]) -> dict[str, Any]:
    """Every county's twelve advances (approved in between, untimed), then every county's annual true-up."""
    from sqlalchemy import orm

    from workbench.auth.principal import load_principal

    session = orm.Session(engine)
    principals = {c: load_principal(session, m) for c, m in info["officers"].items()}
    session.close()
    counties = sorted(principals)
    out: dict[str, Any] = {}
    rows, undo = counted(module, "_quantity_rows")
    try:
        for phase, calls in (
            ("advances", [("advance", month) for month in MONTHS]),
            ("annual", [("annual", f"{YEAR}")]),
        ):
            spent = 0.0
            cpu = 0.0
            settled = 0
            rows.clear()
            slowest = (0.0, "")
            _reset_peak()
            for kind, period in calls:
                for county in counties:
                    session = orm.Session(engine)
                    started, cpu_started = time.perf_counter(), time.process_time()
                    result = module.settle(session, principals[county], county, kind, period)
                    took = time.perf_counter() - started
                    spent += took
                    cpu += time.process_time() - cpu_started
                    settled += len(result["items"])
                    slowest = max(slowest, (took, f"{county} {period}"))
                    session.close()
                if kind == "advance":
                    with engine.begin() as conn:  # the county's approval, not measured
                        conn.execute(
                            sa.text(
                                "UPDATE comp_settlements SET state = 'approved', decided_by = 'bench', "
                                "decided_at = now() WHERE kind = 'advance' AND period = :p AND state = 'draft'"
                            ),
                            {"p": period},
                        )
                print(f"  {phase} {period}: {spent:.1f} s so far", flush=True)
            out[phase] = {
                "seconds": spent,
                "cpu": cpu,
                "calls": len(calls) * len(counties),
                "settlements": settled,
                "rows_read": sum(rows),
                "peak_mb": _peak_mb(),
                "slowest": slowest,
            }
    finally:
        undo()
    return out


def distribute_all(engine: sa.Engine, info: dict[str, Any]) -> dict[str, Any] | None:
    """Every annual settlement approved (one UPDATE, untimed), each institution given an administrator (a member
    with an `institution_admin` grant on it) and a distribution rule (seeded, untimed), then
    `distribution.distribute` of each annual settlement as that administrator (timed). None when the module is
    not there."""
    try:
        from mini_apps.compensation import distribution
    except ImportError:
        return None
    from sqlalchemy import orm

    from workbench.auth.principal import load_principal

    now = dt.datetime.now(dt.UTC)
    md = sa.MetaData()
    md.reflect(engine, only=["org_members", "auth_role_grants", "comp_distribution_rules"])
    t = md.tables
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE comp_settlements SET state = 'approved', decided_by = 'bench', decided_at = now() "
                "WHERE kind = 'annual' AND state = 'draft'"
            )
        )
        settled = conn.execute(
            sa.text("SELECT id, institution_id FROM comp_settlements WHERE kind = 'annual' ORDER BY institution_id")
        ).all()
        first = conn.scalar(sa.text("SELECT max(id) FROM org_members")) + 1
        admins = {i: first + n for n, (_, i) in enumerate(settled)}
        conn.execute(
            sa.insert(t["org_members"]),
            [{"id": m, "corp_id": "bench-corp", "userid": f"adm{i}", "name": f"机构管理员{i}", "active": True,
              "is_admin": False, "is_boss": False, "created_at": now, "updated_at": now} for i, m in admins.items()],
        )  # fmt: skip
        conn.execute(
            sa.insert(t["auth_role_grants"]),
            [{"member_id": m, "role": "institution_admin", "node_id": i, "granted_by": ACTOR, "granted_at": now}
             for i, m in admins.items()],
        )  # fmt: skip
        conn.execute(
            sa.insert(t["comp_distribution_rules"]),
            [{"institution_id": i, "version": 1, "is_current": True, "pool_share": Decimal("0.6"),
              "average_share": Decimal("0.2"), "default_coefficient": Decimal(1), "coefficient_min": Decimal("0.5"),
              "coefficient_max": Decimal(2), "coefficients": [], "cap_multiple": Decimal(3),
              "packages": ["basic_medical", "public_health", "contract"], "set_by": ACTOR, "set_at": now}
             for i in admins],
        )  # fmt: skip
        conn.execute(
            sa.text("SELECT setval(pg_get_serial_sequence('org_members', 'id'), (SELECT max(id) FROM org_members))")
        )
    session = orm.Session(engine)
    principals = {i: load_principal(session, m) for i, m in admins.items()}
    session.close()
    # `distribute` answers through `get_distribution`, whose read audit writes through the app's database.
    import tempfile

    from config import load_settings
    from workbench import close_app, create_app

    var = tempfile.TemporaryDirectory()
    env = {"DATABASE_URL": engine.url.render_as_string(hide_password=False), "WORKBENCH_VAR_DIR": var.name}
    app = create_app(load_settings({**env, "LOG_LEVEL": "WARNING"}, read_dotenv=False))
    context = app.app_context()
    context.push()
    spent = cpu = 0.0
    refused: dict[str, int] = {}
    slowest = (0.0, "")
    _reset_peak()
    for settlement_id, institution_id in settled:
        session = orm.Session(engine)
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            distribution.distribute(session, principals[institution_id], settlement_id)
        except Exception as error:  # a 409 (nothing to distribute) is an answer too; counted by message
            session.rollback()
            key = str(getattr(error, "message", error))[:60]
            refused[key] = refused.get(key, 0) + 1
        took = time.perf_counter() - started
        spent += took
        cpu += time.process_time() - cpu_started
        slowest = max(slowest, (took, f"settlement {settlement_id}"))
        session.close()
    context.pop()
    close_app(app)
    var.cleanup()
    with engine.connect() as conn:
        doctors = conn.scalar(sa.text("SELECT count(*) FROM comp_distribution_shares"))
        snapshot_mb = conn.scalar(sa.text("SELECT sum(pg_column_size(snapshot)) / 1048576.0 FROM comp_distributions"))
    print(f"  distribution: {spent:.1f} s", flush=True)
    return {
        "seconds": spent,
        "cpu": cpu,
        "calls": len(settled),
        "distributions": len(settled) - sum(refused.values()),
        "shares": doctors,
        "refused": refused,
        "peak_mb": _peak_mb(),
        "slowest": slowest,
        "snapshot_mb": float(snapshot_mb or 0),
    }


def checksum(engine: sa.Engine) -> tuple[str, dict[str, Any]]:
    """SHA-256 over every settlement's figures and snapshot and every line (ids included), in a fixed order."""
    digest = hashlib.sha256()
    totals: dict[str, Any] = {}
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=2000).execute(
            sa.text(
                "SELECT id, institution_id, county_id, kind, period, revision, state, equivalents::text, "
                "prices::text, coefficient, purchase_amount, line_item_amount, fee_income, gap_subsidy, "
                "advances_paid, payable, snapshot::text FROM comp_settlements ORDER BY kind, period, institution_id, "
                "revision"
            )
        )
        for row in result:
            digest.update(repr(tuple(row)).encode())
        result = conn.execution_options(yield_per=20000).execute(
            sa.text(
                "SELECT settlement_id, item_id, item_code, package, quantity, excluded, equivalent, equivalents, "
                "quantity_ids::text FROM comp_settlement_lines ORDER BY settlement_id, item_code"
            )
        )
        for row in result:
            digest.update(repr(tuple(row)).encode())
        for kind, payable, count, snapshot_mb in conn.execute(
            sa.text(
                "SELECT kind, sum(payable), count(*), sum(pg_column_size(snapshot)) / 1048576.0 "
                "FROM comp_settlements GROUP BY kind"
            )
        ):
            totals[kind] = {"payable": payable, "count": count, "snapshot_mb": float(snapshot_mb)}
        totals["lines"] = conn.scalar(sa.text("SELECT count(*) FROM comp_settlement_lines"))
    return digest.hexdigest(), totals


def clear(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM comp_settlement_lines"))
        conn.execute(sa.text("DELETE FROM comp_settlements"))
        conn.execute(sa.text("DELETE FROM audit_records WHERE action LIKE 'compensation.settlement.%'"))
        # The same ids in the second run: the snapshot freezes the advances' ids.
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('comp_settlements', 'id'), 1, false)"))
        conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('comp_settlement_lines', 'id'), 1, false)"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE comp_settlements"))
        conn.execute(sa.text("VACUUM ANALYZE comp_settlement_lines"))


BOUND = (
    "SELECT institution_id, period, item_id, "
    "coalesce(sum(qty_verified) FILTER (WHERE member_id IS NULL), sum(qty_verified)) "
    "FROM comp_workload WHERE is_current GROUP BY 1, 2, 3"
)


def scan_bound(engine: sa.Engine, repeat: int) -> tuple[list[float], int, str]:
    """The bound, run to completion on the server (the groups fetched and counted by the client: settlement needs
    them client-side too); one unmeasured warm-up run first."""
    times = []
    groups = 0
    with engine.connect() as conn:
        plan = "\n".join(r[0] for r in conn.execute(sa.text(f"EXPLAIN {BOUND}")))
        for n in range(repeat + 1):
            started = time.perf_counter()
            groups = len(conn.execute(sa.text(BOUND)).all())
            if n:
                times.append(time.perf_counter() - started)
    return times, groups, plan


def profile_one(engine: sa.Engine, module: types.ModuleType, info: dict[str, Any]) -> str:
    """One county's advance of January and annual true-up under cProfile, rolled back."""
    import cProfile
    import pstats

    from sqlalchemy import orm

    from workbench.auth.principal import load_principal

    county = min(info["officers"])
    out = io.StringIO()
    for kind, period in (("advance", MONTHS[0]), ("annual", f"{YEAR}")):
        connection = engine.connect()
        transaction = connection.begin()
        session = orm.Session(bind=connection, join_transaction_mode="create_savepoint")
        principal = load_principal(session, info["officers"][county])
        if kind == "annual":
            session.execute(
                sa.text("UPDATE comp_settlements SET state = 'approved' WHERE county_id = :c AND kind = 'advance'"),
                {"c": county},
            )
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            module.settle(session, principal, county, kind, period)
        except Exception as error:  # the annual needs approved advances: print what happened
            out.write(f"{kind}: {error!r}\n")
        profiler.disable()
        session.close()
        transaction.rollback()
        connection.close()
        out.write(f"\n--- {kind} {period}, county {county} (top 20 by cumulative, then by own time) ---\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(20)
        stats.sort_stats("tottime").print_stats(20)
    return out.getvalue()


def machine(engine: sa.Engine) -> dict[str, str]:
    settings = ("shared_buffers", "work_mem", "max_parallel_workers_per_gather", "synchronous_commit", "fsync")
    return bench_database.machine(engine, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (its database is not touched; a bench one is made)")
    parser.add_argument("--counties", type=int, default=6, help="county bureaus (90: the province)")
    parser.add_argument("--doctors", type=int, help="doctors with per-doctor workload (default 60,000 × counties ÷ 90)")
    parser.add_argument("--repeat", type=int, default=3, help="bound runs (the median is used)")
    parser.add_argument("--compare", metavar="REV", help="settle first with settlement.py at this git revision")
    parser.add_argument("--profile", action="store_true", help="profile one county's settlement first")
    parser.add_argument("--no-distribution", action="store_true", help="skip distributing the annual settlements")
    args = parser.parse_args()
    if args.doctors is None:
        args.doctors = round(60_000 * args.counties / 90)
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    from mini_apps.compensation import settlement

    url = database_url(args)
    started = time.perf_counter()
    info = seed(url, args)
    info["seed_total"] = time.perf_counter() - started
    rows = info["rows"]
    print(
        f"seeded in {info['seed_total']:.1f} s (migrate {info['migrate']:.1f}, "
        f"small tables {info['small_tables']:.1f}, "
        f"workload COPY {info['workload_copy']:.1f}, indexes + VACUUM ANALYZE {info['indexes']:.1f}): "
        f"{info['institutions']:,} institutions in {info['counties']} counties, {info['doctors']:,} doctors, "
        f"workload rows: {rows} ({info['workload_mb']:.0f} MB with indexes)",
        flush=True,
    )
    engine = sa.create_engine(url)
    data: dict[str, Any] = {"info": info, "machine": machine(engine), "load": [os.getloadavg()[0]], "runs": []}
    if args.profile:
        print(profile_one(engine, settlement, info))
    implementations = [(f"settlement.py at {args.compare}", load_revision(args.compare))] if args.compare else []
    implementations.append(("settlement.py (working tree)", settlement))
    for label, module in implementations:
        clear(engine)  # also after --profile, whose rolled-back inserts still advanced the id sequences
        print(f"settling with {label}", flush=True)
        phases = settle_all(engine, module, info)
        digest, totals = checksum(engine)
        data["runs"].append({"label": label, "phases": phases, "checksum": digest, "totals": totals})
        data["load"].append(os.getloadavg()[0])
        print(f"  checksum {digest}", flush=True)
    data["bound"], data["groups"], data["plan"] = scan_bound(engine, args.repeat)
    data["distribution"] = None if args.no_distribution else distribute_all(engine, info)
    data["load"].append(os.getloadavg()[0])
    engine.dispose()
    print()
    print(render(data))


def render(data: dict[str, Any]) -> str:
    info = data["info"]
    rows = info["rows"]
    bound = statistics.median(data["bound"])
    m = data["machine"]
    current = rows["institution"] + rows["doctor"]
    lines = [
        f"Province: {info['counties']} counties, {info['leads']} lead hospitals + {info['members']} member "
        f"institutions = {info['institutions']:,} institutions settled, {info['doctors']:,} doctors; 200 items; "
        f"{info['adjusted_counties']} counties with a table adjustment, {info['gap_counties']} in the gap variant.",
        f"Workload 2026: {current:,} current rows ({rows['institution']:,} institution rows, {rows['doctor']:,} "
        f"per-doctor rows), {rows['superseded']:,} superseded versions, {rows['excluded']:,} rows with excluded "
        f"units; {info['workload_mb']:.0f} MB with indexes. Seeding (not judged): {info['seed_total']:.0f} s.",
        "",
        "| run | phase | calls | settlements | rows read | seconds | CPU s (this process) | peak RSS MB "
        "| slowest call |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in data["runs"]:
        total = 0.0
        for phase, p in run["phases"].items():
            total += p["seconds"]
            lines.append(
                f"| {run['label']} | {phase} | {p['calls']:,} | {p['settlements']:,} | {p['rows_read']:,} | "
                f"{p['seconds']:.1f} | {p['cpu']:.1f} | {p['peak_mb']:.0f} | {p['slowest'][0]:.2f} s "
                f"(county {p['slowest'][1]}) |"
            )
        run["total"] = total
        lines.append(f"| {run['label']} | **settle total** | | | | **{total:.1f}** | | | |")
    lines += [
        f"| bound | one scan → {data['groups']:,} groups (median of {len(data['bound'])}) | | | "
        f"{current + rows['superseded']:,} "
        f"| **{bound:.2f}** ({', '.join(f'{x:.2f}' for x in data['bound'])}) | | | |",
        "",
    ]
    for run in data["runs"]:
        t = run["totals"]
        lines.append(
            f"**{run['label']}: ratio settle ÷ bound = {run['total'] / bound:.0f}** "
            f"(advances {run['phases']['advances']['seconds'] / bound:.0f}, annual "
            f"{run['phases']['annual']['seconds'] / bound:.0f}); checksum `{run['checksum'][:16]}…`; "
            f"{t.get('advance', {}).get('count', 0):,} advances (payable {t.get('advance', {}).get('payable')}, "
            f"snapshots {t.get('advance', {}).get('snapshot_mb', 0):.0f} MB), {t.get('annual', {}).get('count', 0):,} "
            f"annual (payable {t.get('annual', {}).get('payable')}, snapshots "
            f"{t.get('annual', {}).get('snapshot_mb', 0):.0f} MB), {t['lines']:,} lines."
        )
    d = data.get("distribution")
    if d:
        lines.append(
            f"\nInternal distribution (`distribution.distribute`, each annual settlement approved, as its "
            f"institution's administrator): {d['calls']:,} calls, {d['distributions']:,} distributions, "
            f"{d['shares']:,} personal shares in {d['seconds']:.1f} s (CPU {d['cpu']:.1f} s, peak RSS "
            f"{d['peak_mb']:.0f} MB, slowest {d['slowest'][0]:.2f} s; snapshots {d['snapshot_mb']:.0f} MB); "
            f"refused: {d['refused'] or 'none'}."
        )
    if len(data["runs"]) == 2:
        same = data["runs"][0]["checksum"] == data["runs"][1]["checksum"]
        lines.append(f"\nChecksums {'identical' if same else 'DIFFER'}; speed-up "
                     f"{data['runs'][0]['total'] / data['runs'][1]['total']:.2f}×.")  # fmt: skip
    lines += [
        "",
        f"Machine: {m['cpu']}, Python {m['python']}, PostgreSQL {m['postgresql']} ({m['settings']}); 1-minute "
        f"load average {', '.join(f'{x:.1f}' for x in data['load'])} (start, after each run, after the bound).",
        "",
        "Bound plan:",
        "```",
        data["plan"],
        "```",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
