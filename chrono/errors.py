"""Errors a user can act on.

Every failure caused by input (a missing file, a malformed image, an absurd
option, an unsupported guest action) is a ChronoError subclass.  Its message is
one line that names the thing and says what to do; the CLI prints it and exits
with ``exit_code``, without a traceback.  Anything else is a bug.
"""


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
