"""The one exception type for mistakes a user can fix (data, config, checkpoint)."""


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
