"""The SSRF guard's address policy: every blocked form is refused, allow-listed ones pass."""

from __future__ import annotations

import asyncio

import pytest

from atlas.pipeline.ssrf import AllowList, BlockedAddress, numeric_address, refused, vet

BLOCKED_HOSTS = [
    "127.0.0.1",
    "127.1",  # short form
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0x7f.1",
    "0177.0.0.1",  # octal
    "[::1]",
    "::ffff:127.0.0.1",  # IPv4-mapped IPv6
    "10.0.0.5",
    "172.16.3.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata (link-local)
    "fe80::1",
    "224.0.0.1",  # multicast
    "ff02::1",
    "0.0.0.0",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "100.64.0.1",  # carrier-grade NAT: not global
]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"numeric host {host!r} must not be resolved")


@pytest.mark.parametrize("host", BLOCKED_HOSTS)
def test_numeric_forms_of_internal_addresses_are_refused(host: str) -> None:
    with pytest.raises(BlockedAddress, match="SSRF guard"):
        run(vet(host, 80, no_dns, AllowList()))


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("0.0.0.0", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("10.0.0.5", "private"),
        ("169.254.169.254", "link-local"),
        ("100.100.100.200", "a cloud metadata endpoint"),
        ("100.64.0.1", "not public"),
    ],
)
def test_the_refusal_reads_as_a_sentence_for_every_category(host: str, why: str) -> None:
    with pytest.raises(BlockedAddress) as raised:
        run(vet(host, 80, no_dns, AllowList()))
    assert f": address {host} is {why} (SSRF guard" in str(raised.value)


def test_legacy_numeric_notations_parse_to_the_address_they_name() -> None:
    for form in ("127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.0.0.1"):
        assert str(numeric_address(form)) == "127.0.0.1"
    assert numeric_address("example.org") is None
    assert numeric_address("cafe.bad") is None


def test_a_name_is_refused_when_any_of_its_addresses_is_internal() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.1.2.3"]

    with pytest.raises(BlockedAddress, match=r"address 10\.1\.2\.3 is private \(SSRF guard"):
        run(vet("rebind.example", 443, mixed, AllowList()))


def test_public_addresses_pass_and_the_vetted_address_is_returned() -> None:
    async def public(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]

    assert run(vet("example.org", 443, public, AllowList())) == "93.184.215.14"
    assert refused(numeric_address("8.8.8.8")) is None  # type: ignore[arg-type]


def test_allow_list_takes_hosts_and_cidrs() -> None:
    allow = AllowList.parse(["127.0.0.1", "10.0.0.0/8", "Wiki.Intranet"])

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    assert run(vet("127.0.0.1", 80, no_dns, allow)) == "127.0.0.1"
    assert run(vet("10.9.8.7", 80, no_dns, allow)) == "10.9.8.7"
    assert run(vet("wiki.intranet", 80, loopback, allow)) == "127.0.0.1"
    with pytest.raises(BlockedAddress):
        run(vet("192.168.0.1", 80, no_dns, allow))
    with pytest.raises(ValueError, match="host or CIDR"):
        AllowList.parse(["10.0.0.0/99x"])
