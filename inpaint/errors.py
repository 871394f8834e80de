"""The one exception type for mistakes a user can fix (data, config, checkpoint)."""

import functools
import logging
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


def exit_on_user_error(entry):
    """Decorate an entry point: a user error, however wrapped, is logged as one line (no traceback)
    and exits with status 2; any other exception propagates as usual."""

    @functools.wraps(entry)
    def wrapper(*args, **kwargs):
        try:
            return entry(*args, **kwargs)
        except Exception as exc:
            error = user_error(exc)
            if error is None:
                raise
            logging.getLogger(entry.__module__).error("%s", error)
            sys.exit(2)

    return wrapper
