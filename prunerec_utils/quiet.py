"""Progress bars and library chatter: on for people, off for logs and regression-tested notebooks."""

from __future__ import annotations

import os
import warnings


def set_progress(enabled: bool) -> None:
    """Turn tqdm bars of ``datasets``/``transformers`` (and their info logs) on or off."""
    # lazy: only a caller that trains or tokenises pays for them
    import datasets
    import transformers

    if enabled:
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
        return
    os.environ["TQDM_DISABLE"] = "1"
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
