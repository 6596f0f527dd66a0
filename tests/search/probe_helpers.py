"""Stub evaluators for the split / seeding / budget tests (importable by Ray workers: tests/search is on their path)."""

from __future__ import annotations

import os
import time

import torch


def weights_checksum(model: torch.nn.Module) -> float:
    """A float that changes with any initial weight (sum of |w| * position weights, in float64)."""
    total = 0.0
    for i, p in enumerate(model.parameters()):
        flat = p.detach().double().flatten()
        total += float((flat.abs() * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum()) * (i + 1)
    return total


def init_probe(model, *, datamodule, epochs, seed, reporter):
    """Report the initial weights' checksum (no training) and the worker's process id."""
    return {"val_accuracy": 0.5, "init_checksum": weights_checksum(model), "pid": float(os.getpid()), "epochs": epochs}


def sleepy(model, *, datamodule, epochs, seed, reporter):
    """A trial that takes a fixed short time (for the time budget)."""
    time.sleep(float(os.environ.get("ABACUS_TEST_SLEEP_S", "0.3")))
    return {"val_accuracy": 0.5 + (seed % 7) / 100, "epochs": epochs}
