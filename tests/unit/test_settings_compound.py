"""Compound settings (lists, host=value maps, sizes, patterns) are checked entry by entry at load,
with file:line, so nothing a worker parses later can fail: every value the loader accepts is
handed to the code that consumes it here and must be taken. Real files in tmp_path."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from atlas.config.envfile import quote_env
from atlas.config.loader import collect, load_settings
from atlas.errors import ConfigError
from atlas.ops.units import Layout, render_units
from atlas.pipeline.hosts import HostGate, HostPolicy
from atlas.pipeline.ssrf import AllowList
from atlas.settings import UNIT_LIMITS, Settings, setting_fields


def _limits(column: int, **changed: str) -> tuple[tuple[str, str], ...]:
    """The whole ATLAS_SYSTEMD_* table (every unit, in order) with `changed` units' values."""
    changed = {unit.replace("_", "-"): value for unit, value in changed.items()}
    return tuple((unit, changed.get(unit, limits[column])) for unit, limits in UNIT_LIMITS.items())


# variable -> ([(good value, parsed)], [(bad value, start of the message after "VARIABLE: ")])
CASES: dict[str, tuple[list[tuple[str, Any]], list[tuple[str, str]]]] = {
    "ATLAS_HOST_RATE_OVERRIDES": (
        [
            ("example.org=0.5, Slow.Example.=2", (("example.org", 0.5), ("slow.example", 2.0))),
            ("10.0.0.7=0", (("10.0.0.7", 0.0),)),
            ("", ()),
        ],
        [
            ("example.org=fast", "'example.org=fast' is not a rate: expected host=rate with requests per"),
            ("example.org", "'example.org' is not host=rate (expected e.g. example.org=0.5"),
            ("example.org=-1", "'example.org=-1' is not a rate"),
            ("example.org=nan", "'example.org=nan' is not a rate"),
            ("example.org=inf", "'example.org=inf' is not a rate"),
            ("=1", "'=1' is not host=rate"),
            ("bad host=1", "'bad host=1': 'bad host' is not a host name"),
            ("a.example=1,A.example=2", "'A.example=2': 'A.example' is given twice"),
        ],
    ),
    "ATLAS_FETCH_HOST_CONCURRENCY": (
        [("big.example=32,small.example=1", (("big.example", 32), ("small.example", 1)))],
        [
            ("big.example", "'big.example' is not host=limit"),
            ("big.example=0", "'big.example=0' is not a limit: expected host=limit with concurrent"),
            ("big.example=2.5", "'big.example=2.5' is not a limit"),
            ("-bad-.example=2", "'-bad-.example=2': '-bad-.example' is not a host name"),
        ],
    ),
    "ATLAS_FETCH_ALLOW_HOSTS": (
        [
            (
                "127.0.0.1, wiki.intranet,10.0.0.0/8,fd00::/8,127.1,0x7f.1/32",
                ("127.0.0.1", "wiki.intranet", "10.0.0.0/8", "fd00::/8", "127.1", "0x7f.1/32"),
            )
        ],
        [
            ("10.0.0.0/33", "'10.0.0.0/33' is not a CIDR network"),
            ("wiki.intranet/8", "'wiki.intranet/8' is not a CIDR network"),
            ("http://wiki.intranet", "'http://wiki.intranet' is not a CIDR network"),
            ("wiki intranet", "'wiki intranet' is not a host name, an address or a CIDR network"),
            ("a..b", "'a..b' is not a host name"),
        ],
    ),
    "ATLAS_API_CORS_ORIGINS": (
        [("https://a.example,http://127.0.0.1:3000", ("https://a.example", "http://127.0.0.1:3000"))],
        [
            ("a.example", "'a.example' is not an origin (expected scheme://host[:port]"),
            ("https://a.example/app", "'https://a.example/app' is not an origin"),
        ],
    ),
    "ATLAS_API_MAX_BODY_BYTES": (
        [("32MiB", 32 << 20), ("2048", 2048), ("1.5k", 1500)],
        [("lots", "expected a size in bytes"), ("1PB", "expected a size in bytes"), ("1", "expected a size")],
    ),
    "ATLAS_FETCH_MAX_BODY_BYTES": (
        [("10MiB", 10 << 20)],
        [("10 parsecs", "expected a size in bytes"), ("3GiB", "expected a size 1024-2147483648 bytes")],
    ),
    "ATLAS_DISK_LOW_WATER_BYTES": ([("1GiB", 1 << 30)], [("-1", "expected a size in bytes")]),
    "ATLAS_MEMORY_BUDGET_BYTES": ([("4GB", 4 * 1000**3)], [("4 gigs", "expected a size in bytes")]),
    "ATLAS_ROUTER_MAX_BODY_BYTES": ([("4MiB", 4 << 20)], [("lots", "expected a size in bytes")]),
    "ATLAS_EXPORTER_MOUNT_POINTS_EXCLUDE": ([("^/boot", "^/boot")], [("^(/boot", "expected a regular")]),
    "ATLAS_EXPORTER_NETSTAT_FIELDS": ([("^Tcp_.*$", "^Tcp_.*$")], [("^(Tcp", "expected a regular")]),
    "ATLAS_EXPORTER_NETCLASS_DEVICES_EXCLUDE": ([("^lo$", "^lo$")], [("[lo", "expected a regular")]),
    "ATLAS_EXPORTER_ARP_DEVICES_EXCLUDE": ([("", "")], [("*", "expected a regular")]),
    "ATLAS_EXPORTER_COLLECTORS_DISABLED": (
        [("textfile, arp", ("textfile", "arp")), ("", ())],
        [("arp;textfile", "'arp;textfile' is not a name"), ("Arp", "'Arp' is not a name")],
    ),
    "ATLAS_EXPORTER_FS_TYPES_EXCLUDE": ([("^tmpfs$", "^tmpfs$")], [("[", "expected a regular expression")]),
    "ATLAS_EXPORTER_DISK_DEVICES_EXCLUDE": ([("^loop", "^loop")], [("(?P<", "expected a regular")]),
    "ATLAS_EXPORTER_NET_DEVICES_EXCLUDE": ([("^veth", "^veth")], [("*", "expected a regular expression")]),
    # systemd's own syntax; tests/integration/test_systemd_units.py has systemd read each good form.
    "ATLAS_SYSTEMD_MEMORY_MAX": (
        [
            ("core=4G, api=1.5G", _limits(0, core="4G", api="1.5G")),
            (
                "services=12.55%,monitoring=infinity,backup=1073741824",
                _limits(0, services="12.55%", monitoring="infinity", backup="1073741824"),
            ),
            ("", _limits(0)),
        ],
        [
            ("core=4g", "'core=4g': '4g' is not a size (K, M, G, T: base 1024), a percentage or infinity"),
            ("core=4GB", "'core=4GB': '4GB' is not a size"),
            ("core=0", "'core=0': '0' is not a size"),
            ("core=0.1", "'core=0.1': '0.1' is not a size"),
            ("core=150%", "'core=150%': '150%' is not a size"),
            (
                "db=1G",
                "'db=1G': 'db' is not an Atlas unit (one of api, core, services, monitoring, exporter,",
            ),
            ("atlas-core.service=1G", "'atlas-core.service=1G': 'atlas-core.service' is not an Atlas unit"),
            ("core", "'core' is not unit=value (expected e.g. core=4G, comma-separated)"),
            ("core=1G,core=2G", "'core=2G': 'core' is given twice"),
        ],
    ),
    "ATLAS_SYSTEMD_CPU_QUOTA": (
        [("api=150%, core=12.5%", _limits(1, api="150%", core="12.5%"))],
        [
            ("api=150", "'api=150': '150' is not a percentage of one CPU (e.g. api=150%)"),
            ("api=0%", "'api=0%': '0%' is not a percentage"),
            ("api=infinity", "'api=infinity': 'infinity' is not a percentage"),
            ("api=1.125%", "'api=1.125%': '1.125%' is not a percentage"),
        ],
    ),
    "ATLAS_SYSTEMD_TASKS_MAX": (
        [
            (
                "core=1024,services=15.5%,alert-router=infinity",
                _limits(2, core="1024", services="15.5%", alert_router="infinity"),
            )
        ],
        [
            ("core=0", "'core=0': '0' is not a count, a percentage or infinity (e.g. core=1024)"),
            ("core=150%", "'core=150%': '150%' is not a count"),
            ("core=1k", "'core=1k': '1k' is not a count"),
        ],
    ),
    "ATLAS_SYSTEMD_LIMIT_NOFILE": (
        [
            (
                "core=131072,api=1024:524288,exporter=infinity",
                _limits(3, core="131072", api="1024:524288", exporter="infinity"),
            )
        ],
        [
            ("core=2G", "'core=2G': '2G' is not a count, soft:hard or infinity (e.g. core=131072)"),
            ("core=4096:1024", "'core=4096:1024': '4096:1024' is not a count, soft:hard or infinity"),
            ("core=infinity:1024", "'core=infinity:1024': 'infinity:1024' is not a count"),
            ("core=0", "'core=0': '0' is not a count"),
            ("core=1:2:3", "'core=1:2:3': '1:2:3' is not a count"),
        ],
    ),
}


def _compound(f: dataclasses.Field[Any]) -> bool:
    parse = f.metadata["parse"]
    name = getattr(parse, "__qualname__", "")
    return isinstance(f.default, tuple) or name.split(".")[0] in ("bytes_in", "regex")


def test_every_compound_setting_has_cases_here() -> None:
    compound = {f.metadata["env"] for f in setting_fields() if _compound(f)}
    assert compound == set(CASES)


def _env_file(tmp_path: Path, key: str, value: str) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "staging.env"
    path.write_text(f"# staging\n\n{key}={quote_env(value)}\n")
    return path, {"ATLAS_CONFIG_DIR": str(tmp_path), "ATLAS_ENVIRONMENT": "staging"}


def _field(key: str) -> str:
    return next(f.name for f in setting_fields() if f.metadata["env"] == key)


@pytest.mark.parametrize(
    ("key", "value", "parsed"), [(k, v, p) for k, (good, _) in CASES.items() for v, p in good]
)
def test_good_values_parse_to_typed_values(tmp_path: Path, key: str, value: str, parsed: Any) -> None:
    _, environ = _env_file(tmp_path, key, value)
    loaded = collect(environ)
    assert [str(f) for f in loaded.errors] == []
    assert loaded.settings is not None and getattr(loaded.settings, _field(key)) == parsed
    assert str(loaded.sources[_field(key)]) == f"{tmp_path}/staging.env:3"


@pytest.mark.parametrize(
    ("key", "value", "message"), [(k, v, m) for k, (_, bad) in CASES.items() for v, m in bad]
)
def test_bad_values_are_refused_at_load_with_file_and_line(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    path, environ = _env_file(tmp_path, key, value)
    with pytest.raises(ConfigError) as exc:
        load_settings(environ)
    assert str(exc.value).startswith(f"{path}:3: {key}: {message}"), str(exc.value)


def test_what_the_loader_accepts_the_workers_accept() -> None:
    """The per-host policy, the SSRF allow list and the systemd units take every good value above."""
    good = {k: good[0][0] for k, (good, _) in CASES.items()}
    settings = load_settings({**good, "ATLAS_WORKERS": "2"}, files=False)
    policy = HostPolicy.from_settings(settings)
    assert policy.overrides == {"example.org": 0.25, "slow.example": 1.0}  # each worker's share
    assert HostGate(policy).host("big.example").limit.max_limit == 16
    allow = AllowList.parse(settings.fetch_allow_hosts)
    assert allow.allows_host("wiki.intranet") and len(allow.networks) == 5
    core = render_units(Layout(), settings)["atlas-core.service"].splitlines()
    assert {"MemoryMax=4G", "CPUQuota=12.5%", "TasksMax=1024", "LimitNOFILE=131072"} <= set(core)
    assert isinstance(settings, Settings)
