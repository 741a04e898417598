"""The job queue: one facade over RQ (with `REDIS_URL`) or an in-process worker thread (without).

Jobs are importable module-level functions taking JSON-able arguments; they always run inside an app context.
Periodic jobs (reconciliation, SLA timers, indicator recomputation) are declared here with `every()` and claimed
per time slot, so several processes running the scheduler enqueue each slot once.
"""

from __future__ import annotations

import importlib
import logging
import queue as stdlib_queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis as redis_lib
from flask import Flask, current_app

log = logging.getLogger(__name__)

QUEUE_NAME = "workbench"
RETRY_INTERVALS = [5, 30, 120, 600]  # seconds between attempts of a failing job
SLOT_GRACE = 120  # seconds after a periodic slot begins during which a scheduler may still start it


def job_path(func: Callable | str) -> str:
    """`module.function` of a job, which both modes store instead of the function object."""
    if isinstance(func, str):
        return func
    if "<" in func.__qualname__ or "." in func.__qualname__:
        raise ValueError(f"jobs must be module-level functions, not {func.__qualname__}")
    return f"{func.__module__}.{func.__qualname__}"


def _resolve(path: str) -> Callable:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    seconds: int
    func: str
    offset: int = 0  # seconds after each multiple of `seconds` (UTC epoch) at which the slot starts


class JobQueue:
    """Enqueue jobs; see the module docstring for the two modes."""

    def __init__(self, app: Flask, redis: redis_lib.Redis | None) -> None:
        self.app = app
        self.redis = redis
        self.periodic: dict[str, PeriodicJob] = {}
        self.retry_intervals = list(RETRY_INTERVALS)
        self._local: stdlib_queue.Queue[tuple[str, str, tuple, dict, int]] | None = None
        self._local_thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        if redis is not None:
            import rq

            self.rq_queue = rq.Queue(QUEUE_NAME, connection=redis)

    @property
    def mode(self) -> str:
        return "rq" if self.redis is not None else "in-process"

    def enqueue(self, func: Callable | str, *args, job_id: str | None = None, retries: int = 3, **kwargs) -> str:
        """Queue `func(*args, **kwargs)`; a given `job_id` makes enqueueing idempotent while the job is pending."""
        path = job_path(func)
        job_id = job_id or uuid.uuid4().hex
        if self.redis is not None:
            self._enqueue_rq(path, args, kwargs, job_id, retries)
        else:
            self._ensure_local_worker().put((job_id, path, args, kwargs, retries))
        return job_id

    def _enqueue_rq(self, path: str, args: tuple, kwargs: dict, job_id: str, retries: int) -> None:
        from rq import Retry
        from rq.exceptions import DuplicateJobError
        from rq.job import Job, JobStatus

        retry = Retry(max=retries, interval=self.retry_intervals[:retries]) if retries else None
        for _ in range(2):
            try:
                self.rq_queue.enqueue_call(
                    path,
                    args=args,
                    kwargs=kwargs,
                    job_id=job_id,
                    unique=True,
                    retry=retry,
                    result_ttl=3600,
                    failure_ttl=7 * 86400,
                )
                return
            except DuplicateJobError:
                # Pending: nothing to do. Finished or failed: this is a deliberate re-run, so replace it.
                existing = Job.fetch(job_id, connection=self.redis)
                if existing.get_status() not in (
                    JobStatus.FINISHED,
                    JobStatus.FAILED,
                    JobStatus.STOPPED,
                    JobStatus.CANCELED,
                ):
                    log.info("job %s already queued", job_id, extra={"job": path})
                    return
                existing.delete()

    # --- in-process mode -------------------------------------------------------------------------------------
    def _ensure_local_worker(self) -> stdlib_queue.Queue:
        with self._lock:
            if self._local is None:
                self._local = stdlib_queue.Queue()
            if self._local_thread is None or not self._local_thread.is_alive():
                self._local_thread = threading.Thread(target=self._run_local, name="workbench-jobs", daemon=True)
                self._local_thread.start()
        return self._local

    def _run_local(self) -> None:
        assert self._local is not None
        while True:
            _job_id, path, args, kwargs, retries = self._local.get()
            try:
                for attempt in range(retries + 1):
                    if self._closing.is_set() or self._run_one(path, args, kwargs, attempt):
                        break
                    if attempt < retries:
                        self._closing.wait(min(self.retry_intervals[attempt], 5))  # in-process: short waits, in order
            finally:
                self._local.task_done()

    def _run_one(self, path: str, args: tuple, kwargs: dict, attempt: int) -> bool:
        with self.app.app_context():
            try:
                _resolve(path)(*args, **kwargs)
                return True
            except Exception:
                log.exception("job failed", extra={"job": path, "attempt": attempt + 1})
                return False

    def join(self) -> None:
        """Wait until every in-process job queued so far has run (tests, CLI commands)."""
        if self._local is not None:
            self._local.join()

    def close(self) -> None:
        """Stop the in-process worker: the running job finishes, queued ones and retries are dropped (in-process
        jobs never outlive their process anyway). Without this, an app that is thrown away — a test's — keeps
        sending from its thread into whatever runs next."""
        self._closing.set()
        self.join()

    # --- periodic jobs ---------------------------------------------------------------------------------------
    def every(self, seconds: int, func: Callable | str, *, name: str | None = None, offset: int = 0) -> None:
        """Declare `func()` to run every `seconds`, at `offset` into each period (e.g. a nightly job at 02:10
        China time: `every(86400, f, offset=18 * 3600 + 600)`). Called from a part's `init_app`."""
        path = job_path(func)
        name = name or path
        self.periodic[name] = PeriodicJob(name, seconds, path, offset % seconds)

    def tick(self, now: float | None = None) -> list[str]:
        """Enqueue the periodic jobs whose slot has just begun; returns their names. Safe to call from many
        processes. A slot is only started within `SLOT_GRACE` of its beginning, so restarting a process in the
        middle of the day does not run the nightly job again; a slot missed while no scheduler ran is skipped."""
        now = time.time() if now is None else now
        due = []
        for job in self.periodic.values():
            slot, into = divmod(now - job.offset, job.seconds)
            if into > min(job.seconds, SLOT_GRACE):
                continue
            slot = int(slot)
            if self._claim(f"workbench:periodic:{job.name}:{slot}", job.seconds):
                self.enqueue(job.func, job_id=f"periodic-{job.name.replace('.', '-')}-{slot}")
                due.append(job.name)
        return due

    def _claim(self, key: str, seconds: int) -> bool:
        if self.redis is not None:
            return bool(self.redis.set(key, "1", nx=True, ex=seconds * 2))
        with self._lock:  # in-process mode runs one scheduler per process by construction
            claimed = self.__dict__.setdefault("_claims", set())
            if key in claimed:
                return False
            claimed.add(key)
            return True

    def run_scheduler(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Tick until `stop` is set (a background thread of the web app or the worker)."""
        while not stop.wait(interval):
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")

    def start_scheduler_thread(self) -> threading.Event:
        stop = threading.Event()
        threading.Thread(target=self.run_scheduler, args=(stop,), name="workbench-scheduler", daemon=True).start()
        return stop

    def work(self, burst: bool = False) -> None:
        """Run an RQ worker in this process (the `flask worker` command), with the scheduler beside it."""
        if self.redis is None:
            raise RuntimeError("REDIS_URL is not set: jobs run inside the web process, no worker is needed")
        from rq import SimpleWorker

        stop = self.start_scheduler_thread() if not burst else None
        # SimpleWorker runs jobs in this process, inside the app context pushed by the CLI: no fork per job,
        # so the database pool and the gateway's token cache are reused. RQ's scheduler puts retries that wait
        # (Retry intervals) back on the queue; without it a failed job would never run again.
        try:
            SimpleWorker([self.rq_queue], connection=self.redis).work(burst=burst, with_scheduler=not burst)
        finally:
            if stop:
                stop.set()


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    redis = redis_lib.Redis.from_url(settings.redis_url) if settings.redis_url else None
    app.extensions["workbench.redis"] = redis
    app.extensions["workbench.queue"] = JobQueue(app, redis)


def get_queue() -> JobQueue:
    return current_app.extensions["workbench.queue"]


def get_redis() -> redis_lib.Redis | None:
    return current_app.extensions["workbench.redis"]
