"""Load generators for the benches: `wrk` (parsed from its `--latency` report) or a multi-process Python client.

Both hold `connections` keep-alive connections busy for `seconds` and return requests per second, the median and
99th-percentile latency, and the count of failed requests (non-2xx answers, socket errors). They send either one
GET again and again (`wrk_load`, `python_load`: bench/api.py) or a list of calls in turn (`wrk_calls`,
`python_calls`: bench/referral.py, where each create or accept must be its own request).
"""

from __future__ import annotations

import http.client
import multiprocessing
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


@dataclass(frozen=True)
class Call:
    """One request: method, path (with its query) and a JSON body ("" for none)."""

    method: str
    path: str
    body: str = ""


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * UNITS_MS[unit]


# --- wrk ----------------------------------------------------------------------------------------------------------

# One request per line of the file named by the first argument ("METHOD<TAB>path<TAB>body"), thread i of n taking
# lines i, i+n, ...; after the last line a thread starts again from its first.
CALLS_LUA = r"""
local counter = 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
function init(args)
  local nthreads = tonumber(args[2])
  reqs = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid - 1 then
      local method, path, body = line:match("^(%u+)\t([^\t]*)\t(.*)$")
      if body == "" then body = nil end
      reqs[#reqs + 1] = wrk.format(method, path, nil, body)
    end
    i = i + 1
  end
  n = 0
end
function request()
  n = n + 1
  if n > #reqs then n = 1 end
  return reqs[n]
end
"""


def _wrk(command: list[str], what: str) -> Result:
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"unexpected wrk report for {what}:\n{out}")
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(x) for x in match.groups())
    return Result(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(percentiles["50"]),
        p99_ms=_ms(percentiles["99"]),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        errors=errors,
    )


def _wrk_command(headers: dict[str, str], connections: int, threads: int, seconds: float) -> list[str]:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += ["--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    return command


def wrk_load(url: str, headers: dict[str, str], connections: int, threads: int, seconds: float) -> Result:
    """The same GET of `url` on every connection."""
    return _wrk([*_wrk_command(headers, connections, threads, seconds), url], url)


def wrk_calls(
    base: str,
    headers: dict[str, str],
    calls: list[Call],
    connections: int,
    threads: int,
    seconds: float,
    work: Path,
) -> Result:
    """`calls` against the server at `base`, in turn (split between wrk's threads), through a Lua script; the
    script and the calls are written to the directory `work`."""
    script, lines = work / "calls.lua", work / "calls.tsv"
    script.write_text(CALLS_LUA)
    lines.write_text("".join(f"{c.method}\t{c.path}\t{c.body}\n" for c in calls))
    command = _wrk_command({**headers, "Content-Type": "application/json"}, connections, threads, seconds)
    return _wrk([*command, "-s", str(script), base, "--", str(lines), str(threads)], base)


# --- Python client ------------------------------------------------------------------------------------------------


def _client(base: str, headers: dict[str, str], calls: list[Call], start: float, deadline: float, out) -> None:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    latencies: list[float] = []
    errors = 0
    i = 0
    while time.time() < start:
        time.sleep(0.001)
    while time.time() < deadline:
        call = calls[i % len(calls)]
        i += 1
        began = time.perf_counter()
        try:
            conn.request(call.method, call.path, body=call.body.encode() or None, headers=headers)
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


def python_calls(base: str, headers: dict[str, str], calls: list[Call], connections: int, seconds: float) -> Result:
    """`calls` against the server at `base`: one process per connection (no GIL between clients), each with its
    own share of the calls in turn, started together, stopped at the same deadline."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start = time.time() + 0.5
    deadline = start + seconds
    if any(call.body for call in calls):
        headers = {**headers, "Content-Type": "application/json"}
    procs = [
        ctx.Process(target=_client, args=(base, headers, calls[i::connections] or calls, start, deadline, queue))
        for i in range(connections)
    ]
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


def python_load(url: str, headers: dict[str, str], connections: int, seconds: float) -> Result:
    """The same GET of `url` on every connection."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return python_calls(f"{parts.scheme}://{parts.netloc}", headers, [Call("GET", path)], connections, seconds)
