"""Starting or joining Ray, in one place for every part of a search (trial executor, one-shot
scorers and supernet training, coarse-to-fine stages).

Without an address Ray would join the last cluster started on this machine
(``/tmp/ray/ray_current_cluster``), someone else's, and then refuse ``num_cpus``: a search without
``--address`` (or ``RAY_ADDRESS``, which the CLI reads for it) always starts a Ray of its own.
Ray gives a new raylet a fixed 30 s to register, which a starved machine can miss: the local start
is retried.
"""

from __future__ import annotations

import logging
import os
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network at run time (Ray's usage report)
START_TRIES = 3  # local ray.init attempts


class _NotMainThreadNote(logging.Filter):
    """Drops Ray's note that ray.init on a set-up thread sets no SIGTERM handler: the engine's
    own handlers (``search.signals``) stay in place, which is what we want."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


class _TokenAuthOnNote(logging.Filter):
    """Drops Ray's note, printed at every new local Ray, that token authentication is on (the
    secure default) and how to turn it off: a bad config must stay one line on stderr. Ray's
    warning that authentication is *off* still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled for this Ray cluster" not in record.getMessage()


logging.getLogger("ray._private.worker").addFilter(_NotMainThreadNote())
logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_TokenAuthOnNote())


def start_ray(address: str | None, *, num_cpus: int, num_gpus: int | None = 0) -> bool:
    """Join the cluster at ``address``, or start a local Ray of our own with ``num_cpus``;
    nothing when Ray is already up in this process. True when this call started or joined it
    (the caller then shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address:
        ray.init(address=address, **kw)
        return True
    for attempt in range(START_TRIES):
        try:
            ray.init(address="local", num_cpus=max(1, int(num_cpus)), num_gpus=num_gpus, **kw)
            return True
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == START_TRIES - 1:
                raise
            ray.shutdown()
    return True
