"""The service skeleton: health, readiness, OpenAPI, JSON errors, request ids, log hygiene."""

import json
import logging

from config import load_settings
from tests.support.sandbox import free_port
from workbench import create_app
from workbench.logs import JsonFormatter, redact


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client, backend):
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"]
    assert body["checks"]["queue"] == {"ok": True, "mode": "in-process" if backend == "sqlite" else "rq"}
    assert body["checks"]["dingtalk"]["target"] == "sandbox"


def test_readyz_names_what_is_not_reachable(tmp_path):
    dead_port = free_port()  # nothing listens here: DingTalk unreachable
    settings = load_settings(
        {
            "SANDBOX_PORT": str(dead_port),
            "WORKBENCH_VAR_DIR": str(tmp_path),
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        },
        read_dotenv=False,
    )
    app = create_app(settings)
    response = app.test_client().get("/readyz")
    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "not_ready"
    assert body["checks"]["database"]["ok"]
    assert not body["checks"]["queue"]["ok"]
    assert not body["checks"]["dingtalk"]["ok"]
    assert "sandbox-app-secret" not in json.dumps(body)


def test_openapi_and_docs_are_served(client):
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200
    assert spec.get_json()["openapi"].startswith("3.")
    paths = spec.get_json()["paths"]
    assert {"/healthz", "/readyz"} <= set(paths)
    assert spec.get_json()["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    assert paths["/api/org/nodes"]["get"]["security"] == [{"bearerToken": []}]
    assert "security" not in paths["/healthz"]["get"]
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert b"swagger" in docs.data.lower()


def test_errors_are_json_everywhere(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    response = client.get("/dingtalk/callback")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"X-Request-Id": "abcdef123456"}).headers["X-Request-Id"] == "abcdef123456"
    made = client.get("/healthz", headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"]
    assert len(made) == 32


def test_logs_never_carry_tokens_secrets_id_numbers_or_phones():
    line = redact(
        "GET /gettoken?appkey=k&appsecret=s3cr3t access_token=abc123 resident 330102199003071234 phone 13812345678"
        ' {"accessToken": "tok"}'
    )
    for secret in ("s3cr3t", "abc123", "199003071", "3812345", '"tok"'):
        assert secret not in line
    assert "330102********1234" in line and "138****5678" in line
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", ("leak",), None)
    assert "leak" not in JsonFormatter().format(record)


def test_logs_keep_listed_extras_and_drop_others():
    import json
    import logging

    from workbench.logs import JsonFormatter

    record = logging.LogRecord("bot.outbox", logging.INFO, __file__, 1, "resumed", None, None)
    record.channel, record.rows, record.resident = "robot_oto", 3, "张三 330106199001011234"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["channel"] == "robot_oto" and entry["rows"] == 3 and "resident" not in entry
