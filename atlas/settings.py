"""Typed, validated settings: defaults < config/<env>.env (+ secrets) < ATLAS_* process environment.

One frozen `Settings` object is built at start (`atlas.config.loader.load_settings`) and passed to
whatever needs it; nothing reads the environment at import time. Every field declares its
environment variable, its parser (atlas.config.parsers), a one-line doc and its category, so the
reference (`config/REFERENCE.md`, `atlas-ops config schema`) is generated from this model. The
layering, provenance and file checks live in `atlas.config.loader`; this module imports nothing
of atlas.config but the parsers, so the loader can build `Settings` without an import circle.

Field metadata: `env` (the variable), `parse`, `doc`, `category`; `secret` names the entry of
`config/<env>.secrets` a secret field is read from (never from an env file); `bootstrap` marks the
variables that choose the files and so can only come from the process environment. Fields without
`env` metadata (`secrets`) are not settings: code that loops over fields uses `setting_fields()`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.config.parsers import boolean as _bool
from atlas.config.parsers import bytes_in as bytes_in  # re-exported: alerting.yaml sizes use it
from atlas.config.parsers import float_in as _float_in
from atlas.config.parsers import host_limits as _host_limits
from atlas.config.parsers import host_rates as _host_rates
from atlas.config.parsers import hosts_or_cidrs as _hosts_or_cidrs
from atlas.config.parsers import int_in as _int_in
from atlas.config.parsers import names as _names
from atlas.config.parsers import one_of as _one_of
from atlas.config.parsers import optional_path as _optional_path
from atlas.config.parsers import origins as _origins
from atlas.config.parsers import path as _path
from atlas.config.parsers import regex as _regex
from atlas.config.parsers import systemd_cpu_quota as _systemd_cpu_quota
from atlas.config.parsers import systemd_memory as _systemd_memory
from atlas.config.parsers import systemd_nofile as _systemd_nofile
from atlas.config.parsers import systemd_tasks as _systemd_tasks
from atlas.config.parsers import text as _text
from atlas.config.parsers import unit_limits as _unit_limits
from atlas.errors import ConfigError

ENVIRONMENTS = ("development", "staging", "production")


# Category -> heading of the reference (config/REFERENCE.md), in the reference's order. Every
# setting names its category; `_setting` refuses one that is not here, so none drops out of the docs.
# URL schemes the PostgreSQL backend serves (libpq accepts both).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

CATEGORIES = {
    "general": "General",
    "api": "API",
    "database": "Database",
    "engine": "Engine",
    "fetch": "Fetching",
    "hosts": "Per-host politeness and circuit breakers",
    "feeds": "Feeds",
    "exporter": "Exporter",
    "monitoring": "Monitoring",
    "router": "Alert router",
    "resources": "Resource budgets",
    "operations": "Operations (atlas-ops)",
    "secrets": "Secrets",
}


def _setting(
    env: str,
    default: Any,
    parse: Callable[[str], Any],
    doc: str,
    *,
    category: str,
    secret: str | None = None,
    bootstrap: bool = False,
) -> Any:
    if category not in CATEGORIES:
        raise ValueError(f"{env}: category {category!r} is not one of {', '.join(CATEGORIES)}")
    meta = {"env": env, "parse": parse, "doc": doc, "category": category}
    meta |= {"secret": secret} if secret else {}
    meta |= {"bootstrap": True} if bootstrap else {}
    return field(default=default, metadata=meta, repr=secret is None)


# The systemd units' resource limits (atlas/ops/units.py renders them; `atlas-ops install` with the
# environment's values, systemd/ with these): unit -> (MemoryMax, CPUQuota, TasksMax, LimitNOFILE).
# The engine forks its workers (ATLAS_WORKERS processes, each with threads) and so gets the most
# memory and tasks; the others are one process each but the alert router, whose senders run in a
# child process (~40 threads each side at ATLAS_ROUTER_CONCURRENCY=16: the API side's anyio pool
# of 40, the child's 16 webhook and 16 email sessions and its loops); backup is the daily
# atlas-backup.service.
UNIT_LIMITS = {
    "api": ("1G", "200%", "128", "65536"),
    "core": ("2G", "200%", "512", "65536"),
    "services": ("512M", "100%", "64", "65536"),
    "monitoring": ("256M", "50%", "64", "65536"),
    "exporter": ("256M", "50%", "64", "65536"),
    "alert-router": ("256M", "50%", "128", "65536"),
    "backup": ("512M", "100%", "32", "65536"),
}


def _unit_column(column: int) -> tuple[tuple[str, str], ...]:
    """One column of UNIT_LIMITS as a setting's value: ((unit, value), ...) for every unit."""
    return tuple((unit, limits[column]) for unit, limits in UNIT_LIMITS.items())


class SecretValues(Mapping[str, str]):
    """Decrypted secrets by name; its repr never shows a value."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"SecretValues({sorted(self._values)})"


@dataclass(frozen=True)
class Settings:
    """Every knob Atlas has. Build with `atlas.config.loader.load_settings`; construct directly only
    in tests."""

    environment: str = _setting(
        "ATLAS_ENVIRONMENT",
        "development",
        _one_of(*ENVIRONMENTS),
        "Which environment this is; picks CONFIG_DIR/<environment>.env and .secrets.",
        bootstrap=True,
        category="general",
    )
    data_dir: Path = _setting(
        "ATLAS_DATA_DIR", Path("var"), _path, "Where the database and state live.", category="general"
    )
    config_dir: Path = _setting(
        "ATLAS_CONFIG_DIR",
        Path("config"),
        _path,
        "Where config files live.",
        bootstrap=True,
        category="general",
    )
    database_url: str = _setting(
        "ATLAS_DATABASE_URL",
        "",
        _text,
        "sqlite:///PATH (default: DATA_DIR/atlas.db) or postgresql://...",
        category="general",
    )
    log_level: str = _setting(
        "ATLAS_LOG_LEVEL",
        "INFO",
        _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
        "Lowest level logged.",
        category="general",
    )

    # Database. FULL fsyncs the WAL at every commit: an acknowledged item survives power loss.
    # NORMAL survives a process crash but may lose the last commits on power loss.
    db_synchronous: str = _setting(
        "ATLAS_DB_SYNCHRONOUS",
        "FULL",
        _one_of("FULL", "NORMAL"),
        "SQLite synchronous level.",
        category="database",
    )
    db_busy_timeout_ms: int = _setting(
        "ATLAS_DB_BUSY_TIMEOUT_MS",
        10_000,
        _int_in(0, 600_000),
        "How long a writer waits for the lock.",
        category="database",
    )
    # Connections per process to PostgreSQL; an API process's threads and its group commit share
    # them, so this bounds the process's concurrent transactions (ignored on SQLite).
    db_pool_size: int = _setting(
        "ATLAS_DB_POOL_SIZE",
        10,
        _int_in(1, 1000),
        "PostgreSQL connections per process (ignored on SQLite).",
        category="database",
    )

    # Engine. The lease must outlive a heartbeat interval (lease/3) several times over.
    lease_seconds: float = _setting(
        "ATLAS_LEASE_SECONDS",
        30.0,
        _float_in(1, 3600),
        "How long a claim holds an item without heartbeat.",
        category="engine",
    )
    workers: int = _setting(
        "ATLAS_WORKERS", 0, _int_in(0, 256), "Worker processes (0 = one per CPU core).", category="engine"
    )
    worker_concurrency: int = _setting(
        "ATLAS_WORKER_CONCURRENCY",
        8,
        _int_in(1, 1024),
        "Items one worker process runs at once.",
        category="engine",
    )
    item_timeout_seconds: float = _setting(
        "ATLAS_ITEM_TIMEOUT_SECONDS",
        120.0,
        _float_in(1, 86_400),
        "A worker that makes no progress this long is killed; its items count a timeout.",
        category="engine",
    )
    claim_batch_size: int = _setting(
        "ATLAS_CLAIM_BATCH_SIZE",
        256,
        _int_in(1, 10_000),
        "Most items one claim transaction takes.",
        category="engine",
    )
    claim_prefetch_seconds: float = _setting(
        "ATLAS_CLAIM_PREFETCH_SECONDS",
        0.25,
        _float_in(0, 60),
        "Work an engine claims ahead of its workers, in seconds at its recent completion rate (at"
        " least one more item per running slot). More: fewer claim transactions on fast items;"
        " less: a backlog shared more evenly between engines.",
        category="engine",
    )
    inline_document_max_chars: int = _setting(
        "ATLAS_INLINE_DOCUMENT_MAX_CHARS",
        65_536,
        _int_in(0, 1_048_576),
        "Plain-text and Markdown documents up to this many characters take the engine's fast path"
        " (the default pipeline only; 0: every item goes to a worker as any other): never leased,"
        " they are settled in batches by the workers and written unleased, or by the engine"
        " itself in the transaction that claims them while no worker is ready.",
        category="engine",
    )
    commit_interval_ms: float = _setting(
        "ATLAS_COMMIT_INTERVAL_MS",
        20.0,
        _float_in(0, 10_000),
        "Completions are gathered this long into one transaction.",
        category="engine",
    )
    poll_interval_ms: float = _setting(
        "ATLAS_POLL_INTERVAL_MS",
        100.0,
        _float_in(1, 60_000),
        "How often an idle engine looks for work.",
        category="engine",
    )
    # Retries: capped exponential backoff with full jitter (AWS Architecture Blog, "Exponential
    # Backoff And Jitter", 2015): sleep = uniform(0, min(cap, base * 2**attempt)). With base 2 s,
    # cap 10 min and 6 attempts an item that keeps failing is retried over roughly a quarter hour
    # on average, long enough to ride out a deploy or a short upstream outage.
    max_attempts: int = _setting(
        "ATLAS_MAX_ATTEMPTS",
        6,
        _int_in(1, 100),
        "Failed attempts before an item is dead-lettered.",
        category="engine",
    )
    backoff_base_seconds: float = _setting(
        "ATLAS_BACKOFF_BASE_SECONDS",
        2.0,
        _float_in(0, 3600),
        "First retry's backoff ceiling.",
        category="engine",
    )
    backoff_cap_seconds: float = _setting(
        "ATLAS_BACKOFF_CAP_SECONDS",
        600.0,
        _float_in(0, 86_400),
        "Largest backoff ceiling.",
        category="engine",
    )
    max_deaths: int = _setting(
        "ATLAS_MAX_DEATHS",
        2,
        _int_in(1, 100),
        "Worker deaths or timeouts on one item before it is quarantined in the DLQ.",
        category="engine",
    )
    max_lease_expiries: int = _setting(
        "ATLAS_MAX_LEASE_EXPIRIES",
        5,
        _int_in(1, 1000),
        "Expired leases (engine crashed while holding it) before an item is quarantined.",
        category="engine",
    )
    dlq_retention_days: float = _setting(
        "ATLAS_DLQ_RETENTION_DAYS",
        30.0,
        _float_in(0, 36_500),
        "Dead items older than this are purged.",
        category="engine",
    )
    core_metrics_port: int = _setting(
        "ATLAS_CORE_METRICS_PORT",
        9112,
        _int_in(0, 65535),
        "Engine /metrics port (0 = off).",
        category="engine",
    )
    core_metrics_host: str = _setting(
        "ATLAS_CORE_METRICS_HOST",
        "127.0.0.1",
        _text,
        "Engine /metrics bind address.",
        category="engine",
    )

    api_host: str = _setting("ATLAS_API_HOST", "127.0.0.1", _text, "API bind address.", category="api")
    api_port: int = _setting("ATLAS_API_PORT", 8000, _int_in(1, 65535), "API port.", category="api")
    api_auth_disabled: bool = _setting(
        "ATLAS_API_AUTH_DISABLED",
        False,
        _bool,
        "Serve without API keys (development only; refused in production).",
        category="api",
    )
    api_key_pepper: str = _setting(
        "ATLAS_API_KEY_PEPPER",
        "",
        _text,
        "Mixed into API key hashes (empty = none; on a change the old one is kept as a verifier in "
        "api_key_pepper_previous until keys are re-hashed on use).",
        secret="api_key_pepper",
        category="api",
    )
    api_rate_limit_per_key: float = _setting(
        "ATLAS_API_RATE_LIMIT_PER_KEY",
        0.0,
        _float_in(0, 1e6),
        "Requests per second per API key (0 = unlimited).",
        category="api",
    )
    api_rate_burst: int = _setting(
        "ATLAS_API_RATE_BURST",
        200,
        _int_in(1, 1_000_000),
        "Requests a key may send at once above its rate.",
        category="api",
    )
    api_max_body_bytes: int = _setting(
        "ATLAS_API_MAX_BODY_BYTES",
        32 << 20,
        bytes_in(1024, 1 << 31),
        "Largest request body accepted.",
        category="api",
    )
    api_max_json_depth: int = _setting(
        "ATLAS_API_MAX_JSON_DEPTH",
        32,
        _int_in(2, 1000),
        "Deepest JSON nesting accepted.",
        category="api",
    )
    api_batch_max_items: int = _setting(
        "ATLAS_API_BATCH_MAX_ITEMS",
        1000,
        _int_in(1, 100_000),
        "Most items in one batch request.",
        category="api",
    )
    api_cors_origins: tuple[str, ...] = _setting(
        "ATLAS_API_CORS_ORIGINS",
        (),
        _origins,
        "Origins allowed by CORS, comma-separated (empty = CORS off).",
        category="api",
    )
    api_behind_tls: bool = _setting(
        "ATLAS_API_BEHIND_TLS",
        False,
        _bool,
        "A TLS proxy fronts the API: send HSTS.",
        category="api",
    )
    # Backpressure. The defaults protect the disk and the accept latency, not the queue's length:
    # a million-item bulk import into a stopped engine is accepted. Set the marks to shed earlier.
    api_backlog_high_water: int = _setting(
        "ATLAS_API_BACKLOG_HIGH_WATER",
        0,
        _int_in(0, 1 << 40),
        "Queued items above which ingest gets 429 (0 = off).",
        category="api",
    )
    api_oldest_queued_high_water_seconds: float = _setting(
        "ATLAS_API_OLDEST_QUEUED_HIGH_WATER_SECONDS",
        0.0,
        _float_in(0, 1e9),
        "Age of the oldest queued item above which ingest gets 429 (0 = off).",
        category="api",
    )
    disk_low_water_bytes: int = _setting(
        "ATLAS_DISK_LOW_WATER_BYTES",
        512 << 20,
        bytes_in(0, 1 << 50),
        "Free space under which writes get 503 and readiness fails.",
        category="api",
    )
    api_commit_process: bool = _setting(
        "ATLAS_API_COMMIT_PROCESS",
        True,
        _bool,
        "`atlas api` commits the items of requests of up to 100 items in a child process with its "
        "own interpreter, so the commits overlap request handling; bigger batches, and all items "
        "when false, in a thread of the API process.",
        category="api",
    )
    api_max_pending_rows: int = _setting(
        "ATLAS_API_MAX_PENDING_ROWS",
        50_000,
        _int_in(1, 10_000_000),
        "Items waiting for the group commit above which ingest gets 503 (protects accept latency).",
        category="api",
    )

    # `atlas exporter` (and the exporter thread in `atlas up`). Paths and patterns mirror
    # node_exporter's --path.* and --collector.* flags; the defaults are upstream node_exporter 1.5's.
    exporter_port: int = _setting(
        "ATLAS_EXPORTER_PORT",
        9110,
        _int_in(0, 65535),
        "Exporter /metrics port (0 = off in `atlas up`).",
        category="exporter",
    )
    exporter_host: str = _setting(
        "ATLAS_EXPORTER_HOST",
        "127.0.0.1",
        _text,
        "Exporter bind address (0.0.0.0 for a remote Prometheus).",
        category="exporter",
    )
    exporter_rootfs: Path = _setting(
        "ATLAS_EXPORTER_ROOTFS",
        Path("/"),
        _path,
        "Host root as seen by the exporter (like --path.rootfs); filesystems are measured under it.",
        category="exporter",
    )
    exporter_procfs: Path = _setting(
        "ATLAS_EXPORTER_PROCFS",
        Path("/proc"),
        _path,
        "procfs mount point (like --path.procfs).",
        category="exporter",
    )
    exporter_sysfs: Path = _setting(
        "ATLAS_EXPORTER_SYSFS",
        Path("/sys"),
        _path,
        "sysfs mount point (like --path.sysfs).",
        category="exporter",
    )
    exporter_mount_points_exclude: str = _setting(
        "ATLAS_EXPORTER_MOUNT_POINTS_EXCLUDE",
        r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
        _regex,
        "Mount points not reported (regex, searched).",
        category="exporter",
    )
    exporter_fs_types_exclude: str = _setting(
        "ATLAS_EXPORTER_FS_TYPES_EXCLUDE",
        r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660"
        r"|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$",
        _regex,
        "Filesystem types not reported (regex).",
        category="exporter",
    )
    exporter_disk_devices_exclude: str = _setting(
        "ATLAS_EXPORTER_DISK_DEVICES_EXCLUDE",
        r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$",
        _regex,
        "Block devices not reported: partitions and virtual devices (regex).",
        category="exporter",
    )
    exporter_net_devices_exclude: str = _setting(
        "ATLAS_EXPORTER_NET_DEVICES_EXCLUDE",
        "",
        _regex,
        "Network devices not reported (regex; empty = none).",
        category="exporter",
    )
    # Added by issue 16 (node_exporter parity): textfile directory, netstat field filter, netclass
    # and arp device filters, collectors turned off one by one. Upstream defaults; Debian's
    # prometheus-node-exporter package differs in netdev (^lo$), mount points (adds run, mnt,
    # media) and the textfile directory (/var/lib/prometheus/node-exporter): README, Monitoring.
    exporter_textfile_dir: Path | None = _setting(
        "ATLAS_EXPORTER_TEXTFILE_DIR",
        None,
        _optional_path,
        "Directory of *.prom files exported as-is (like --collector.textfile.directory; empty = none).",
        category="exporter",
    )
    exporter_netstat_fields: str = _setting(
        "ATLAS_EXPORTER_NETSTAT_FIELDS",
        r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
        r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)"
        r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
        r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$",
        _regex,
        "/proc/net/{netstat,snmp,snmp6} fields exported as node_netstat_* (like --collector.netstat.fields).",
        category="exporter",
    )
    exporter_netclass_devices_exclude: str = _setting(
        "ATLAS_EXPORTER_NETCLASS_DEVICES_EXCLUDE",
        "",
        _regex,
        "Network devices left out of node_network_{up,info,mtu_bytes,...} (like"
        " --collector.netclass.ignored-devices; empty = none).",
        category="exporter",
    )
    exporter_arp_devices_exclude: str = _setting(
        "ATLAS_EXPORTER_ARP_DEVICES_EXCLUDE",
        "",
        _regex,
        "Network devices left out of node_arp_entries (like --collector.arp.device-exclude; empty = none).",
        category="exporter",
    )
    exporter_collectors_disabled: tuple[str, ...] = _setting(
        "ATLAS_EXPORTER_COLLECTORS_DISABLED",
        (),
        _names,
        "Collectors turned off, comma-separated node_exporter names (like --no-collector.<name>),"
        " e.g. textfile,arp; `business` and `services` turn off Atlas's own.",
        category="exporter",
    )
    exporter_dlq_top_n: int = _setting(
        "ATLAS_EXPORTER_DLQ_TOP_N",
        20,
        _int_in(1, 1000),
        'DLQ fingerprints exported one by one; the rest are summed as fingerprint="other".',
        category="exporter",
    )

    fetch_allow_hosts: tuple[str, ...] = _setting(
        "ATLAS_FETCH_ALLOW_HOSTS",
        (),
        _hosts_or_cidrs,
        "Hosts or CIDRs exempt from the SSRF guard, comma-separated (e.g. 127.0.0.1 for a test origin).",
        category="fetch",
    )
    fetch_connect_timeout_seconds: float = _setting(
        "ATLAS_FETCH_CONNECT_TIMEOUT_SECONDS",
        10.0,
        _float_in(0.01, 300),
        "Connect timeout per fetch.",
        category="fetch",
    )
    fetch_read_timeout_seconds: float = _setting(
        "ATLAS_FETCH_READ_TIMEOUT_SECONDS",
        20.0,
        _float_in(0.01, 600),
        "Longest wait for the next bytes.",
        category="fetch",
    )
    fetch_total_timeout_seconds: float = _setting(
        "ATLAS_FETCH_TOTAL_TIMEOUT_SECONDS",
        60.0,
        _float_in(0.01, 3600),
        "Whole-fetch deadline (bounds slow-loris origins that trickle bytes under the read timeout).",
        category="fetch",
    )
    fetch_max_body_bytes: int = _setting(
        "ATLAS_FETCH_MAX_BODY_BYTES",
        10 << 20,
        bytes_in(1024, 1 << 31),
        "Largest decoded response body; enforced while streaming (gzip bombs included).",
        category="fetch",
    )
    fetch_max_redirects: int = _setting(
        "ATLAS_FETCH_MAX_REDIRECTS",
        5,
        _int_in(0, 50),
        "Redirects followed per fetch.",
        category="fetch",
    )
    host_rate_per_second: float = _setting(
        "ATLAS_HOST_RATE_PER_SECOND",
        2.0,
        _float_in(0, 1e6),
        "Politeness: requests per second per host.",
        category="hosts",
    )
    host_rate_burst: int = _setting(
        "ATLAS_HOST_RATE_BURST",
        4,
        _int_in(1, 1_000_000),
        "Requests a host may get at once above its rate.",
        category="hosts",
    )
    host_rate_overrides: tuple[tuple[str, float], ...] = _setting(
        "ATLAS_HOST_RATE_OVERRIDES",
        (),
        _host_rates,
        "Per-host politeness rates, comma-separated host=rate (e.g. example.org=0.5).",
        category="hosts",
    )
    host_max_concurrency: int = _setting(
        "ATLAS_HOST_MAX_CONCURRENCY",
        8,
        _int_in(1, 1024),
        "Ceiling of the adaptive per-host concurrency.",
        category="hosts",
    )
    fetch_max_concurrency: int = _setting(
        "ATLAS_FETCH_MAX_CONCURRENCY",
        64,
        _int_in(1, 4096),
        "Ceiling of the adaptive global concurrency.",
        category="fetch",
    )
    fetch_host_concurrency: tuple[tuple[str, int], ...] = _setting(
        "ATLAS_FETCH_HOST_CONCURRENCY",
        (),
        _host_limits,
        "Per-host ceilings of the adaptive concurrency: host=N pairs, comma-separated.",
        category="hosts",
    )
    breaker_window_seconds: float = _setting(
        "ATLAS_BREAKER_WINDOW_SECONDS",
        30.0,
        _float_in(1, 3600),
        "Window the failure rate is counted over.",
        category="hosts",
    )
    breaker_min_calls: int = _setting(
        "ATLAS_BREAKER_MIN_CALLS",
        10,
        _int_in(1, 100_000),
        "Calls in the window before the breaker may trip.",
        category="hosts",
    )
    breaker_failure_rate: float = _setting(
        "ATLAS_BREAKER_FAILURE_RATE",
        0.5,
        _float_in(0.01, 1),
        "Failure rate that opens a host's breaker.",
        category="hosts",
    )
    breaker_cooldown_seconds: float = _setting(
        "ATLAS_BREAKER_COOLDOWN_SECONDS",
        5.0,
        _float_in(0.01, 86_400),
        "First open period; doubles per trip.",
        category="hosts",
    )
    breaker_max_cooldown_seconds: float = _setting(
        "ATLAS_BREAKER_MAX_COOLDOWN_SECONDS",
        300.0,
        _float_in(0.01, 86_400),
        "Longest open period.",
        category="hosts",
    )
    breaker_half_open_probes: int = _setting(
        "ATLAS_BREAKER_HALF_OPEN_PROBES",
        2,
        _int_in(1, 1000),
        "Probe calls let through when half-open.",
        category="hosts",
    )
    max_tracked_hosts: int = _setting(
        "ATLAS_MAX_TRACKED_HOSTS",
        1024,
        _int_in(1, 1_000_000),
        "Hosts whose state is kept (LRU beyond).",
        category="hosts",
    )
    feed_poll_interval_seconds: float = _setting(
        "ATLAS_FEED_POLL_INTERVAL_SECONDS",
        900.0,
        _float_in(1, 86_400 * 7),
        "Default feed poll interval.",
        category="feeds",
    )
    feed_backoff_cap_seconds: float = _setting(
        "ATLAS_FEED_BACKOFF_CAP_SECONDS",
        86_400.0,
        _float_in(1, 86_400 * 30),
        "Longest wait after failed polls.",
        category="feeds",
    )

    api_keepalive_timeout_seconds: int = _setting(
        "ATLAS_API_KEEPALIVE_TIMEOUT_SECONDS",
        5,
        _int_in(1, 3600),
        "Idle keep-alive connections close after.",
        category="api",
    )
    api_event_loop: str = _setting(
        "ATLAS_API_EVENT_LOOP",
        "uvloop",
        _one_of("asyncio", "uvloop"),
        "The API's event loop and HTTP parser: uvloop with httptools, or asyncio with h11 "
        "(bench/ingest.py measures both; uvloop served about twice the requests a second).",
        category="api",
    )
    api_shutdown_timeout_seconds: int = _setting(
        "ATLAS_API_SHUTDOWN_TIMEOUT_SECONDS",
        10,
        _int_in(0, 3600),
        "On SIGTERM, requests in flight get this long to finish.",
        category="api",
    )
    alerting_file: Path | None = _setting(
        "ATLAS_ALERTING_FILE",
        None,
        _optional_path,
        "Alert thresholds (empty = CONFIG_DIR/alerting.yaml).",
        category="monitoring",
    )
    monitoring_file: Path | None = _setting(
        "ATLAS_MONITORING_FILE",
        None,
        _optional_path,
        "Check intervals and notification channels (empty = CONFIG_DIR/monitoring.yaml).",
        category="monitoring",
    )
    # Alert router (issue 12): `atlas alert-router` and the router thread of `atlas up`.
    router_host: str = _setting(
        "ATLAS_ROUTER_HOST", "127.0.0.1", _text, "Alert router bind address.", category="router"
    )
    router_port: int = _setting(
        "ATLAS_ROUTER_PORT",
        9111,
        _int_in(0, 65535),
        "Alert router port (0 = off in `atlas up`).",
        category="router",
    )
    router_max_body_bytes: int = _setting(
        "ATLAS_ROUTER_MAX_BODY_BYTES",
        4 << 20,
        bytes_in(1024, 1 << 30),
        "Largest Alertmanager webhook body the router accepts (413 above).",
        category="router",
    )
    # Transient delivery failures are retried with full jitter between 0 and min(cap, base * 2**n);
    # a channel that stays down keeps its deliveries pending (and the oldest-pending gauge rising)
    # rather than dropping them, unless ATLAS_ROUTER_MAX_ATTEMPTS is set.
    router_retry_base_seconds: float = _setting(
        "ATLAS_ROUTER_RETRY_BASE_SECONDS",
        1.0,
        _float_in(0.001, 3600),
        "First delivery retry's ceiling.",
        category="router",
    )
    router_retry_cap_seconds: float = _setting(
        "ATLAS_ROUTER_RETRY_CAP_SECONDS",
        300.0,
        _float_in(0.001, 86_400),
        "Largest delivery retry ceiling.",
        category="router",
    )
    router_max_attempts: int = _setting(
        "ATLAS_ROUTER_MAX_ATTEMPTS",
        0,
        _int_in(0, 1_000_000),
        "Failed delivery attempts before a delivery is dead (0 = retry transient failures forever).",
        category="router",
    )
    router_send_timeout_seconds: float = _setting(
        "ATLAS_ROUTER_SEND_TIMEOUT_SECONDS",
        10.0,
        _float_in(0.01, 600),
        "Timeout of one delivery attempt.",
        category="router",
    )
    # 16, not 8: an email is four round trips to the relay, so email deliveries/s are bounded by
    # sessions x round-trip time, not CPU. bench/router.py on a loaded 2-core machine (load 11-14),
    # senders in their own process: email p50/p99 1.0-1.3/1.4-2.1 s with 4 or 8 sessions,
    # 0.21-0.29/0.43-0.89 s with 16, 0.32/1.22 s with 24.
    router_concurrency: int = _setting(
        "ATLAS_ROUTER_CONCURRENCY",
        16,
        _int_in(1, 256),
        "Deliveries under way at once per email or webhook channel, unless its `concurrency` in "
        "monitoring.yaml says otherwise (Slack: one per webhook URL).",
        category="router",
    )
    memory_budget_bytes: int = _setting(
        "ATLAS_MEMORY_BUDGET_BYTES",
        1 << 30,
        bytes_in(0, 1 << 50),
        "Resident memory all Atlas processes may use together; health checks warn above it (0 = off).",
        category="resources",
    )
    cpu_budget_cores: float = _setting(
        "ATLAS_CPU_BUDGET_CORES",
        0.0,
        _float_in(0, 1024),
        "CPU cores Atlas may keep busy; /health degrades above it (0 = all of them).",
        category="resources",
    )
    open_files_budget: int = _setting(
        "ATLAS_OPEN_FILES_BUDGET",
        0,
        _int_in(0, 1 << 24),
        "File descriptors per process before health checks warn (0 = 80% of the process limit).",
        category="resources",
    )
    # Written as unit=value pairs, one variable per systemd directive: an env file line then reads
    # like the directive it sets, and each value has one syntax to check.
    systemd_memory_max: tuple[tuple[str, str], ...] = _setting(
        "ATLAS_SYSTEMD_MEMORY_MAX",
        _unit_column(0),
        _unit_limits(
            _unit_column(0),
            _systemd_memory,
            "a size (K, M, G, T: base 1024), a percentage or infinity",
            "core=4G",
        ),
        "`MemoryMax=` of the systemd units `atlas-ops install` writes, as unit=size (K, M, G, T: base"
        " 1024), unit=percentage of RAM or unit=infinity. Units not named keep their default.",
        category="resources",
    )
    systemd_cpu_quota: tuple[tuple[str, str], ...] = _setting(
        "ATLAS_SYSTEMD_CPU_QUOTA",
        _unit_column(1),
        _unit_limits(_unit_column(1), _systemd_cpu_quota, "a percentage of one CPU", "api=150%"),
        "`CPUQuota=` of the systemd units, as unit=percentage of one CPU (200% = two cores)."
        " Units not named keep their default.",
        category="resources",
    )
    systemd_tasks_max: tuple[tuple[str, str], ...] = _setting(
        "ATLAS_SYSTEMD_TASKS_MAX",
        _unit_column(2),
        _unit_limits(_unit_column(2), _systemd_tasks, "a count, a percentage or infinity", "core=1024"),
        "`TasksMax=` (processes and threads) of the systemd units, as unit=count, unit=percentage or"
        " unit=infinity. Units not named keep their default.",
        category="resources",
    )
    systemd_limit_nofile: tuple[tuple[str, str], ...] = _setting(
        "ATLAS_SYSTEMD_LIMIT_NOFILE",
        _unit_column(3),
        _unit_limits(_unit_column(3), _systemd_nofile, "a count, soft:hard or infinity", "core=131072"),
        "`LimitNOFILE=` (open files per process) of the systemd units, as unit=count, unit=soft:hard or"
        " unit=infinity. Units not named keep their default.",
        category="resources",
    )
    backup_dir: Path | None = _setting(
        "ATLAS_BACKUP_DIR",
        None,
        _optional_path,
        "Where `atlas-ops backup create` and scheduled backups write archives (empty = DATA_DIR/backups).",
        category="operations",
    )
    db_upkeep_interval_seconds: float = _setting(
        "ATLAS_DB_UPKEEP_INTERVAL_SECONDS",
        3600.0,
        _float_in(0.05, 7 * 86_400),
        "How often `atlas services` purges dead items past ATLAS_DLQ_RETENTION_DAYS, runs PRAGMA"
        " optimize and checkpoints the WAL.",
        category="operations",
    )
    rss_sample_seconds: float = _setting(
        "ATLAS_RSS_SAMPLE_SECONDS",
        60.0,
        _float_in(0.05, 86_400),
        "How often `atlas services` records every Atlas process's resident memory"
        " (for `atlas-ops monitoring analyze --memory`).",
        category="operations",
    )
    rss_retention_days: float = _setting(
        "ATLAS_RSS_RETENTION_DAYS",
        7.0,
        _float_in(0.01, 365),
        "Memory samples older than this are dropped.",
        category="operations",
    )
    service_backend: str = _setting(
        "ATLAS_SERVICE_BACKEND",
        "auto",
        _one_of("auto", "systemd", "local"),
        "How atlas-ops runs services: systemd units, the local supervisor, or auto"
        " (systemd when its units are installed).",
        category="operations",
    )
    # The deployment manager (atlas-ops deploy, rollback, deployment status, version list).
    install_prefix: Path = _setting(
        "ATLAS_INSTALL_PREFIX",
        Path("/opt/atlas"),
        _path,
        "Where `atlas-ops install` put Atlas: the deployment manager's releases/ and deploy/ "
        "(state, history).",
        category="operations",
    )
    deploy_blue_port: int = _setting(
        "ATLAS_DEPLOY_BLUE_PORT",
        8000,
        _int_in(1, 65535),
        "Blue-green: the API's first port (atlas-api@<port>.service).",
        category="operations",
    )
    deploy_green_port: int = _setting(
        "ATLAS_DEPLOY_GREEN_PORT",
        8001,
        _int_in(1, 65535),
        "Blue-green: the API's second port.",
        category="operations",
    )
    deploy_gate_timeout_seconds: float = _setting(
        "ATLAS_DEPLOY_GATE_TIMEOUT_SECONDS",
        60.0,
        _float_in(1, 3600),
        "A service restarted by a deployment must be ready and not unhealthy within this.",
        category="operations",
    )
    deploy_drain_timeout_seconds: float = _setting(
        "ATLAS_DEPLOY_DRAIN_TIMEOUT_SECONDS",
        30.0,
        _float_in(0, 3600),
        "Blue-green: at most this long for nginx's replaced workers to exit before the old color stops.",
        category="operations",
    )
    nginx_upstream_file: Path | None = _setting(
        "ATLAS_NGINX_UPSTREAM_FILE",
        None,
        _optional_path,
        "Blue-green: the nginx include holding `upstream atlas_api` (rewritten atomically on a switch).",
        category="operations",
    )
    nginx_reload_command: str = _setting(
        "ATLAS_NGINX_RELOAD_COMMAND",
        "nginx -s reload",
        _text,
        "Blue-green: the command that makes nginx read the switched upstream.",
        category="operations",
    )
    nginx_pid_file: Path | None = _setting(
        "ATLAS_NGINX_PID_FILE",
        Path("/run/nginx.pid"),
        _optional_path,
        "nginx master's pid file: the old color stops once the workers nginx replaced have exited "
        "(empty = stop after the reload).",
        category="operations",
    )
    secrets_key_file: Path | None = _setting(
        "ATLAS_SECRETS_KEY_FILE",
        None,
        _optional_path,
        "Key file (mode 0600, one Fernet key a line, primary first; empty = DATA_DIR/secrets.key). "
        "ATLAS_SECRETS_KEY, when set, is used instead.",
        category="secrets",
    )
    # Not a setting: the decrypted CONFIG_DIR/<environment>.secrets, by name (see atlas.secrets).
    secrets: SecretValues = field(default_factory=SecretValues, repr=False, compare=False)

    @property
    def backup_path(self) -> Path:
        """The directory backups go to."""
        return self.backup_dir or self.data_dir / "backups"

    @property
    def database_backend(self) -> str:
        """`postgresql` for a postgresql:// (or postgres://) URL, else `sqlite`."""
        return "postgresql" if self.database_url.startswith(POSTGRES_SCHEMES) else "sqlite"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database file this configuration names.

        Raises ConfigError for a URL that names no SQLite file (a PostgreSQL one included: code
        that only runs on SQLite says so instead of opening a file named like the URL).
        """
        url = self.database_url or f"sqlite:///{self.data_dir / 'atlas.db'}"
        if url.startswith(POSTGRES_SCHEMES):
            raise ConfigError(
                f"ATLAS_DATABASE_URL: this operation needs SQLite (sqlite:///PATH), got {url!r}"
            )
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"ATLAS_DATABASE_URL: expected sqlite:///PATH or postgresql://..., got {url!r}")
        return Path(url[len("sqlite:///") :])

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    def secret_values(self) -> list[str]:
        """Every secret value this configuration holds (for log redaction)."""
        fields = (getattr(self, f.name) for f in setting_fields() if "secret" in f.metadata)
        return [v for v in (*self.secrets.values(), *fields) if v]

    @property
    def key_file_path(self) -> Path:
        return self.secrets_key_file or self.data_dir / "secrets.key"

    @property
    def alerting_path(self) -> Path:
        return self.alerting_file or self.config_dir / "alerting.yaml"

    @property
    def monitoring_path(self) -> Path:
        return self.monitoring_file or self.config_dir / "monitoring.yaml"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def setting_fields() -> list[dataclasses.Field[Any]]:
    """The settings model's fields, in declaration order (for docs and `config show`).

    Only fields with an environment variable: non-setting fields (`secrets`) are left out.
    """
    return [f for f in dataclasses.fields(Settings) if "env" in f.metadata]


def validate(settings: Settings) -> None:
    """Cross-field checks that one field's parser cannot make."""
    if settings.backoff_cap_seconds < settings.backoff_base_seconds:
        raise ConfigError(
            "ATLAS_BACKOFF_CAP_SECONDS: must be >= ATLAS_BACKOFF_BASE_SECONDS "
            f"(got {settings.backoff_cap_seconds:g} < {settings.backoff_base_seconds:g})"
        )
    if settings.database_backend == "sqlite":
        settings.sqlite_path  # noqa: B018 - raises ConfigError on a URL this build cannot open
    elif "://" not in settings.database_url or len(settings.database_url.split("://", 1)[1]) == 0:
        raise ConfigError(f"ATLAS_DATABASE_URL: no host or database in {settings.database_url!r}")
