"""click parameter types for the values every command takes: counts and
positions, addresses, sizes.  Parsing is chrono.units'; these only name the
option in the message.  Their errors are UsageErrors, so they print as the
CLI's usual one line (``chrono: error: --to 2,00: ...``), not click's block.
"""
from __future__ import annotations

import click

from chrono.errors import UsageError
from chrono.units import parse_address, parse_count, parse_size


class PathParam(click.Path):
    """click.Path(path_type=pathlib.Path), importing pathlib only when a path
    is given: `chrono --version` and `--help` do without it (~3 ms)."""

    def convert(self, value, param, ctx):
        from pathlib import Path
        return Path(super().convert(value, param, ctx))


def _name(param: click.Parameter | None) -> str:
    if param is None:
        return "value"
    if isinstance(param, click.Argument):
        return param.human_readable_name
    return max(param.opts, key=len)         # the long form: --to, not -t


class Count(click.ParamType):
    """A count or instruction position: 2000000, 2,000,000 or 2_000_000."""

    name = "count"

    def __init__(self, min: int = 0, max: int | None = None):
        self.min, self.max = min, max

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        what = _name(param)
        n = parse_count(value, what)
        if n < self.min:
            raise UsageError(f"{what} {value}: must be at least {self.min:,}")
        if self.max is not None and n > self.max:
            raise UsageError(f"{what} {value}: must be at most {self.max:,}")
        return n


class Address(click.ParamType):
    """0x80001000 (hex) or digits (decimal: a note on stderr says so)."""

    name = "address"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        what = _name(param)
        address, decimal = parse_address(value, what)
        if decimal:
            click.echo(f"chrono: {what} {value} read as decimal: {address:#x}", err=True)
        return address


class Net(click.ParamType):
    """--net none | user[,hostfwd=tcp:127.0.0.1:HOSTPORT-:GUESTPORT...] (chrono.net.config)."""

    name = "net"

    def convert(self, value, param, ctx):
        from chrono.net.config import NetConfig, parse_net
        if isinstance(value, NetConfig):
            return value
        return parse_net(value)


class Size(click.ParamType):
    """A size with a binary unit: 512M, 2G (limits are checked where they are known)."""

    name = "size"

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            return value
        return parse_size(value, _name(param))


COUNT = Count()
ADDRESS = Address()
SIZE = Size()
NET = Net()
