"""Typed, validated settings: built-in defaults < ATLAS_* process environment.

One frozen `Settings` object is built at start (`load_settings`) and passed to whatever needs it;
nothing reads the environment at import time. Every field declares its environment variable, its
parser and a one-line doc, so the reference documentation can be generated from this model.

Per-environment files (`config/<env>.env`) and encrypted secrets layer in between the defaults and
the process environment (issue 5); `load_settings` is the one entry point either way.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.errors import ConfigError

ENVIRONMENTS = ("development", "staging", "production")


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer {lo}-{hi}, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer {lo}-{hi}, got {raw!r}")
        return value

    return parse


def _float_in(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number {lo:g}-{hi:g}, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected a number {lo:g}-{hi:g}, got {raw!r}")
        return value

    return parse


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")

    return parse


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("expected a path, got an empty value")
    return Path(raw.strip())


def _text(raw: str) -> str:
    return raw.strip()


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _hosts_or_cidrs(raw: str) -> tuple[str, ...]:
    entries = _csv(raw)
    for entry in entries:
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"expected hosts or CIDRs, got {entry!r}") from None
    return entries


def _regex(raw: str) -> str:
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"expected a regular expression, got {raw!r}: {exc}") from None
    return raw


def _setting(env: str, default: Any, parse: Callable[[str], Any], doc: str) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every knob Atlas has. Build with `load_settings`; construct directly only in tests."""

    environment: str = _setting(
        "ATLAS_ENVIRONMENT", "development", _one_of(*ENVIRONMENTS), "Which environment this is."
    )
    data_dir: Path = _setting("ATLAS_DATA_DIR", Path("var"), _path, "Where the database and state live.")
    config_dir: Path = _setting("ATLAS_CONFIG_DIR", Path("config"), _path, "Where config files live.")
    database_url: str = _setting(
        "ATLAS_DATABASE_URL", "", _text, "sqlite:///PATH (default: DATA_DIR/atlas.db) or postgresql://..."
    )
    log_level: str = _setting(
        "ATLAS_LOG_LEVEL", "INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR"), "Lowest level logged."
    )

    # Database. FULL fsyncs the WAL at every commit: an acknowledged item survives power loss.
    # NORMAL survives a process crash but may lose the last commits on power loss.
    db_synchronous: str = _setting(
        "ATLAS_DB_SYNCHRONOUS", "FULL", _one_of("FULL", "NORMAL"), "SQLite synchronous level."
    )
    db_busy_timeout_ms: int = _setting(
        "ATLAS_DB_BUSY_TIMEOUT_MS", 10_000, _int_in(0, 600_000), "How long a writer waits for the lock."
    )

    # Engine. The lease must outlive a heartbeat interval (lease/3) several times over.
    lease_seconds: float = _setting(
        "ATLAS_LEASE_SECONDS", 30.0, _float_in(1, 3600), "How long a claim holds an item without heartbeat."
    )
    workers: int = _setting("ATLAS_WORKERS", 0, _int_in(0, 256), "Worker processes (0 = one per CPU core).")
    worker_concurrency: int = _setting(
        "ATLAS_WORKER_CONCURRENCY", 8, _int_in(1, 1024), "Items one worker process runs at once."
    )
    item_timeout_seconds: float = _setting(
        "ATLAS_ITEM_TIMEOUT_SECONDS",
        120.0,
        _float_in(1, 86_400),
        "A worker that makes no progress this long is killed; its items count a timeout.",
    )
    claim_batch_size: int = _setting(
        "ATLAS_CLAIM_BATCH_SIZE", 256, _int_in(1, 10_000), "Most items one claim transaction takes."
    )
    commit_interval_ms: float = _setting(
        "ATLAS_COMMIT_INTERVAL_MS",
        20.0,
        _float_in(0, 10_000),
        "Completions are gathered this long into one transaction.",
    )
    poll_interval_ms: float = _setting(
        "ATLAS_POLL_INTERVAL_MS", 100.0, _float_in(1, 60_000), "How often an idle engine looks for work."
    )
    # Retries: capped exponential backoff with full jitter (AWS Architecture Blog, "Exponential
    # Backoff And Jitter", 2015): sleep = uniform(0, min(cap, base * 2**attempt)). With base 2 s,
    # cap 10 min and 6 attempts an item that keeps failing is retried over roughly a quarter hour
    # on average, long enough to ride out a deploy or a short upstream outage.
    max_attempts: int = _setting(
        "ATLAS_MAX_ATTEMPTS", 6, _int_in(1, 100), "Failed attempts before an item is dead-lettered."
    )
    backoff_base_seconds: float = _setting(
        "ATLAS_BACKOFF_BASE_SECONDS", 2.0, _float_in(0, 3600), "First retry's backoff ceiling."
    )
    backoff_cap_seconds: float = _setting(
        "ATLAS_BACKOFF_CAP_SECONDS", 600.0, _float_in(0, 86_400), "Largest backoff ceiling."
    )
    max_deaths: int = _setting(
        "ATLAS_MAX_DEATHS",
        2,
        _int_in(1, 100),
        "Worker deaths or timeouts on one item before it is quarantined in the DLQ.",
    )
    max_lease_expiries: int = _setting(
        "ATLAS_MAX_LEASE_EXPIRIES",
        5,
        _int_in(1, 1000),
        "Expired leases (engine crashed while holding it) before an item is quarantined.",
    )
    dlq_retention_days: float = _setting(
        "ATLAS_DLQ_RETENTION_DAYS", 30.0, _float_in(0, 36_500), "Dead items older than this are purged."
    )
    core_metrics_port: int = _setting(
        "ATLAS_CORE_METRICS_PORT", 9112, _int_in(0, 65535), "Engine /metrics port (0 = off)."
    )
    core_metrics_host: str = _setting(
        "ATLAS_CORE_METRICS_HOST", "127.0.0.1", _text, "Engine /metrics bind address."
    )

    # API
    api_host: str = _setting("ATLAS_API_HOST", "127.0.0.1", _text, "API bind address.")
    api_port: int = _setting("ATLAS_API_PORT", 8000, _int_in(1, 65535), "API port.")
    api_auth_disabled: bool = _setting(
        "ATLAS_API_AUTH_DISABLED",
        False,
        _bool,
        "Serve without API keys (development only; refused in production).",
    )
    api_key_pepper: str = _setting(
        "ATLAS_API_KEY_PEPPER", "", _text, "Mixed into API key hashes; keep it secret (a secrets-file value)."
    )
    api_rate_limit_per_key: float = _setting(
        "ATLAS_API_RATE_LIMIT_PER_KEY",
        0.0,
        _float_in(0, 1e6),
        "Requests per second per API key (0 = unlimited).",
    )
    api_rate_burst: int = _setting(
        "ATLAS_API_RATE_BURST", 200, _int_in(1, 1_000_000), "Requests a key may send at once above its rate."
    )
    api_max_body_bytes: int = _setting(
        "ATLAS_API_MAX_BODY_BYTES", 32 << 20, _int_in(1024, 1 << 31), "Largest request body accepted."
    )
    api_max_json_depth: int = _setting(
        "ATLAS_API_MAX_JSON_DEPTH", 32, _int_in(2, 1000), "Deepest JSON nesting accepted."
    )
    api_batch_max_items: int = _setting(
        "ATLAS_API_BATCH_MAX_ITEMS", 1000, _int_in(1, 100_000), "Most items in one batch request."
    )
    api_cors_origins: tuple[str, ...] = _setting(
        "ATLAS_API_CORS_ORIGINS", (), _csv, "Origins allowed by CORS, comma-separated (empty = CORS off)."
    )
    api_behind_tls: bool = _setting(
        "ATLAS_API_BEHIND_TLS", False, _bool, "A TLS proxy fronts the API: send HSTS."
    )
    # Backpressure. The defaults protect the disk and the accept latency, not the queue's length:
    # a million-item bulk import into a stopped engine is accepted. Set the marks to shed earlier.
    api_backlog_high_water: int = _setting(
        "ATLAS_API_BACKLOG_HIGH_WATER",
        0,
        _int_in(0, 1 << 40),
        "Queued items above which ingest gets 429 (0 = off).",
    )
    api_oldest_queued_high_water_seconds: float = _setting(
        "ATLAS_API_OLDEST_QUEUED_HIGH_WATER_SECONDS",
        0.0,
        _float_in(0, 1e9),
        "Age of the oldest queued item above which ingest gets 429 (0 = off).",
    )
    disk_low_water_bytes: int = _setting(
        "ATLAS_DISK_LOW_WATER_BYTES",
        512 << 20,
        _int_in(0, 1 << 50),
        "Free space under which writes get 503 and readiness fails.",
    )
    api_max_pending_rows: int = _setting(
        "ATLAS_API_MAX_PENDING_ROWS",
        50_000,
        _int_in(1, 10_000_000),
        "Items waiting for the group commit above which ingest gets 503 (protects accept latency).",
    )

    # Exporter ------------------------------------------------------------------------------------
    # `atlas exporter` (and the exporter thread in `atlas up`). Paths and patterns mirror
    # node_exporter's --path.* and --collector.* flags; the defaults are upstream node_exporter 1.5's.
    exporter_port: int = _setting(
        "ATLAS_EXPORTER_PORT", 9110, _int_in(0, 65535), "Exporter /metrics port (0 = off in `atlas up`)."
    )
    exporter_host: str = _setting(
        "ATLAS_EXPORTER_HOST", "127.0.0.1", _text, "Exporter bind address (0.0.0.0 for a remote Prometheus)."
    )
    exporter_rootfs: Path = _setting(
        "ATLAS_EXPORTER_ROOTFS",
        Path("/"),
        _path,
        "Host root as seen by the exporter (like --path.rootfs); filesystems are measured under it.",
    )
    exporter_procfs: Path = _setting(
        "ATLAS_EXPORTER_PROCFS", Path("/proc"), _path, "procfs mount point (like --path.procfs)."
    )
    exporter_sysfs: Path = _setting(
        "ATLAS_EXPORTER_SYSFS", Path("/sys"), _path, "sysfs mount point (like --path.sysfs)."
    )
    exporter_mount_points_exclude: str = _setting(
        "ATLAS_EXPORTER_MOUNT_POINTS_EXCLUDE",
        r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
        _regex,
        "Mount points not reported (regex, searched).",
    )
    exporter_fs_types_exclude: str = _setting(
        "ATLAS_EXPORTER_FS_TYPES_EXCLUDE",
        r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660"
        r"|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$",
        _regex,
        "Filesystem types not reported (regex).",
    )
    exporter_disk_devices_exclude: str = _setting(
        "ATLAS_EXPORTER_DISK_DEVICES_EXCLUDE",
        r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$",
        _regex,
        "Block devices not reported: partitions and virtual devices (regex).",
    )
    exporter_net_devices_exclude: str = _setting(
        "ATLAS_EXPORTER_NET_DEVICES_EXCLUDE",
        "",
        _regex,
        "Network devices not reported (regex; empty = none).",
    )
    exporter_dlq_top_n: int = _setting(
        "ATLAS_EXPORTER_DLQ_TOP_N",
        20,
        _int_in(1, 1000),
        'DLQ fingerprints exported one by one; the rest are summed as fingerprint="other".',
    )
    # End of exporter -----------------------------------------------------------------------------

    # Content pipeline (issue 3) ----------------------------------------------------------------
    fetch_allow_hosts: tuple[str, ...] = _setting(
        "ATLAS_FETCH_ALLOW_HOSTS",
        (),
        _hosts_or_cidrs,
        "Hosts or CIDRs exempt from the SSRF guard, comma-separated (e.g. 127.0.0.1 for a test origin).",
    )
    fetch_connect_timeout_seconds: float = _setting(
        "ATLAS_FETCH_CONNECT_TIMEOUT_SECONDS", 10.0, _float_in(0.01, 300), "Connect timeout per fetch."
    )
    fetch_read_timeout_seconds: float = _setting(
        "ATLAS_FETCH_READ_TIMEOUT_SECONDS", 20.0, _float_in(0.01, 600), "Longest wait for the next bytes."
    )
    fetch_total_timeout_seconds: float = _setting(
        "ATLAS_FETCH_TOTAL_TIMEOUT_SECONDS",
        60.0,
        _float_in(0.01, 3600),
        "Whole-fetch deadline (bounds slow-loris origins that trickle bytes under the read timeout).",
    )
    fetch_max_body_bytes: int = _setting(
        "ATLAS_FETCH_MAX_BODY_BYTES",
        10 << 20,
        _int_in(1024, 1 << 31),
        "Largest decoded response body; enforced while streaming (gzip bombs included).",
    )
    fetch_max_redirects: int = _setting(
        "ATLAS_FETCH_MAX_REDIRECTS", 5, _int_in(0, 50), "Redirects followed per fetch."
    )
    host_rate_per_second: float = _setting(
        "ATLAS_HOST_RATE_PER_SECOND", 2.0, _float_in(0, 1e6), "Politeness: requests per second per host."
    )
    host_rate_burst: int = _setting(
        "ATLAS_HOST_RATE_BURST", 4, _int_in(1, 1_000_000), "Requests a host may get at once above its rate."
    )
    host_rate_overrides: tuple[str, ...] = _setting(
        "ATLAS_HOST_RATE_OVERRIDES",
        (),
        _csv,
        "Per-host politeness rates, comma-separated host=rate (e.g. example.org=0.5).",
    )
    host_max_concurrency: int = _setting(
        "ATLAS_HOST_MAX_CONCURRENCY", 8, _int_in(1, 1024), "Ceiling of the adaptive per-host concurrency."
    )
    fetch_max_concurrency: int = _setting(
        "ATLAS_FETCH_MAX_CONCURRENCY", 64, _int_in(1, 4096), "Ceiling of the adaptive global concurrency."
    )
    breaker_window_seconds: float = _setting(
        "ATLAS_BREAKER_WINDOW_SECONDS", 30.0, _float_in(1, 3600), "Window the failure rate is counted over."
    )
    breaker_min_calls: int = _setting(
        "ATLAS_BREAKER_MIN_CALLS", 10, _int_in(1, 100_000), "Calls in the window before the breaker may trip."
    )
    breaker_failure_rate: float = _setting(
        "ATLAS_BREAKER_FAILURE_RATE", 0.5, _float_in(0.01, 1), "Failure rate that opens a host's breaker."
    )
    breaker_cooldown_seconds: float = _setting(
        "ATLAS_BREAKER_COOLDOWN_SECONDS", 5.0, _float_in(0.01, 86_400), "First open period; doubles per trip."
    )
    breaker_max_cooldown_seconds: float = _setting(
        "ATLAS_BREAKER_MAX_COOLDOWN_SECONDS", 300.0, _float_in(0.01, 86_400), "Longest open period."
    )
    breaker_half_open_probes: int = _setting(
        "ATLAS_BREAKER_HALF_OPEN_PROBES", 2, _int_in(1, 1000), "Probe calls let through when half-open."
    )
    max_tracked_hosts: int = _setting(
        "ATLAS_MAX_TRACKED_HOSTS", 1024, _int_in(1, 1_000_000), "Hosts whose state is kept (LRU beyond)."
    )
    feed_poll_interval_seconds: float = _setting(
        "ATLAS_FEED_POLL_INTERVAL_SECONDS", 900.0, _float_in(1, 86_400 * 7), "Default feed poll interval."
    )
    feed_backoff_cap_seconds: float = _setting(
        "ATLAS_FEED_BACKOFF_CAP_SECONDS",
        86_400.0,
        _float_in(1, 86_400 * 30),
        "Longest wait after failed polls.",
    )
    # End of content pipeline ---------------------------------------------------------------------

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database file this configuration names."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'atlas.db'}"
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"ATLAS_DATABASE_URL: expected sqlite:///PATH, got {url!r}")
        return Path(url[len("sqlite:///") :])

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def setting_fields() -> list[dataclasses.Field[Any]]:
    """The settings model's fields, in declaration order (for docs and `config show`)."""
    return list(dataclasses.fields(Settings))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from defaults and `environ` (default: the process environment).

    Raises ConfigError naming the variable, the bad value and what was expected.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in setting_fields():
        name = f.metadata["env"]
        if name in env:
            try:
                values[f.name] = f.metadata["parse"](env[name])
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
    settings = Settings(**values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Cross-field checks that one field's parser cannot make."""
    if settings.backoff_cap_seconds < settings.backoff_base_seconds:
        raise ConfigError(
            "ATLAS_BACKOFF_CAP_SECONDS: must be >= ATLAS_BACKOFF_BASE_SECONDS "
            f"(got {settings.backoff_cap_seconds:g} < {settings.backoff_base_seconds:g})"
        )
    settings.sqlite_path  # noqa: B018 - raises ConfigError on a URL this build cannot open
