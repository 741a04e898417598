"""Benchmark of the signed-in API under gunicorn (not a test): requests per second and 99th-percentile latency of
`GET /api/me` and `GET /api/workbench/apps`, side by side with a bare Flask endpoint returning a constant
(`/_bench/constant`, bench/api_wsgi.py) under the same server in the same run (issue 4, "What must be shown").

Set-up, all its own: PostgreSQL and Redis from scripts/test-services.sh in a private directory on private ports;
a sandbox at `county` scale (Wufeng: one bureau, one 医共体, ~140 village clinics, ~950 people) whose tree is
applied to the database; gunicorn with the project's gunicorn.conf.py (gthread; workers = 2 × CPUs + 1 with
Redis, 8 threads each), the app's JSON request log going to a file as in production. Two realistic members sign in
through a sandbox free-login code exactly as the H5 shell does: a village doctor (乡村医生, the most numerous user)
and a county bureau administrator.

Load: `wrk` from Debian (installed with apt-get when missing and running as root), keep-alive connections, the
bearer token as a header; without wrk, a multi-process Python client. Each endpoint is measured in several rounds,
interleaved with the constant, and the median round is reported. Ratio = endpoint rps / constant rps.

    .venv/bin/python bench/api.py            # prints the figures
    .venv/bin/python bench/api.py --write    # and replaces the "## API" section of docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _proxy in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_proxy, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from bench.api_load import Result, python_load, wrk_load  # noqa: E402
from bench.report import DOC, write_section  # noqa: E402
from tests.support.sandbox import SandboxProcess, free_port  # noqa: E402

COMMAND = ".venv/bin/python bench/api.py --write"
SERVICES = {"TEST_SERVICES_DIR": "/tmp/workbench-bench-api", "TEST_PG_PORT": "55620", "TEST_REDIS_PORT": "56620"}


# --- set-up ---------------------------------------------------------------------------------------------------


def start_services(services: dict[str, str] = SERVICES) -> tuple[str, str]:
    """Private PostgreSQL and Redis (directory and ports from `services`); returns (database URL, Redis URL)."""
    out = subprocess.run(
        ["bash", "scripts/test-services.sh"],
        cwd=ROOT,
        env={**os.environ, **services},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = dict(re.findall(r"export (\w+)=(\S+)", out))
    return found["TEST_DATABASE_URL"], found["TEST_REDIS_URL"]


def seed(sandbox: SandboxProcess, env: dict[str, str]) -> None:
    """Migrate a fresh schema and apply the sandbox's tree to it (what a full sync leaves behind)."""
    import redis

    from config import load_settings
    from tests.conftest import migrate, reset_postgres
    from tests.support.auth import seed_tree
    from workbench import close_app, create_app

    reset_postgres(env["DATABASE_URL"])
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    settings = load_settings(env, read_dotenv=False)
    migrate(settings.database_url)
    app = create_app(settings)
    started = time.perf_counter()
    seed_tree(app, sandbox)
    print(f"  tree applied in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    close_app(app)


@dataclass
class Member:
    label: str
    userid: str
    name: str
    title: str
    unit: str


def pick_members(sandbox: SandboxProcess) -> list[Member]:
    """A village doctor (in a 卫生室 of a township hospital) and a county bureau administrator, from the truth."""
    truth = sandbox.admin("GET", "truth").json()
    depts = {d["dept_id"]: d for d in truth["departments"]}

    def first(predicate) -> dict:
        for user in truth["users"]:
            nodes = [depts[i] for i in user["dept_id_list"] if i in depts]
            if len(nodes) == 1 and predicate(user, nodes[0]):
                return {**user, "_unit": nodes[0]["name"]}
        raise SystemExit("no such member in the sandbox")

    doctor = first(lambda u, d: "卫生室" in d["name"] and u.get("title") == "乡村医生")
    admin = first(lambda u, d: d["_level"] == "county_bureau")
    return [
        Member("village doctor", doctor["userid"], doctor["name"], doctor["title"], doctor["_unit"]),
        Member("county administrator", admin["userid"], admin["name"], admin["title"], admin["_unit"]),
    ]


class Gunicorn:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        log = self.log_path.open("wb")
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self.proc = subprocess.Popen(
            [gunicorn, "-c", "gunicorn.conf.py", "bench.api_wsgi:app"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/_bench/constant", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit("gunicorn did not answer in 90 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def sign_in(server: Gunicorn, sandbox: SandboxProcess, member: Member) -> str:
    code = sandbox.admin("POST", "auth-code", json={"userid": member.userid, "kind": "h5"}).json()["code"]
    reply = requests.post(server.url + "/api/auth/dingtalk", json={"code": code}, timeout=10)
    reply.raise_for_status()
    return reply.json()["access_token"]


# --- measuring ------------------------------------------------------------------------------------------------


@dataclass
class Target:
    label: str
    path: str
    token: str | None
    body_bytes: int = 0
    statements: float = 0.0  # SQL statements per request
    solo_ms: float = 0.0  # one request at a time, in-process (test client): the endpoint's own cost


def count_statements(env: dict[str, str], targets: list[Target]) -> None:
    """SQL statements each endpoint runs per request, and its time alone: in-process through the test client,
    one request at a time after a warm-up, request logging on as under gunicorn (to /dev/null)."""
    import logging

    import sqlalchemy as sa

    from config import load_settings
    from workbench import close_app, create_app

    app = create_app(load_settings(env, read_dotenv=False))  # INFO: each request logged, as under gunicorn
    app.add_url_rule("/_bench/constant", "bench_constant", lambda: {"status": "ok", "bench": "constant"})
    client = app.test_client()
    seen = [0]
    engine = app.extensions["workbench.db"].engine
    sa.event.listen(engine, "before_cursor_execute", lambda *a: seen.__setitem__(0, seen[0] + 1))
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed below
    streams = [
        (handler, handler.setStream(devnull))
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler)
    ]
    for target in targets:
        headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
        for _ in range(20):
            client.get(target.path, headers=headers)
        seen[0] = 0
        for _ in range(5):
            assert client.get(target.path, headers=headers).status_code == 200
        target.statements = seen[0] / 5
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(40):
                client.get(target.path, headers=headers)
            timings.append((time.perf_counter() - started) / 40 * 1000)
        target.solo_ms = min(timings)
    for handler, stream in streams:
        handler.setStream(stream)
    devnull.close()
    close_app(app)


def have_wrk() -> bool:
    if shutil.which("wrk"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk from Debian's packages", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False, capture_output=True)
    return shutil.which("wrk") is not None


def measure(server: Gunicorn, target: Target, args: argparse.Namespace, use_wrk: bool) -> Result:
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    if use_wrk:
        return wrk_load(server.url + target.path, headers, args.connections, args.threads, args.seconds)
    return python_load(server.url + target.path, headers, args.connections, args.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per endpoint (median reported)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--python-client", action="store_true", help="use the Python client even if wrk is there")
    parser.add_argument("--write", action="store_true", help="replace the '## API' section of docs/BENCHMARKS.md")
    args = parser.parse_args()

    use_wrk = not args.python_client and have_wrk()
    print("starting PostgreSQL and Redis", file=sys.stderr)
    database_url, redis_url = start_services()
    var_dir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "WORKBENCH_VAR_DIR": str(var_dir),
        "ACCESS_TOKEN_SECONDS": "3600",  # outlive the run
        "ORG_SYNC_RECONCILE_SECONDS": "0",
    }
    with SandboxProcess("--scale", "county", "--seed", "1", "--qps", "1000000") as sandbox:
        env["SANDBOX_PORT"] = str(sandbox.port)
        print(f"sandbox (county scale) on {sandbox.url}; seeding the tree", file=sys.stderr)
        seed(sandbox, env)
        members = pick_members(sandbox)
        with Gunicorn(env, var_dir / "gunicorn.log") as server:
            workers = len(_children(server.proc.pid))
            targets = [Target("constant (bare Flask)", "/_bench/constant", None)]
            missing: list[str] = []
            for member in members:
                token = sign_in(server, sandbox, member)
                for path in ("/api/me", "/api/workbench/apps"):
                    reply = requests.get(server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
                    if reply.status_code == 404 and path not in missing:
                        missing.append(path)
                        print(f"  {path} is not served by this app (404): left out", file=sys.stderr)
                    if reply.status_code == 404:
                        continue
                    if reply.status_code != 200:
                        raise SystemExit(f"{path} as {member.label}: {reply.status_code} {reply.text[:300]}")
                    targets.append(Target(f"{path} · {member.label}", path, token, len(reply.content)))
            targets[0].body_bytes = len(requests.get(server.url + "/_bench/constant", timeout=5).content)
            count_statements(env, targets)
            load_before = os.getloadavg()[0]

            print(f"gunicorn: {workers} workers × {os.environ.get('WEB_THREADS', '8')} threads", file=sys.stderr)
            for target in targets:  # warm every worker's connection pool and caches
                measure(server, target, argparse.Namespace(**{**vars(args), "seconds": 2}), use_wrk)
            results: dict[str, list[Result]] = {t.label: [] for t in targets}
            for round_no in range(args.rounds):
                order = targets[round_no % len(targets) :] + targets[: round_no % len(targets)]
                for target in order:
                    result = measure(server, target, args, use_wrk)
                    results[target.label].append(result)
                    print(
                        f"  round {round_no + 1} {target.label:<42} {result.rps:>8,.0f} rps  "
                        f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                        file=sys.stderr,
                    )

            load_after = os.getloadavg()[0]

    report = render(targets, results, members, workers, use_wrk, args, (load_before, load_after))
    if missing:
        report += f"\nNot measured (404, not served by this build): {', '.join(missing)}.\n"
    print(report)
    if args.write:
        write_section(report, "## API")
        print(f"wrote the API section of {DOC.relative_to(ROOT)}", file=sys.stderr)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _median(results: list[Result]) -> Result:
    ranked = sorted(results, key=lambda r: r.rps)
    return ranked[len(ranked) // 2]


def render(targets, results, members, workers: int, use_wrk: bool, args, load: tuple[float, float]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    client = (
        f"wrk {args.threads} threads, {args.connections} keep-alive connections"
        if use_wrk
        else f"Python client, {args.connections} processes with keep-alive connections"
    )
    base = _median(results[targets[0].label])
    lines = [
        "## API",
        "",
        f"Measured {now} on {os.cpu_count()} CPUs (nproc) · Python {platform.python_version()} · "
        f"{platform.platform()} · PostgreSQL + Redis (private test services) · gunicorn gthread, {workers} workers × "
        f"{os.environ.get('WEB_THREADS', '8')} threads (gunicorn.conf.py) · load: {client}, on the same machine · "
        f"1-minute load average {load[0]:.1f} before the rounds, {load[1]:.1f} after.",
        "",
        "Reproduce:",
        "",
        "```sh",
        COMMAND,
        "```",
        "",
        f"### Signed-in reads against a bare endpoint (county scale, {args.rounds} rounds × {args.seconds:g} s, "
        "median round)",
        "",
        "Members signed in through a sandbox free-login code: "
        + "; ".join(f"{m.label} {m.name} ({m.title}, {m.unit})" for m in members)
        + ". `constant` is `GET /_bench/constant` (bench/api_wsgi.py), a Flask route returning a constant JSON "
        "object in the same app, server and run: same middleware and request logging. Ratio = rps / constant rps. "
        "`alone ms` = one request at a time in-process (test client, best of 5 × 40), the endpoint's own cost "
        "without the server or contention; `SQL / request` counts statements sent to PostgreSQL.",
        "",
        "| endpoint | body bytes | SQL / request | alone ms | rps | ratio | p50 ms | p99 ms | p99 / constant p99 "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in targets:
        r = _median(results[target.label])
        lines.append(
            f"| {target.label} | {target.body_bytes:,} | {target.statements:g} | {target.solo_ms:.2f} | {r.rps:,.0f} | "
            f"{r.rps / base.rps:.2f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.p99_ms / base.p99_ms:.2f} | {r.errors} |"
        )
    spread = {t.label: (min(x.rps for x in results[t.label]), max(x.rps for x in results[t.label])) for t in targets}
    lines += [
        "",
        "Round-to-round rps range: "
        + "; ".join(f"{label} {lo:,.0f}–{hi:,.0f}" for label, (lo, hi) in spread.items())
        + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
