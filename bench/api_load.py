"""Load generators for bench/api.py: `wrk` (parsed from its `--latency` report) or a multi-process Python client.

Both hold `connections` keep-alive connections busy for `seconds` and return requests per second, the median and
99th-percentile latency, and the count of failed requests (non-2xx answers, socket errors).
"""

from __future__ import annotations

import http.client
import multiprocessing
import re
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * UNITS_MS[unit]


def wrk_load(url: str, headers: dict[str, str], connections: int, threads: int, seconds: float) -> Result:
    duration = f"{max(1, round(seconds))}s"
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "--latency", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"unexpected wrk report for {url}:\n{out}")
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in match.groups())
    return Result(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(percentiles["50"]),
        p99_ms=_ms(percentiles["99"]),
        requests=requests_done,
        errors=errors,
    )


def _client(url: str, headers: dict[str, str], start: float, deadline: float, out) -> None:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    latencies: list[float] = []
    errors = 0
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < deadline:
        began = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            reply = conn.getresponse()
            reply.read()
            if reply.status >= 300:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            continue
        latencies.append((time.perf_counter() - began) * 1000)
    conn.close()
    out.put((latencies, errors))


def python_load(url: str, headers: dict[str, str], connections: int, seconds: float) -> Result:
    """One process per connection (no GIL between clients), started together, stopped at the same deadline."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start = time.time() + 0.5
    deadline = start + seconds
    procs = [ctx.Process(target=_client, args=(url, headers, start, deadline, queue)) for _ in range(connections)]
    for proc in procs:
        proc.start()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        got, failed = queue.get(timeout=seconds + 60)
        latencies += got
        errors += failed
    for proc in procs:
        proc.join(10)
    latencies.sort()
    count = len(latencies)
    if not count:
        return Result(0.0, 0.0, 0.0, 0, errors)
    return Result(
        rps=count / seconds,
        p50_ms=latencies[count // 2],
        p99_ms=latencies[min(count - 1, int(count * 0.99))],
        requests=count,
        errors=errors,
    )
