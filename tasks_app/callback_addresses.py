"""Which addresses a webhook callback may reach: public ones, and the networks an operator allows.

A `callback_url` comes from an API client, and the worker that POSTs to it sits inside the
deployment's network. Left unchecked, a client could make it call the metadata service
(169.254.169.254), a database or an admin port on 10.x: server-side request forgery. So a
callback may go to a globally routable address only, or into WEBHOOK_ALLOWED_NETWORKS (e.g. a
receiver inside your own network; the tests allow loopback for their local receivers).

Two checks, for two moments:
- at submit, `refused_host` names an IP literal or "localhost" that is not allowed, so the API
  refuses it at once (no DNS lookup in the request);
- at delivery, `connect_to_allowed_address` resolves the host, refuses it if any of its addresses
  is not allowed, and connects to an address it checked. Checking what is actually connected to
  leaves no gap for DNS that answers differently the second time (DNS rebinding).
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class CallbackAddressRefused(Exception):
    """The callback's host is, or resolves to, an address callbacks may not reach."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_allowed(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in network for network in settings.WEBHOOK_ALLOWED_NETWORKS):
        return True
    return address.is_global and not address.is_multicast


def _refusal(host: str, address: IPAddress) -> str:
    named = f"{host} ({address})" if host != str(address) else host
    return (
        f"callback host {named} is not a public address; callbacks go to public addresses only "
        "(WEBHOOK_ALLOWED_NETWORKS lists the private networks allowed)"
    )


def refused_host(url: str) -> str | None:
    """The host of `url` if it alone says the callback is refused (an address, or localhost)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        address = ipaddress.ip_address("127.0.0.1")  # what every resolver answers for it (RFC 6761)
    else:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: checked when the callback is sent
    return None if is_allowed(address) else host


def connect_to_allowed_address(address: tuple[str, int], timeout=None, source_address=None) -> socket.socket:
    """socket.create_connection, refusing a host any of whose addresses is not allowed."""
    host, port = address
    candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # SOCK_STREAM over IPv4/IPv6: each sockaddr starts with (address text, port).
    addresses = [(str(sockaddr[0]), int(sockaddr[1])) for *_, sockaddr in candidates]
    for text, _port in addresses:
        resolved = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone
        if not is_allowed(resolved):
            raise CallbackAddressRefused(_refusal(host, resolved))
    error: OSError | None = None
    for resolved_address in addresses:
        try:
            # An address, not the name: what is connected to is what was checked.
            return socket.create_connection(resolved_address, timeout, source_address)
        except OSError as failure:
            error = failure
    raise error or OSError(f"no address for {host}")
