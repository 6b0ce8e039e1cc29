"""Runtime settings, read from the environment only when `load_settings()` is called."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import msgspec
import platformdirs

# Where a root-run flowcore keeps its data by default: the embedded PostgreSQL runs as an
# unprivileged system user that cannot traverse root's home (mode 700), so /root is no place for it.
ROOT_DATA_DIR = Path("/var/lib/flowcore")

_LOG_LEVELS = frozenset({"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"})


class SettingsError(ValueError):
    """An environment variable holds a value flowcore cannot use."""


class ConnectorSettings(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Where a service task's connectorKey points: a base URL and headers sent with every call."""

    base_url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)


_connectors_decoder = msgspec.json.Decoder(dict[str, ConnectorSettings])


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced, fit for logs and reprs."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable database url>"
    if parts.password is None:
        return dsn
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    database_url: str | None = None  # None: run the embedded PostgreSQL in data_dir
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    max_body_bytes: int = 1024 * 1024
    pool_size: int = 10
    workers: int = 4  # job worker pool size
    log_level: str = "INFO"
    max_steps: int = 1000
    connectors: Mapping[str, ConnectorSettings] = field(default_factory=dict)
    bpmn_error_field: str = "bpmnErrorCode"
    job_poll_ms: int = 200  # how often an idle worker looks for due jobs
    job_lease_margin_ms: int = 15000  # a claimed call's lease: its TimeoutMs plus this margin
    retry_backoff_cap_ms: int = 300000  # the longest wait between two attempts of a service call
    job_retention_hours: int = 168  # finished jobs of finished instances are deleted this long after
    demo_tenant: str | None = "demo"  # gets the example process at start while it has no definitions

    def __repr__(self) -> str:
        # Connector headers often carry credentials and the URL a password: show neither.
        database = mask_dsn(self.database_url) if self.database_url else "<embedded>"
        return (
            f"Settings(database_url={database!r}, host={self.host!r}, port={self.port}, "
            f"data_dir={str(self.data_dir)!r}, max_body_bytes={self.max_body_bytes}, "
            f"pool_size={self.pool_size}, workers={self.workers}, log_level={self.log_level!r}, "
            f"max_steps={self.max_steps}, connectors={sorted(self.connectors)!r}, "
            f"bpmn_error_field={self.bpmn_error_field!r}, job_poll_ms={self.job_poll_ms}, "
            f"job_lease_margin_ms={self.job_lease_margin_ms}, retry_backoff_cap_ms={self.retry_backoff_cap_ms}, "
            f"job_retention_hours={self.job_retention_hours}, demo_tenant={self.demo_tenant!r})"
        )

    __str__ = __repr__

    @property
    def pgdata(self) -> Path:
        """The embedded PostgreSQL cluster directory."""
        return self.data_dir / "pgdata"


def default_data_dir(*, euid: int | None = None) -> Path:
    if euid is None:
        euid = os.geteuid()
    if euid == 0:
        return ROOT_DATA_DIR
    return Path(platformdirs.user_data_dir("flowcore"))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    data_dir_raw = _text(env, "FLOWCORE_DATA_DIR")
    log_level = (_text(env, "FLOWCORE_LOG_LEVEL") or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise SettingsError(f"FLOWCORE_LOG_LEVEL must be one of {', '.join(sorted(_LOG_LEVELS))}, not {log_level!r}")
    return Settings(
        database_url=_text(env, "DATABASE_URL"),
        host=_text(env, "FLOWCORE_HOST") or "127.0.0.1",
        port=_int(env, "FLOWCORE_PORT", 8080, low=1, high=65535),
        data_dir=Path(data_dir_raw).expanduser() if data_dir_raw else default_data_dir(),
        max_body_bytes=_int(env, "FLOWCORE_MAX_BODY_BYTES", 1024 * 1024, low=1),
        pool_size=_int(env, "FLOWCORE_POOL_SIZE", 10, low=1),
        workers=_int(env, "FLOWCORE_WORKERS", 4, low=0),
        log_level=log_level,
        max_steps=_int(env, "FLOWCORE_MAX_STEPS", 1000, low=1),
        connectors=_connectors(env),
        bpmn_error_field=_text(env, "FLOWCORE_BPMN_ERROR_FIELD") or "bpmnErrorCode",
        job_poll_ms=_int(env, "FLOWCORE_JOB_POLL_MS", 200, low=1),
        job_lease_margin_ms=_int(env, "FLOWCORE_JOB_LEASE_MARGIN_MS", 15000, low=0),
        retry_backoff_cap_ms=_int(env, "FLOWCORE_RETRY_BACKOFF_CAP_MS", 300000, low=0),
        job_retention_hours=_int(env, "FLOWCORE_JOB_RETENTION_HOURS", 168, low=1),
        # unset: "demo"; set but empty: no demo model
        demo_tenant=(env.get("FLOWCORE_DEMO_TENANT", "demo").strip() or None),
    )


def log_level_number(settings: Settings) -> int:
    return logging.getLevelNamesMapping()[settings.log_level]


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int | None = None) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise SettingsError(f"{name} must be {bounds}, not {value}")
    return value


def _connectors(env: Mapping[str, str]) -> Mapping[str, ConnectorSettings]:
    raw = _text(env, "FLOWCORE_CONNECTORS")
    if raw is None:
        return {}
    try:
        return _connectors_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        # msgspec's message names the JSON path but never echoes values (headers may be secrets).
        raise SettingsError(f"FLOWCORE_CONNECTORS is invalid: {exc}") from None
    except msgspec.DecodeError:
        raise SettingsError("FLOWCORE_CONNECTORS is not valid JSON") from None
