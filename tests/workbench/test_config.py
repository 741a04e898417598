import base64

import pytest

from config import ConfigError, load_settings


def settings(**env):
    return load_settings(env, read_dotenv=False)


def test_embedded_defaults_use_sqlite_in_process_jobs_and_the_sandbox(tmp_path):
    s = settings(WORKBENCH_VAR_DIR=str(tmp_path))
    assert s.database_url == f"sqlite:///{tmp_path}/workbench.db"
    assert s.redis_url is None
    assert s.dingtalk.sandbox
    assert s.dingtalk.oapi_base == s.dingtalk.api_base == "http://127.0.0.1:8790"
    assert len(s.dingtalk.callback_aes_key) == 43


def test_sandbox_port_moves_both_bases():
    assert settings(SANDBOX_PORT="9999").dingtalk.api_base == "http://127.0.0.1:9999"


def test_real_app_key_points_at_real_dingtalk_and_requires_secrets():
    real = dict(
        DINGTALK_APP_KEY="dingabc",
        DINGTALK_APP_SECRET="s",
        DINGTALK_CORP_ID="ding1",
        SECRET_KEY="x" * 32,
        PUBLIC_URL="https://workbench.example.cn",
    )
    s = settings(**real)
    assert not s.dingtalk.sandbox
    assert s.dingtalk.oapi_base == "https://oapi.dingtalk.com"
    assert s.dingtalk.api_base == "https://api.dingtalk.com"
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        settings(**{**real, "SECRET_KEY": ""})
    with pytest.raises(ConfigError, match="DINGTALK_APP_SECRET"):
        settings(DINGTALK_APP_KEY="dingabc", DINGTALK_CORP_ID="c", SECRET_KEY="x" * 32)


def test_postgres_url_gets_the_psycopg3_driver():
    s = settings(DATABASE_URL="postgresql://u:p@db:5432/wb")
    assert s.database_url == "postgresql+psycopg://u:p@db:5432/wb"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "mysql://u@h/db"),
        ("REDIS_URL", "http://localhost:6379"),
        ("DINGTALK_CALLBACK_AES_KEY", "a" * 42),
        ("DINGTALK_CALLBACK_AES_KEY", "!" * 43),
        ("DINGTALK_OAPI_BASE", "ftp://oapi.dingtalk.com"),
        ("DINGTALK_API_BASE", "http://127.0.0.1:notaport"),
        ("DINGTALK_CALLBACK_TOKEN", "has spaces"),
        ("DINGTALK_QPS", "0"),
        ("DINGTALK_API_QPS", "/topapi/v2/user/list=fast"),
        ("LOG_LEVEL", "LOUD"),
        ("ORG_SYNC_MAX_DELETE_SHARE", "5%"),
        ("ORG_SYNC_MAX_DELETE_SHARE", "1.5"),
        ("ORG_SYNC_RECONCILE_SECONDS", "-1"),
        ("JWT_KEYS", "nokid"),
        ("JWT_KEYS", "k1:short"),
        ("JWT_KEYS", f"k1:{'a' * 32},k1:{'b' * 32}"),
        ("JWT_KEYS", f"bad kid:{'a' * 32}"),
        ("ACCESS_TOKEN_SECONDS", "0"),
        ("AUDIT_RETENTION_DAYS", "90"),
        ("EVENT_RETENTION_DAYS", "3"),
        ("MESSAGE_RETENTION_DAYS", "29"),
        ("DINGTALK_APPROVAL_PROCESS_CODE", "not-a-code"),
        ("DINGTALK_CARD_CALLBACK_TYPE", "PIGEON"),
        ("PUBLIC_URL", "workbench.example.cn"),
        ("PUBLIC_URL", "https://workbench.example.cn/h5/"),
        ("FIELD_KEYS", "k1"),
        ("FIELD_KEYS", "k1:not base64!"),
        ("FIELD_KEYS", "k1:" + base64.b64encode(b"x" * 16).decode()),
        ("FIELD_KEYS", "v1:" + base64.b64encode(b"x" * 32).decode()),
        ("LOOKUP_KEYS", "a:{0},a:{0}".format(base64.b64encode(b"x" * 32).decode())),
        ("REFERRAL_SLA", "routine=soon"),
        ("REFERRAL_SLA", "routine=0h"),
        ("REFERRAL_SLA", "coffee=5m"),
    ],
)
def test_malformed_settings_stop_start_up_naming_the_variable(variable, value):
    with pytest.raises(ConfigError) as info:
        settings(**{variable: value})
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)


def test_field_keys_are_kid_and_32_byte_pairs_in_order():
    one, two = base64.b64encode(b"1" * 32).decode(), base64.b64encode(b"2" * 32).decode()
    s = settings(FIELD_KEYS=f"k2:{two}, k1:{one}", LOOKUP_KEYS=f"h1:{one}")
    assert s.field_keys == (("k2", b"2" * 32), ("k1", b"1" * 32))
    assert s.lookup_keys == (("h1", b"1" * 32),)
    assert settings().field_keys == ()


def test_public_url_is_required_with_a_real_app_and_defaults_to_the_local_port():
    assert settings().public_url == "http://127.0.0.1:8000"
    assert settings(PORT="8123").public_url == "http://127.0.0.1:8123"
    real = dict(DINGTALK_APP_KEY="dingabc", DINGTALK_APP_SECRET="s", DINGTALK_CORP_ID="ding1", SECRET_KEY="x" * 32)
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        settings(**real)
    assert settings(**real, PUBLIC_URL="https://wb.example.cn/").public_url == "https://wb.example.cn"


def test_per_api_qps_overrides():
    s = settings(DINGTALK_API_QPS="/topapi/v2/user/list=40, /v1.0/robot/oToMessages/batchSend=10")
    assert s.dingtalk.api_qps == {"/topapi/v2/user/list": 40, "/v1.0/robot/oToMessages/batchSend": 10}


def test_wsgi_exits_with_the_variable_name_on_a_config_error(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        env={"DINGTALK_CALLBACK_AES_KEY": "x" * 42, "PATH": "", "WORKBENCH_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        cwd=str(__import__("config").settings.ROOT),
    )
    assert result.returncode == 1
    assert "configuration error: DINGTALK_CALLBACK_AES_KEY" in result.stderr


def test_admin_token_has_a_dev_default_only_in_sandbox_mode():
    assert settings().admin_token == "dev-admin-token"
    real = dict(
        DINGTALK_APP_KEY="dingabc",
        DINGTALK_APP_SECRET="s",
        DINGTALK_CORP_ID="ding1",
        SECRET_KEY="x" * 32,
        PUBLIC_URL="https://workbench.example.cn",
    )
    assert settings(**real).admin_token is None
    assert settings(**real, ADMIN_TOKEN="a-long-operator-token").admin_token == "a-long-operator-token"
    with pytest.raises(ConfigError, match="ADMIN_TOKEN"):
        settings(ADMIN_TOKEN="short")
