"""Opening the files a guest is made of: --kernel, --bios, --initrd, --disk.

The one place they are opened, so every one is refused the same way when it
is not a regular file: reading a FIFO waits forever for a writer, a character
device never ends, a directory or socket cannot be read at all.  Nothing that
is not a regular file is opened (opening a device can itself do something).
"""
from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from chrono.errors import ChronoError, os_error_message

# What each kind of file is, and what to give instead.
_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory", "give the file inside it"),
    (stat.S_ISFIFO, "a FIFO (named pipe)", "save what it carries to a file and give that"),
    (stat.S_ISCHR, "a character device", "give a regular file"),
    (stat.S_ISBLK, "a block device", "copy it into an image file first (dd if=DEVICE of=FILE.img)"),
    (stat.S_ISSOCK, "a socket", "give a regular file"),
)

# Errors that mean "this file cannot be written", as opposed to "not found".
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ETXTBSY)


def open_guest_file(path: str | os.PathLike, what: str, error: type[ChronoError],
                    writable: bool = False, unwritable_hint: str = "") -> BinaryIO:
    """``path`` opened for reading (and writing, if ``writable``), checked to
    be a regular file.  Otherwise ``error`` with one line that starts with
    ``what`` (e.g. '--kernel Image'); ``unwritable_hint`` says what to do when
    the file exists but cannot be written."""
    try:
        _check_regular(os.stat(path).st_mode, what, error)
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(path, flags)
    except OSError as exc:
        if writable and exc.errno in _UNWRITABLE:
            raise error(f"{what}: cannot be written ({exc.strerror}); {unwritable_hint}") from None
        raise error(os_error_message(what, exc)) from None
    try:
        # The path may name something else by now: check what was opened.
        _check_regular(os.fstat(fd).st_mode, what, error)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "r+b" if writable else "rb")


def _check_regular(mode: int, what: str, error: type[ChronoError]) -> None:
    for test, kind, advice in _NOT_REGULAR:
        if test(mode):
            raise error(f"{what}: is {kind}, not a regular file; {advice}")
