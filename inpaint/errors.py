"""The one exception type for mistakes a user can fix (data, config, checkpoint)."""


class InpaintError(Exception):
    """A user error. The message says what is wrong and what to do; entry points print it
    without a traceback and exit non-zero."""
