#!/usr/bin/env bash
# `make run`: migrate, then start the sandbox (unless DingTalk is configured), the web app and, with REDIS_URL,
# a worker; print where to look; stop everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export PORT="${PORT:-8000}" SANDBOX_PORT="${SANDBOX_PORT:-8790}"
export WORKBENCH_CALLBACK_URL="${WORKBENCH_CALLBACK_URL:-http://127.0.0.1:$PORT/dingtalk/callback}"
bin=.venv/bin
pids=()
sync_pid=
stop() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" $sync_pid 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$bin/flask" --app wsgi db upgrade

use_sandbox=no
if [ -z "${DINGTALK_APP_KEY:-}" ] && [ -z "${DINGTALK_OAPI_BASE:-}${DINGTALK_API_BASE:-}" ]; then
  use_sandbox=yes
  "$bin/python" -m sandbox --port "$SANDBOX_PORT" --seed "${SANDBOX_SEED:-1}" --scale "${SANDBOX_SCALE:-small}" &
  pids+=($!)
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$SANDBOX_PORT/_sandbox/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
fi

"$bin/gunicorn" -c gunicorn.conf.py wsgi:app &
pids+=($!)
if [ -n "${REDIS_URL:-}" ]; then
  "$bin/flask" --app wsgi worker &
  pids+=($!)
fi

for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
if [ "$use_sandbox" = yes ]; then
  # Mirror the sandbox's province so the workbench has its organisation tree from the start.
  mkdir -p var && "$bin/flask" --app wsgi org-sync full > var/org-sync.log 2>&1 &
  sync_pid=$!
fi
cat <<TXT

  工作台 workbench   http://127.0.0.1:$PORT            (readiness: /readyz, API docs: /api/docs)
  jobs              $( [ -n "${REDIS_URL:-}" ] && echo "RQ worker on $REDIS_URL" || echo "in-process (set REDIS_URL for RQ workers)" )
$( [ "$use_sandbox" = yes ] && echo "  钉钉 sandbox       http://127.0.0.1:$SANDBOX_PORT/_sandbox/   (inbox; scale ${SANDBOX_SCALE:-small}, seed ${SANDBOX_SEED:-1})" )
$( [ "$use_sandbox" = yes ] && echo "  org tree          syncing from the sandbox (var/org-sync.log); then /api/org/nodes?q=医院 with 'Authorization: Bearer dev-admin-token'" )
  Ctrl-C stops everything.

TXT
wait -n "${pids[@]}"  # the sandbox, the web app or the worker ended: stop the rest
