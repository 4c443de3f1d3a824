"""Which addresses the server may connect to on a user's behalf: public unicast only.

``refusal`` is the policy; ``resolve`` applies it to every address a host name resolves to, so a
URL cannot point the server at itself, the local network or a cloud metadata endpoint.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_REFUSED: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(network), reason)
    for network, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_V6_REFUSED: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(network), reason)
    for network, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "private"),
        ("100::/64", "reserved"),
        ("2001::/23", "reserved"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressRefused(Exception):
    """A host the policy does not allow; ``message`` can be shown to the caller as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnresolvableHost(AddressRefused):
    """The host name did not resolve to any address."""


def refusal(ip: IPAddress) -> str | None:
    """None for a public unicast address, else a short reason such as "loopback"."""
    if isinstance(ip, ipaddress.IPv4Address):
        for network, reason in _V4_REFUSED:
            if ip in network:
                return reason
        return None if ip.is_global else "reserved"
    if ip.ipv4_mapped is not None:
        return refusal(ip.ipv4_mapped)
    for network6, reason in _V6_REFUSED:
        if ip in network6:
            return reason
    if ip in _V4_COMPATIBLE:  # deprecated ::a.b.c.d form; never a real destination
        return refusal(_embedded_v4(ip)) or "reserved"
    if ip in _NAT64:
        return refusal(_embedded_v4(ip))
    if ip.sixtofour is not None and (embedded := refusal(ip.sixtofour)):  # 2002::/16
        return embedded
    if ip.is_multicast:
        return "multicast"
    return None if ip.is_global and not ip.is_reserved else "reserved"


async def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """The address to connect to for ``host``: the first one DNS gives (or the literal itself).

    Raises AddressRefused if any of the addresses is refused, unless ``allow_private``, and
    UnresolvableHost if there are none. Connect to the returned address, not to ``host`` again:
    a second lookup could answer differently.
    """
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        addresses = await _lookup(host, port)
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                # The resolved address itself is not shown: it would map the operator's network.
                what = f"address {host} is" if literal else f"host {host!r} resolves to"
                raise AddressRefused(
                    f"{what} {_describe(reason)}; only public addresses are allowed"
                )
    return str(addresses[0])


async def _lookup(host: str, port: int) -> list[IPAddress]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnresolvableHost(f"cannot resolve host {host!r}") from None
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and isinstance(sockaddr[0], str):
            address = ipaddress.ip_address(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise UnresolvableHost(f"cannot resolve host {host!r}")
    return addresses


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def _describe(reason: str) -> str:
    if reason.endswith(" space"):
        return f"an address in the {reason}"
    article = "an" if reason[0] in "aeiou" else "a"
    return f"{article} {reason} address"
