"""The SSRF guard: which addresses a fetch may connect to.

A URL's host is resolved (or read as a numeric address in any form the C library accepts:
`2130706433`, `127.1`, `0x7f.1`, `0177.0.0.1`, `[::ffff:127.0.0.1]`) and *every* address it yields
must be public: loopback, private, link-local (cloud metadata at 169.254.169.254 among them),
multicast, reserved and unspecified addresses are refused. The fetcher connects to an address
vetted here, never to a name resolved again later, so a DNS answer that changes between the
check and the connection (rebinding) cannot slip past. Hosts or CIDRs in ATLAS_FETCH_ALLOW_HOSTS
are exempt (a test origin on 127.0.0.1, an intranet wiki).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from atlas.errors import PermanentStageError, StageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, as strings.
Resolver = Callable[[str, int], Awaitable[list[str]]]
# Addresses that are "global" by the registries but still reach a cloud provider's metadata service.
_METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})


class BlockedAddress(PermanentStageError):
    """The URL's host is or resolves to an address the SSRF guard refuses."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the system's resolver (getaddrinfo, off the event loop)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StageError(f"cannot resolve {host!r}: {exc.strerror}", stage="fetch", host=host) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def numeric_address(host: str) -> IPAddress | None:
    """The address a numeric host names, in any notation inet_aton accepts; None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host):
        return None
    try:
        # inet_aton knows the legacy forms browsers and curl still accept: 127.1, 2130706433, 0x7f.1.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def refused(address: IPAddress) -> str | None:
    """Why `address` may not be fetched, worded to follow "address X is" (`loopback`,
    `a cloud metadata endpoint`, `not public`), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in _METADATA:
        return "a cloud metadata endpoint"
    for attr, what in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(address, attr):
            return what
    if not address.is_global:
        return "not public"
    return None


@dataclass(frozen=True)
class AllowList:
    """Hosts (exact, case-insensitive) and networks exempt from the guard."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """From ATLAS_FETCH_ALLOW_HOSTS entries; raises ValueError naming a bad CIDR."""
        hosts, networks = set(), []
        for entry in entries:
            entry = entry.strip().lower()
            if not entry:
                continue
            if "/" in entry or numeric_address(entry) is not None:
                address = numeric_address(entry.split("/")[0])
                if address is None:
                    raise ValueError(f"expected a host or CIDR, got {entry!r}")
                suffix = entry.partition("/")[2]
                try:
                    networks.append(ipaddress.ip_network(f"{address}/{suffix}" if suffix else str(address)))
                except ValueError as exc:
                    raise ValueError(f"expected a host or CIDR, got {entry!r} ({exc})") from None
            else:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in net for net in self.networks)


async def vet(host: str, port: int, resolver: Resolver, allow: AllowList) -> str:
    """The address to connect to for `host`; BlockedAddress if any address it has is refused."""
    literal = numeric_address(host.strip("[]"))
    if allow.allows_host(host):
        return str(literal) if literal is not None else (await resolver(host, port))[0]
    addresses = (
        [literal] if literal is not None else [ipaddress.ip_address(a) for a in await resolver(host, port)]
    )
    if not addresses:
        raise StageError(f"{host!r} resolved to no address", stage="fetch", host=host)
    for address in addresses:
        if allow.allows_address(address):
            continue
        why = refused(address)
        if why is not None:
            shown = host if literal is None or host == str(literal) else f"{host} ({literal})"
            raise BlockedAddress(
                f"refused to fetch {shown}: address {address} is {why} "
                "(SSRF guard; see ATLAS_FETCH_ALLOW_HOSTS)",
                stage="fetch",
                host=host,
            )
    return str(addresses[0])
