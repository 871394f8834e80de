"""The one exception type for mistakes a user can fix (data, config, checkpoint)."""

import errno
import functools
import logging
import os
import sys


class InpaintError(Exception):
    """A user error. The message says what is wrong and what to do; entry points print it
    without a traceback and exit non-zero."""


def user_error(exc: BaseException | None) -> InpaintError | None:
    """The InpaintError behind ``exc``, if any: Hydra's instantiate and Lightning's loops wrap
    the errors raised inside them."""
    while exc is not None:
        if isinstance(exc, InpaintError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


# a run's folder filling up or turning read-only: the machine's state, not a bug, so one line, not a traceback
DISK_ERRORS = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
               errno.EACCES: "permission denied"}


def disk_error(exc: BaseException | None) -> InpaintError | None:
    """A user error for an OSError behind ``exc`` that says the disk is full or not writable (the
    path it names, the cause, and what to do), else None."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
            where = f"writing {os.fspath(exc.filename)}" if exc.filename else "writing the run's files"
            return InpaintError(
                f"{DISK_ERRORS[exc.errno]} ({where}): nothing written before it is lost, and checkpoints are written whole "
                "or not at all, so the last complete one still loads; free space (or restore write access) and resume "
                "with ckpt_path=last."
            )
        exc = exc.__cause__ or exc.__context__
    return None


def exit_on_user_error(entry):
    """Decorate an entry point: a user error, however wrapped, or a full or unwritable disk
    (:func:`disk_error`) is logged as one line (no traceback) and exits with status 2; any other
    exception propagates as usual."""

    @functools.wraps(entry)
    def wrapper(*args, **kwargs):
        try:
            return entry(*args, **kwargs)
        except Exception as exc:
            error = user_error(exc) or disk_error(exc)
            if error is None:
                raise
            logging.getLogger(entry.__module__).error("%s", error)
            sys.exit(2)

    return wrapper
