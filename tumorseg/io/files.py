"""Opening input files without trusting what they are.

An archive may hold a FIFO (opening it for reading blocks until a writer comes), a
link to a device (``/dev/zero`` never ends) or a folder where a file was expected.
Every reader of an input opens it here: the check and the read use one descriptor,
so nothing can be swapped in between.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotARegularFileError(OSError):
    """The path names something other than a regular file (its ``kind`` says what)."""

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        super().__init__(f"{os.fspath(path)!s} is {kind}, not a regular file")
        self.kind = kind


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for binary reading, if it is a regular file (links followed).

    The open does not block (a FIFO opened non-blocking returns at once) and the kind
    is checked on the opened descriptor. Raises ``IsADirectoryError`` for a folder,
    :class:`NotARegularFileError` for any other kind, or the ``OSError`` of the open
    (missing, no permission, a link loop).
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a file")
            raise NotARegularFileError(path, kind)
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise
