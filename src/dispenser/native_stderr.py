"""Keep C libraries' own messages off the terminal while a command decodes a photo.

libjpeg ("Corrupt JPEG data: premature end of data segment") and libpng ("libpng error:
bad adaptive filter value") write straight to file descriptor 2, outside OpenCV's logging
(which `dispenser/__init__.py` turns off), so their lines came before the one line that
says what was wrong, or before a result. `dispenser compare` and `dispenser calibrate`
decode with file descriptor 2 pointed at /dev/null for the duration of the call. Only for
those single-threaded commands: whatever is written to descriptor 2 meanwhile is dropped,
which in the service could swallow another thread's log line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def silenced() -> Iterator[None]:
    """File descriptor 2 goes to /dev/null inside the block, and back afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
