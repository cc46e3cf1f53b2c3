"""The one error type of irisctl, and the contract's exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_UP = 3


class IrisctlError(Exception):
    """An expected failure: one line of what happened, one line of what to do next."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class BadInput(IrisctlError):
    """The user's input is invalid; nothing was changed."""

    exit_code = EXIT_USAGE


class NotUp(IrisctlError):
    """The stack is not running."""

    exit_code = EXIT_NOT_UP

    def __init__(self, message: str = "the stack is not up", hint: str | None = None) -> None:
        super().__init__(message, hint or "start it with `irisctl up`")
