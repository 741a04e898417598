"""Per-app, per-API throttling over a sliding one-second window, and the call statistics tests read.

DingTalk limits each app to `--qps` accepted calls per API per second (§8.1). The statistics keep every accepted
arrival time so `max_accepted_in_any_1s` is the exact sliding-window maximum: a benchmark can prove a client never
went over the limit in any one-second window, not merely on average.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW = 1.0


@dataclass(slots=True)
class ApiStats:
    accepted: int = 0
    throttled: int = 0
    faults: int = 0
    arrivals: list[float] = field(default_factory=list)
    window: deque[float] = field(default_factory=deque)

    def max_in_window(self) -> int:
        """Largest number of accepted arrivals within any half-open window of one second."""
        best, start = 0, 0
        arrivals = self.arrivals
        for end, t in enumerate(arrivals):
            while t - arrivals[start] >= WINDOW:
                start += 1
            best = max(best, end - start + 1)
        return best


class Throttle:
    """Sliding-window admission per API path (the sandbox serves a single app)."""

    def __init__(self, qps: int) -> None:
        self.qps = qps
        self.apis: dict[str, ApiStats] = {}

    def _stats(self, path: str) -> ApiStats:
        stats = self.apis.get(path)
        if stats is None:
            stats = self.apis[path] = ApiStats()
        return stats

    def admit(self, path: str) -> bool:
        """Accept the call if fewer than `qps` calls were accepted in the last second; throttled calls don't count."""
        now = time.monotonic()
        stats = self._stats(path)
        while stats.window and now - stats.window[0] >= WINDOW:
            stats.window.popleft()
        if len(stats.window) >= self.qps:
            stats.throttled += 1
            return False
        stats.window.append(now)
        stats.arrivals.append(now)
        stats.accepted += 1
        return True

    def record_fault(self, path: str) -> None:
        self._stats(path).faults += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "qps": self.qps,
            "apis": {
                path: {
                    "accepted": s.accepted,
                    "throttled": s.throttled,
                    "faults": s.faults,
                    "max_accepted_in_any_1s": s.max_in_window(),
                }
                for path, s in sorted(self.apis.items())
            },
        }

    def reset(self) -> None:
        """Forget the statistics; the current window is kept so a reset cannot be used to exceed the limit."""
        for stats in self.apis.values():
            stats.accepted = stats.throttled = stats.faults = 0
            stats.arrivals = []
