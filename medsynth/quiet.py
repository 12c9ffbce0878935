"""Library messages that say nothing about the user's run, filtered in one place.

The CLI (:func:`medsynth.cli.main`) installs these filters unless ``--verbose`` or ``MEDSYNTH_DEBUG=1`` asks for
everything. Each entry names why it is noise; a message about the user's data, settings or hardware is never here.
"""

from __future__ import annotations

import logging
import re
import warnings

#: warning messages (regular expressions, matched from the start) raised inside the libraries themselves
LIBRARY_WARNINGS: tuple[str, ...] = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own use of a torch API deprecated in 2.10
    r"NvImgCodecPydicomReader: nvImageCodec decoder plugin",  # MONAI: no GPU JPEG decoder; pydicom decodes DICOM
)

#: log lines (logger name, regular expression searched in the message) that carry no information for a run
LIBRARY_LOG_LINES: tuple[tuple[str, str], ...] = (
    ("monai.data.nvimgcodec_pydicom_plugin", r"nvImageCodec is not available"),  # the same MONAI fallback
    ("lightning.pytorch.utilities.rank_zero", r"Tip: For seamless cloud logging"),  # an advertisement
    ("lightning.fabric.utilities.rank_zero", r"Tip: For seamless cloud logging"),
)


class _DropMatching(logging.Filter):
    """Drops the records of one logger whose message matches ``pattern``."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def silence_library_noise() -> None:
    """Install the filters of :data:`LIBRARY_WARNINGS` and :data:`LIBRARY_LOG_LINES` (idempotent)."""
    for pattern in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name, pattern in LIBRARY_LOG_LINES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_DropMatching(pattern))
