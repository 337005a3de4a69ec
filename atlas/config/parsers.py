"""Parsers of setting values: text from an env file or the environment -> a typed value.

Each parser raises ValueError with a message that quotes the bad value and says what was expected;
the loader prefixes it with `file:line: VARIABLE: `. Compound values (lists, host=value maps,
sizes) are checked here, entry by entry, so a value the loader accepts is one every consumer can
use: nothing is left for a worker process to find out at start.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from pathlib import Path


def int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer {lo}-{hi}, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer {lo}-{hi}, got {raw!r}")
        return value

    return parse


def float_in(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number {lo:g}-{hi:g}, got {raw!r}") from None
        if not lo <= value <= hi:  # also refuses nan
            raise ValueError(f"expected a number {lo:g}-{hi:g}, got {raw!r}")
        return value

    return parse


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")

    return parse


def path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("expected a path, got an empty value")
    return Path(raw.strip())


def text(raw: str) -> str:
    return raw.strip()


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def optional_path(raw: str) -> Path | None:
    return Path(raw.strip()) if raw.strip() else None


_SIZE_UNITS = {"": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2}
_SIZE_UNITS |= {"g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}


def bytes_in(lo: int, hi: int) -> Callable[[str], int]:
    """Bytes as an integer or with a unit: `512MiB`, `2GB`, `1048576`."""

    def parse(raw: str) -> int:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", raw)
        unit = match.group(2).lower() if match else ""
        if not match or unit not in _SIZE_UNITS:
            raise ValueError(f"expected a size in bytes (e.g. 512MiB, 2GB, 1048576), got {raw!r}")
        value = int(float(match.group(1)) * _SIZE_UNITS[unit])
        if not lo <= value <= hi:
            raise ValueError(f"expected a size {lo}-{hi} bytes, got {raw!r}")
        return value

    return parse


def csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


# A DNS name as RFC 1123 allows it (labels of letters, digits and inner hyphens; `_` too, which
# real intranet names use), with an optional trailing dot.
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def _hostname(entry: str) -> str | None:
    name = entry.lower().removesuffix(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    return name


def _address(entry: str) -> str | None:
    """The canonical address for one in any notation the SSRF guard reads (`127.1`, `0x7f.1`, `::1`)."""
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        pass
    if not entry or not all(c in "0123456789abcdefxABCDEFX." for c in entry):
        return None
    try:
        # the legacy forms atlas.pipeline.ssrf.numeric_address accepts too
        return str(ipaddress.IPv4Address(socket.inet_aton(entry)))
    except OSError:
        return None


def _numeric(entry: str) -> bool:
    return _address(entry) is not None


def hosts_or_cidrs(raw: str) -> tuple[str, ...]:
    """`host,address,network/prefix`: a list of host names, addresses and CIDR networks."""
    entries = csv(raw)
    for entry in entries:
        address, slash, prefix = entry.partition("/")
        if slash:
            try:
                ipaddress.ip_network(f"{_address(address)}/{prefix}", strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not a CIDR network (e.g. 10.0.0.0/8, fd00::/8)") from None
        elif not _numeric(entry) and _hostname(entry) is None:
            raise ValueError(
                f"{entry!r} is not a host name, an address or a CIDR network; "
                "expected a comma-separated list like 127.0.0.1,wiki.intranet,10.0.0.0/8"
            )
    return entries


def _host_map(
    raw: str, noun: str, unit: str, example: str, value: Callable[[str], float | int | None]
) -> list[tuple[str, str]]:
    """`host=value,host=value` split into checked (host, raw value) pairs.

    `noun` names a value ("a rate"), `unit` says what it counts and its range, `example` shows one.
    """
    shape = f"host={noun.split()[-1]}"
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for part in csv(raw):
        host, sep, text_value = (s.strip() for s in part.partition("="))
        if not sep or not host:
            raise ValueError(f"{part!r} is not {shape} (expected e.g. {example}, comma-separated)")
        name = host.lower() if _numeric(host) else _hostname(host)
        if name is None:
            raise ValueError(f"{part!r}: {host!r} is not a host name (expected {shape}, e.g. {example})")
        if value(text_value) is None:
            raise ValueError(f"{part!r} is not {noun}: expected {shape} with {unit} (e.g. {example})")
        if name in seen:
            raise ValueError(f"{part!r}: {host!r} is given twice")
        seen.add(name)
        pairs.append((name, text_value))
    return pairs


def _rate(raw: str) -> float | None:
    try:
        rate = float(raw)
    except ValueError:
        return None
    return rate if 0 <= rate <= 1e6 else None  # also refuses nan and inf


def _count(raw: str) -> int | None:
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 1_000_000 else None


def host_rates(raw: str) -> tuple[tuple[str, float], ...]:
    """`host=rate,...`: per-host politeness in requests per second (0-1e6)."""
    pairs = _host_map(raw, "a rate", "requests per second, 0-1000000", "example.org=0.5", _rate)
    return tuple((host, float(rate)) for host, rate in pairs)


def host_limits(raw: str) -> tuple[tuple[str, int], ...]:
    """`host=N,...`: per-host overrides of the fetch concurrency (N >= 1)."""
    pairs = _host_map(raw, "a limit", "concurrent fetches, 1-1000000", "big.example=32", _count)
    return tuple((host, int(n)) for host, n in pairs)


_ORIGIN = re.compile(r"https?://[^/\s?#]+")


def origins(raw: str) -> tuple[str, ...]:
    """`scheme://host[:port],...` as browsers send them in `Origin`, or `*`."""
    entries = csv(raw)
    for entry in entries:
        if entry != "*" and not _ORIGIN.fullmatch(entry):
            raise ValueError(
                f"{entry!r} is not an origin (expected scheme://host[:port] with no path, "
                "e.g. https://atlas.example.org, comma-separated)"
            )
    return entries


def names(raw: str) -> tuple[str, ...]:
    """Comma-separated identifiers (e.g. collector names); whether each is known is checked by
    their user (the exporter names the known ones)."""
    entries = csv(raw)
    for entry in entries:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", entry):
            raise ValueError(f"{entry!r} is not a name (lowercase letters, digits and _; comma-separated)")
    return entries


def regex(raw: str) -> str:
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"expected a regular expression, got {raw!r}: {exc}") from None
    return raw


# systemd's resource-limit syntax, as systemd 252 reads it (systemd.resource-control(5),
# systemd.exec(5)): a value accepted here is one `systemd-analyze verify` takes without a warning
# (tests/integration/test_systemd_units.py renders each form into a unit and verifies it). [0-9],
# not \d: Python's \d matches other scripts' digits too, which systemd does not read.
_SD_MOST = 1 << 63  # systemd keeps these in 64 bits, the top values meaning "infinity"
_SD_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _sd_percent(raw: str, most: float) -> bool:
    """`N%` with at most two decimals, 0 < N <= most."""
    return bool(re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?%", raw)) and 0 < float(raw[:-1]) <= most


def systemd_memory(raw: str) -> bool:
    """MemoryMax=: bytes, or with K, M, G or T (base 1024; `1.5G`), a percentage of RAM, infinity."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([KMGT]?)", raw)
    if match and (match.group(2) or "." not in raw):
        return 1 <= float(match.group(1)) * _SD_SIZE_UNITS[match.group(2)] < _SD_MOST
    return raw == "infinity" or _sd_percent(raw, 100)


def systemd_cpu_quota(raw: str) -> bool:
    """CPUQuota=: a percentage of one CPU (200% = two cores)."""
    return _sd_percent(raw, float("inf"))


def systemd_tasks(raw: str) -> bool:
    """TasksMax=: a count, a percentage of the system's limit, infinity."""
    if re.fullmatch(r"[0-9]+", raw):
        return 0 < int(raw) < _SD_MOST
    return raw == "infinity" or _sd_percent(raw, 100)


def systemd_nofile(raw: str) -> bool:
    """LimitNOFILE=: a count, `soft:hard`, infinity."""
    parts = raw.split(":")
    if len(parts) > 2 or not all(p == "infinity" or re.fullmatch(r"[0-9]+", p) for p in parts):
        return False
    soft, hard = (float("inf") if p == "infinity" else int(p) for p in (parts[0], parts[-1]))
    return 0 < soft <= hard and (hard == float("inf") or hard < _SD_MOST)


def unit_limits(
    defaults: tuple[tuple[str, str], ...], check: Callable[[str], bool], syntax: str, example: str
) -> Callable[[str], tuple[tuple[str, str], ...]]:
    """`unit=value,...` over `defaults` (every unit, in order): the units named take their value,
    the others keep the default, so the parsed value is always the whole table.

    `check` says whether a value is systemd's syntax for this limit; `syntax` describes it.
    """
    known = [unit for unit, _ in defaults]

    def parse(raw: str) -> tuple[tuple[str, str], ...]:
        chosen: dict[str, str] = {}
        for part in csv(raw):
            unit, sep, value = (s.strip() for s in part.partition("="))
            if not sep or not unit:
                raise ValueError(f"{part!r} is not unit=value (expected e.g. {example}, comma-separated)")
            if unit not in known:
                raise ValueError(f"{part!r}: {unit!r} is not an Atlas unit (one of {', '.join(known)})")
            if not check(value):
                raise ValueError(f"{part!r}: {value!r} is not {syntax} (e.g. {example})")
            if unit in chosen:
                raise ValueError(f"{part!r}: {unit!r} is given twice")
            chosen[unit] = value
        return tuple((unit, chosen.get(unit, value)) for unit, value in defaults)

    return parse
