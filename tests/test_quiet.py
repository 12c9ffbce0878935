"""medsynth.quiet: the library messages the CLI filters, and nothing else."""

import logging
import warnings

from medsynth.quiet import silence_library_noise


def test_library_warnings_are_dropped_and_others_kept():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_library_noise()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning, stacklevel=1)
        warnings.warn("NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register successfully.", stacklevel=1)
        warnings.warn("The dataloader does not have many workers", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["The dataloader does not have many workers"]


def test_library_log_lines_are_dropped_and_others_kept(caplog):
    silence_library_noise()
    silence_library_noise()  # idempotent: one filter per logger
    monai = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    assert len(monai.filters) == 1
    with caplog.at_level(logging.INFO):
        monai.warning("nvImageCodec is not available; skipping pydicom decoder plugin registration.")
        monai.warning("something else went wrong")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("💡 Tip: For seamless cloud logging and ...")
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["something else went wrong", "GPU available: False"]
