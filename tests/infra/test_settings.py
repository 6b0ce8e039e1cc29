from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from infra.settings import ROOT_DATA_DIR, ConnectorSettings, SettingsError, default_data_dir, load_settings, mask_dsn


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.database_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.max_body_bytes == 1024 * 1024
    assert (settings.pool_size, settings.workers, settings.max_steps) == (10, 4, 1000)
    assert settings.log_level == "INFO"
    assert settings.connectors == {}
    assert settings.bpmn_error_field == "bpmnErrorCode"
    assert settings.data_dir == default_data_dir()
    assert settings.pgdata == settings.data_dir / "pgdata"


def test_every_variable_is_read() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://flow:pw@db:5432/flowcore",
            "FLOWCORE_HOST": "0.0.0.0",
            "FLOWCORE_PORT": "9000",
            "FLOWCORE_DATA_DIR": "/srv/flowcore",
            "FLOWCORE_MAX_BODY_BYTES": "2048",
            "FLOWCORE_POOL_SIZE": "3",
            "FLOWCORE_WORKERS": "0",
            "FLOWCORE_LOG_LEVEL": "debug",
            "FLOWCORE_MAX_STEPS": "50",
            "FLOWCORE_CONNECTORS": '{"pay": {"baseUrl": "https://pay.example", '
            '"headers": {"Authorization": "Bearer s3"}}}',
            "FLOWCORE_BPMN_ERROR_FIELD": "errorCode",
        }
    )
    assert settings.database_url == "postgresql://flow:pw@db:5432/flowcore"
    assert (settings.host, settings.port, settings.data_dir) == ("0.0.0.0", 9000, Path("/srv/flowcore"))
    assert (settings.max_body_bytes, settings.pool_size, settings.workers) == (2048, 3, 0)
    assert (settings.log_level, settings.max_steps, settings.bpmn_error_field) == ("DEBUG", 50, "errorCode")
    assert settings.connectors == {
        "pay": ConnectorSettings(base_url="https://pay.example", headers={"Authorization": "Bearer s3"})
    }


def test_demo_tenant_defaults_to_demo_and_an_empty_value_turns_it_off() -> None:
    assert load_settings({}).demo_tenant == "demo"
    assert load_settings({"FLOWCORE_DEMO_TENANT": " acme "}).demo_tenant == "acme"
    assert load_settings({"FLOWCORE_DEMO_TENANT": ""}).demo_tenant is None


def test_the_environment_is_read_when_called_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWCORE_PORT", "7001")
    assert load_settings().port == 7001
    monkeypatch.setenv("FLOWCORE_PORT", "7002")
    assert load_settings().port == 7002


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FLOWCORE_PORT", "http", "FLOWCORE_PORT must be an integer"),
        ("FLOWCORE_PORT", "70000", "between 1 and 65535"),
        ("FLOWCORE_POOL_SIZE", "0", "FLOWCORE_POOL_SIZE must be >= 1"),
        ("FLOWCORE_LOG_LEVEL", "LOUD", "FLOWCORE_LOG_LEVEL must be one of"),
        ("FLOWCORE_CONNECTORS", "{not json", "not valid JSON"),
        ("FLOWCORE_CONNECTORS", '{"pay": {"headers": {}}}', "baseUrl"),
        ("FLOWCORE_CONNECTORS", '{"pay": {"baseUrl": "u", "extra": 1}}', "extra"),
    ],
)
def test_bad_values_are_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({name: value})


def test_secrets_never_show_in_repr() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://flow:hunter2@db:5432/flowcore",
            "FLOWCORE_CONNECTORS": '{"pay": {"baseUrl": "https://pay.example", "headers": {"X-Key": "s3cr3t"}}}',
        }
    )
    text = repr(settings) + str(settings)
    assert "hunter2" not in text and "s3cr3t" not in text
    assert "postgresql://flow:***@db:5432/flowcore" in text
    assert "'pay'" in text


def test_bad_connector_json_does_not_echo_header_values() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"FLOWCORE_CONNECTORS": '{"pay": {"baseUrl": "u", "headers": {"X-Key": 12345}}}'})
    assert "12345" not in str(raised.value)


@pytest.mark.parametrize(
    ("dsn", "masked"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql://u:***@h:5432/d"),
        ("postgresql://u:p@h/d?sslmode=require", "postgresql://u:***@h/d?sslmode=require"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("postgresql://postgres:@/postgres?host=/tmp/x", "postgresql://postgres:***@/postgres?host=/tmp/x"),
        ("postgresql://u:p@[::1]:5432/d", "postgresql://u:***@[::1]:5432/d"),
    ],
)
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert mask_dsn(dsn) == masked


def test_default_data_dir_keeps_root_out_of_its_home() -> None:
    assert default_data_dir(euid=0) == ROOT_DATA_DIR
    assert default_data_dir(euid=1000) == Path(platformdirs.user_data_dir("flowcore"))
