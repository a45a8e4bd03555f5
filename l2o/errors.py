"""One exception type for every mistake a user can make.

The CLIs catch it and print its message as one paragraph with exit code 2, so a bad
config value never surfaces as a bare traceback.
"""


class L2OError(Exception):
    """A user-facing error: the message names the bad value and what is allowed."""

    exit_code = 2
