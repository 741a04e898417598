"""The DingTalk contacts calls of a full sync, counted per API.

Three calls, each rate-limited per API by the gateway (so they run side by side, each at its own budget):
`/topapi/v2/department/listsub` (direct children of a department, one call each), `/topapi/v2/user/list` (a
department's direct members, 100 a page, with `dept_order` and `leader` for that department, so no per-user
call is ever needed), and `/topapi/v2/department/get` (the `code` and real `order`), fetched only for nodes
that look like units: internal departments carry no registration code, and units are ~4% of a province's
departments, so the detail costs ~2% of a run's calls instead of doubling the listing.

The gateway does not expose its retries; it logs each one (`dingtalk call failed (<code>); retrying …`), so a
log handler counts them here, throttles (90018/90002, HTTP 403 QPS codes) separately. The handler sees every
thread of the process: two syncs running in one process at once would share counts.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from workbench.dingtalk.gateway import DingTalkGateway
from workbench.privacy import mask_mobile

LISTSUB = "/topapi/v2/department/listsub"
USER_LIST = "/topapi/v2/user/list"
DEPT_GET = "/topapi/v2/department/get"
PAGE_SIZE = 100
THROTTLE_CODES = {"90018", "90002", "90019", "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}
THROTTLE_CODES |= {"Forbidden.AccessDenied.QpsLimitForApi", "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi"}


class InjectedFault(RuntimeError):
    """Raised by the test hook `fail_after_calls`: an outage or a killed worker in the middle of a run."""


@dataclass(frozen=True)
class UserPage:
    users: list[dict[str, Any]]  # staged user rows
    memberships: list[dict[str, Any]]  # staged membership rows (userid, dept_id, is_leader, sort_order)
    next_cursor: int | None  # None: the department is fully paged


class _RetryCounter(logging.Handler):
    """Counts the gateway's "retrying" log records: every retry, and the throttled ones apart."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.retries = 0
        self.throttles = 0
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" not in record.msg:
            return
        with self._lock:
            self.retries += 1
            if str(getattr(record, "status", "")) in THROTTLE_CODES:
                self.throttles += 1


class ContactsFetcher:
    """The three contacts calls, counted; use as a context manager to count the gateway's retries too."""

    def __init__(self, gateway: DingTalkGateway, *, fail_after_calls: int | None = None) -> None:
        self.gateway = gateway
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._fail_after = fail_after_calls
        self._retry_counter = _RetryCounter()

    def __enter__(self) -> ContactsFetcher:
        logging.getLogger("workbench.dingtalk.gateway").addHandler(self._retry_counter)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("workbench.dingtalk.gateway").removeHandler(self._retry_counter)

    @property
    def retries(self) -> int:
        return self._retry_counter.retries

    @property
    def throttles(self) -> int:
        return self._retry_counter.throttles

    def _call(self, api: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._fail_after is not None and sum(self.calls.values()) >= self._fail_after:
                raise InjectedFault(f"injected fault after {self._fail_after} calls")
            self.calls[api] += 1
        return self.gateway.oapi(api, body)

    def children(self, dept_id: int) -> list[dict[str, Any]]:
        """Direct children of `dept_id` in DingTalk's order: dept_id, name, parent_id."""
        return self._call(LISTSUB, {"dept_id": dept_id, "language": "zh_CN"}).get("result") or []

    def detail(self, dept_id: int) -> dict[str, Any]:
        """`department/get` of one department (code, order, managers)."""
        return self._call(DEPT_GET, {"dept_id": dept_id, "language": "zh_CN"}).get("result") or {}

    def user_page(self, dept_id: int, cursor: int) -> UserPage:
        """One page of a department's direct members, as staging rows."""
        body = {"dept_id": dept_id, "cursor": cursor, "size": PAGE_SIZE, "order_field": "custom"}
        result = self._call(USER_LIST, body).get("result") or {}
        users, memberships = [], []
        for item in result.get("list") or []:
            users.append(user_row(item))
            memberships.append(
                {
                    "userid": item["userid"],
                    "dept_id": dept_id,
                    "is_leader": bool(item.get("leader")),
                    "sort_order": int(item.get("dept_order") or 0),
                }
            )
        more = bool(result.get("has_more"))
        return UserPage(users, memberships, int(result["next_cursor"]) if more else None)


def user_row(item: dict[str, Any]) -> dict[str, Any]:
    """The member fields kept from a `v2/user/list` or `v2/user/get` item; the mobile only masked."""
    return {
        "userid": item["userid"],
        "unionid": item.get("unionid") or None,
        "name": item.get("name") or "",
        "title": item.get("title") or None,
        "job_number": item.get("job_number") or None,
        "mobile_masked": mask_mobile(item.get("mobile")),
        "active": bool(item.get("active", True)),
        "is_admin": bool(item.get("admin")),
        "is_boss": bool(item.get("boss")),
    }
