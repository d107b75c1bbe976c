"""User-facing errors.

Anything the user can fix (bad paths, corrupt files, unknown names, mismatched shapes) raises
:class:`UserError`, a ``ValueError`` (:class:`UserTypeError`, a value of the wrong type, is also
a ``TypeError``), so Python callers catch input errors as they do PyTorch's and NumPy's. The CLI
prints its message on one line and exits with code 2, without a traceback; it turns the
``OSError`` s of the user's files into the same one line (:func:`os_error_message`). Programming
errors are left as ordinary exceptions.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input. The message says what is wrong and how to fix it."""

    exit_code = 2


class UserTypeError(UserError, TypeError):
    """An input of the wrong type (a list where a number belongs, float labels)."""


class DataError(UserError):
    """Missing, truncated or inconsistent dataset files."""


class StorageError(UserError):
    """The file system refused a write: a full disk, a read-only mount, no permission, or a file
    where a folder should be. The message names the path and the reason; ``advice`` says what
    to change (the caller knows how to continue afterwards)."""

    def __init__(self, message: str, advice: str = "fix the folder") -> None:
        super().__init__(message)
        self.advice = advice


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
