"""User-facing errors.

A :class:`MedsynthError` carries one line that names the file or config key at fault and the
reason. The CLI prints it as ``medsynth <stage>: error: <line>`` and exits non-zero without a
traceback; anything else is a bug and keeps its traceback.
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
