"""The worker pool's settings: environment variables, their bounds, and the pool's configuration."""

from __future__ import annotations

import pytest

from infra.settings import SettingsError, load_settings
from infra.worker import config_from


def test_worker_settings_default_and_come_from_the_environment() -> None:
    defaults = load_settings({})
    assert (defaults.job_poll_ms, defaults.job_lease_margin_ms, defaults.retry_backoff_cap_ms) == (200, 15000, 300000)
    settings = load_settings({
        "FLOWCORE_WORKERS": "6", "FLOWCORE_JOB_POLL_MS": "50", "FLOWCORE_JOB_LEASE_MARGIN_MS": "2500",
        "FLOWCORE_RETRY_BACKOFF_CAP_MS": "60000", "FLOWCORE_BPMN_ERROR_FIELD": "code",
    })
    config = config_from(settings)
    assert (config.size, config.poll_interval, config.lease_margin) == (6, 0.05, 2.5)
    assert (config.backoff_cap_ms, config.bpmn_error_field) == (60000, "code")
    assert "job_poll_ms=50" in repr(settings)


def test_job_retention_defaults_to_a_week_and_comes_from_the_environment() -> None:
    assert load_settings({}).job_retention_hours == 168
    settings = load_settings({"FLOWCORE_JOB_RETENTION_HOURS": "24"})
    assert settings.job_retention_hours == 24 and "job_retention_hours=24" in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [("FLOWCORE_JOB_POLL_MS", "0"), ("FLOWCORE_JOB_LEASE_MARGIN_MS", "-1"), ("FLOWCORE_RETRY_BACKOFF_CAP_MS", "x"),
     ("FLOWCORE_JOB_RETENTION_HOURS", "0")],
)
def test_bad_worker_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})
