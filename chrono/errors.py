"""Errors a user can act on.

Every failure caused by input (a missing file, a malformed image, an absurd
option, an unsupported guest action) is a ChronoError subclass.  Its message is
one line that names the thing and says what to do; the CLI prints it and exits
with ``exit_code``, without a traceback.  Anything else is a bug.
"""


def os_error_message(what: str, exc: OSError) -> str:
    """One line for an OSError met opening or reading a file: what, why, what to do."""
    if isinstance(exc, FileNotFoundError):
        return f"{what}: no such file; check the path"
    if isinstance(exc, IsADirectoryError):
        return f"{what}: is a directory, not a file; give the file inside it"
    if isinstance(exc, PermissionError):
        return f"{what}: permission denied; make the file readable"
    return f"{what}: cannot read ({exc.strerror or exc}); check the file"


class Terminated(BaseException):
    """SIGTERM or SIGHUP during a session (raised by chrono.core.console's
    handler).  A BaseException, like KeyboardInterrupt, so that no `except
    Exception` swallows it.  Here rather than in the console so that the CLI
    can catch it without importing the console."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        import signal
        return signal.Signals(self.signum).name


class ChronoError(Exception):
    """Base class: a user-facing error with its own exit code."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(ChronoError):
    """Bad option values or combinations."""

    exit_code = 2


class ImageError(ChronoError):
    """A guest image (kernel, firmware, initrd, ELF) is missing or malformed."""

    exit_code = 3


class DiskError(ChronoError):
    """A disk image is missing, unreadable or unusable."""

    exit_code = 3


class GuestError(ChronoError):
    """The guest did something chrono cannot continue from."""

    exit_code = 4


class GuestFetchError(ChronoError):
    """A ready-made guest could not be downloaded or built (`chrono guest fetch`)."""

    exit_code = 5


class StoreError(ChronoError):
    """The snapshot store cannot be used as asked: missing, busy, read-only, misused."""

    exit_code = 6


class StoreFormatError(StoreError):
    """The store (or a record in it) uses a format version or feature this chrono does not read."""

    exit_code = 6


class StoreCorruptError(StoreError):
    """Stored data failed an integrity check (hash, codec, structure); names the damaged object."""

    exit_code = 7


class StoreFullError(StoreError):
    """A write did not fit (map size or disk space); the transaction was rolled back."""

    exit_code = 8


class UnknownSnapshotError(StoreError):
    """No snapshot has that name or id (or an id prefix is ambiguous)."""

    exit_code = 3


class RefNameError(StoreError):
    """A snapshot name that cannot be used as a ref (empty, too long, '/', control chars)."""

    exit_code = 2


class SnapshotMismatchError(StoreError):
    """A snapshot cannot be restored into this machine (other RAM, devices...)."""

    exit_code = 6


class UnknownTraceError(StoreError):
    """No recording has that name (`chrono trace list` shows them)."""

    exit_code = 3


class DivergenceError(ChronoError):
    """A replay did not reproduce the recorded run (names where and what differs)."""

    exit_code = 9


class BundleError(ChronoError):
    """A trace bundle file is damaged, truncated, of an unknown format or unsafe."""

    exit_code = 7


class NetworkError(ChronoError):
    """The guest's network cannot be set up: libslirp missing, a host port busy."""

    exit_code = 10
