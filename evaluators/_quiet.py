"""Silence Lightning's banners and tips: the search runs many trials and only wants results."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# Both spellings exist: the standalone ``pytorch_lightning`` package and the unified ``lightning``.
_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric", "lightning")

# Warnings that are advice for interactive use and are noise for an automated search.
_WARNING_PATTERNS = (
    r".*does not have many workers.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*GPU available but not used.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*LeafSpec.*",
    # frozen submodules (a GAN's FID feature extractor, a distillation teacher) stay in eval mode on purpose
    r".*module\(s\) in eval mode at the start of training.*",
)


@contextlib.contextmanager
def quiet_lightning(verbose: bool = False) -> Iterator[None]:
    """Raise Lightning's loggers to WARNING and drop its advisory warnings for the duration.

    The previous logger levels are restored afterwards, so a user's own logging setup is untouched.
    """
    if verbose:
        yield
        return
    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    try:
        for name in _LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        with warnings.catch_warnings():
            for pattern in _WARNING_PATTERNS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
