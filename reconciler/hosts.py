"""Whether a host is this machine: the one loopback rule for every check that needs one.

Tokens may go over plain http only to loopback, a ping only to https or loopback, the emulator
and the metrics endpoint bind loopback unless told otherwise, and the emulator's control API
answers only loopback ``Host`` names. All of them ask this module. No name is ever resolved:
only ``localhost`` itself and loopback address literals count (``localhost.example.com`` or a
decimal ``2130706433`` do not).
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback literal (127.0.0.0/8, ``::1``, ``::ffff:127.x``), brackets
    and a trailing dot allowed."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
