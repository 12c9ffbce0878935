"""User-facing errors.

A :class:`MedsynthError` carries one line that names the file or config key at fault and the
reason. The CLI prints it as ``medsynth <stage>: error: <line>`` and exits non-zero without a
traceback. An exception raised by an I/O library (a file that cannot be opened, a database that
refuses, a header nibabel/SimpleITK/pydicom cannot parse) is about the user's input too:
:func:`library_error_line` turns it into one line naming the file or database. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class MedsynthError(Exception):
    """An error caused by the user's input (file, config key, argument)."""

    exit_code = 2


class InputFileError(MedsynthError):
    """A file that cannot be used: missing, unreadable, corrupt, wrong shape or content."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConfigError(MedsynthError):
    """A config key with a missing or invalid value."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


#: exit code of a library error reported as one line (MedsynthError uses its own ``exit_code``)
LIBRARY_ERROR_EXIT_CODE = 1
#: top-level packages whose exceptions describe the input, not a medsynth bug
LIBRARY_PACKAGES = ("sqlalchemy", "nibabel", "SimpleITK", "pydicom", "PIL", "alembic", "psycopg2")


def _first_line(text: str) -> str:
    line = " ".join(str(text).split("(Background on this error")[0].split())
    return line[:300] or "(no message)"


def library_error_line(err: BaseException) -> str | None:
    """One line (file or database + reason) for an exception raised by an I/O library, else None.

    ``OSError`` with a file name -> ``<file>: <reason>``; SQLAlchemy -> ``database: <reason>`` (the
    driver's message, without SQLAlchemy's link); nibabel / SimpleITK / pydicom / PIL / Alembic ->
    ``<ExceptionType>: <message>``. None means the exception is not from those (a bug).
    """
    if isinstance(err, OSError) and err.filename:
        reason = err.strerror or _first_line(str(err))
        return f"{err.filename}: {reason}"
    package = type(err).__module__.split(".", 1)[0]
    if isinstance(err, RuntimeError) and str(err).startswith("Exception thrown in SimpleITK"):
        package = "SimpleITK"  # SimpleITK raises builtins.RuntimeError; the message names the file
    if package not in LIBRARY_PACKAGES:
        return None
    if package == "sqlalchemy":
        original = getattr(err, "orig", None)
        return f"database: {_first_line(str(original) if original is not None else str(err))}"
    return f"{type(err).__name__}: {_first_line(str(err))}"


def user_error_in(err: BaseException) -> MedsynthError | None:
    """The :class:`MedsynthError` that caused ``err`` (``err`` itself, or one in its ``__cause__`` /
    ``__context__`` chain, e.g. wrapped by MONAI's ``applying transform``), or None."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, MedsynthError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
