"""The trial seed is set before the model is built: same arch + same seed = same initial weights, anywhere."""

from __future__ import annotations

import torch

from search.worker import TrialSpec, run_trial
from spaces import get_space

SMALL = {"stage1.width": 0.25, "stage2.width": 0.25, "stage3.width": 0.25, "stage1.blocks": 1, "stage2.blocks": 1,
         "stage3.blocks": 1, "stage1.op": "adder", "stage2.op": "conv", "stage3.op": "conv"}


def _spec(seed: int) -> TrialSpec:
    space = get_space("addernet-resnet")
    return TrialSpec(number=0, space=space, arch=space.complete(dict(SMALL)), data="digits", data_kwargs={}, epochs=1, lr=0.05,
                     optimizer="sgd", weight_decay=5e-4, batch_size=64, seed=seed, evaluate_fn="probe_helpers:init_probe")


def _after_noise(spec: TrialSpec, noise: int):
    """Advance the process's torch RNG as an earlier trial in a reused worker would, then run the trial."""
    torch.rand(noise)
    result = run_trial(spec)
    assert result.state == "complete", result.reason
    return result.metrics["init_checksum"], result.metrics["pid"]


def test_same_seed_same_initial_weights_in_one_process_after_other_work():
    a, _ = _after_noise(_spec(11), 3)
    b, _ = _after_noise(_spec(11), 1000)
    c, _ = _after_noise(_spec(12), 3)
    assert a == b, "the trial seed must fix the initial weights whatever ran before in the process"
    assert a != c, "another seed gives other weights"


def test_same_arch_in_two_ray_workers_gets_identical_initial_weights(ray_session):
    ray = ray_session
    remote = ray.remote(num_cpus=1)(_after_noise)
    # two tasks at once on a 2-CPU Ray: two worker processes, each with its own RNG history
    (a, pid_a), (b, pid_b) = ray.get([remote.remote(_spec(5), 7), remote.remote(_spec(5), 501)])
    (c, _), = ray.get([remote.remote(_spec(6), 7)])
    assert a == b, f"same arch, same seed, workers {pid_a:.0f} and {pid_b:.0f}: different initial weights"
    assert a != c
