"""Shared fixtures: one Ray for the whole session (ray.init costs ~6 s) and quiet libraries."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def ray_session():
    """A local 2-CPU Ray shared by every test that needs one; shut down at the end."""
    ray = pytest.importorskip("ray")
    # Ray workers inherit the driver's environment: let them import the test helpers in tests/search
    helpers = str(ROOT / "tests" / "search")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (helpers, str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    if not ray.is_initialized():
        # address="local": a Ray of its own even while another cluster runs on the machine (Ray would join that one)
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
