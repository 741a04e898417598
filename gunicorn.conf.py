"""gunicorn settings for the web app (`gunicorn -c gunicorn.conf.py wsgi:app`)."""

import multiprocessing
import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
# Without Redis, jobs and the scheduler live inside the web process, so there must be exactly one.
workers = int(
    os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count() + 1 if os.environ.get("REDIS_URL") else 1)
)
timeout = 60
accesslog = None  # the app logs each request as JSON with its request id


def post_worker_init(worker):
    queue = worker.wsgi.extensions["workbench.queue"]
    if queue.redis is None:
        queue.start_scheduler_thread()
