"""`--net`: which network the guest gets, in QEMU's -netdev user syntax.

    none                                     no network device (the default)
    user                                     user-mode networking through libslirp
    user,hostfwd=tcp:127.0.0.1:2222-:22      ... and host port 2222 forwarded to
                                             the guest's port 22 (repeatable)

A forward is `hostfwd=[tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`, as in
QEMU.  An empty HOSTADDR is 127.0.0.1 here (QEMU's is every interface: a guest
is reachable from other machines only when asked for by address); an empty
GUESTADDR is the guest's DHCP address, 10.0.2.15.

The addresses are QEMU's: network 10.0.2.0/24, the host (gateway) 10.0.2.2,
the DNS forwarder 10.0.2.3, DHCP handing out 10.0.2.15 first.  IPv4 only.
"""
from __future__ import annotations

from dataclasses import dataclass

from chrono.errors import UsageError

NETWORK = "10.0.2.0"
NETMASK = "255.255.255.0"
HOST = "10.0.2.2"
DNS = "10.0.2.3"
DHCP_START = "10.0.2.15"
GUEST_MAC = "52:54:00:12:34:56"             # the core's, QEMU's default

SYNTAX = "none, user, or user,hostfwd=tcp:127.0.0.1:HOSTPORT-:GUESTPORT"


@dataclass(frozen=True)
class Forward:
    """A host port forwarded to a guest port (slirp listens on the host)."""

    udp: bool
    host_addr: str
    host_port: int
    guest_addr: str
    guest_port: int

    def __str__(self) -> str:
        return (f"{'udp' if self.udp else 'tcp'}:{self.host_addr}:{self.host_port}-"
                f"{self.guest_addr}:{self.guest_port}")


@dataclass(frozen=True)
class NetConfig:
    mode: str = "none"                      # "none" or "user"
    forwards: tuple[Forward, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


NO_NET = NetConfig()


def parse_net(text: str) -> NetConfig:
    """A NetConfig from a --net value (UsageError naming what is wrong)."""
    parts = text.strip().split(",")
    mode = parts[0]
    if mode == "none":
        if len(parts) > 1:
            raise UsageError(f"--net none takes no options ({text!r}); use --net user,... "
                             f"to give some")
        return NO_NET
    if mode != "user":
        raise UsageError(f"--net {text}: unknown network {mode!r}; use {SYNTAX}")
    forwards = []
    for part in parts[1:]:
        key, _, value = part.partition("=")
        if key != "hostfwd" or not value:
            raise UsageError(f"--net {text}: unknown option {part!r}; --net user takes "
                             f"hostfwd=tcp:127.0.0.1:HOSTPORT-:GUESTPORT")
        forwards.append(_forward(value, text))
    seen = set()
    for f in forwards:
        if (f.udp, f.host_addr, f.host_port) in seen:
            raise UsageError(f"--net {text}: host port {f.host_port} is forwarded twice")
        seen.add((f.udp, f.host_addr, f.host_port))
    return NetConfig("user", tuple(forwards))


def _forward(value: str, text: str) -> Forward:
    import ipaddress            # here: only a hostfwd needs it, and a fast boot has none
    bad = UsageError(f"--net {text}: hostfwd={value} is not [tcp|udp]:[HOSTADDR]:HOSTPORT-"
                     f"[GUESTADDR]:GUESTPORT (e.g. hostfwd=tcp:127.0.0.1:2222-:22)")
    protocol, sep, rest = value.partition(":")
    host, dash, guest = rest.partition("-")
    if not sep or not dash or protocol not in ("", "tcp", "udp"):
        raise bad
    host_addr, host_port = _endpoint(host, "127.0.0.1", bad, text, "host")
    guest_addr, guest_port = _endpoint(guest, DHCP_START, bad, text, "guest")
    if ipaddress.IPv4Address(guest_addr) not in ipaddress.IPv4Network(f"{NETWORK}/{NETMASK}"):
        raise UsageError(f"--net {text}: guest address {guest_addr} is not on the guest's "
                         f"network {NETWORK}/24 (the guest is {DHCP_START})")
    return Forward(protocol == "udp", host_addr, host_port, guest_addr, guest_port)


def _endpoint(part: str, default: str, bad: UsageError, text: str, side: str) -> tuple[str, int]:
    import ipaddress
    addr, sep, port = part.rpartition(":")
    if not sep:
        raise bad
    addr = addr or default
    try:
        addr = str(ipaddress.IPv4Address(addr))
    except ValueError:
        raise UsageError(f"--net {text}: {side} address {addr!r} is not an IPv4 address") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--net {text}: {side} port {port!r} is not a port number (1-65535)")
    return addr, int(port)
