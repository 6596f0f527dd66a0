"""An abacus plug-in space: ``tiny-sepnet``, a small depthwise-separable classifier.

It shows the three pieces a plug-in provides:
1. a ``SearchSpace`` factory (registered through the ``abacus.spaces`` entry point);
2. a builder ``(arch, *, input_shape, num_classes) -> nn.Module``, named in the space, and a
   ``workloads_fn`` writing the same cost rows without torch (the fast path of the search);
3. an op abacus has never seen (``SepConv2d``) that describes its own arithmetic to the cost
   model with ``hw_workload`` (a depthwise and a pointwise workload), so it is costed correctly.
"""

from __future__ import annotations

from spaces import Categorical, IntRange, SearchSpace

MOBILENET = "MobileNets (Howard et al., arXiv 1704.04861)"


def make_space() -> SearchSpace:
    dims = []
    for b in range(1, 4):
        dims += [
            Categorical(f"block{b}.kernel", (3, 5), default=3, paper=MOBILENET, help="depthwise kernel size"),
            Categorical(f"block{b}.width", (8, 16, 24, 32), default=16, paper=MOBILENET, help="output channels"),
        ]
    dims.append(IntRange("head.hidden", low=16, high=64, step=16, default=32, paper=MOBILENET, help="hidden units of the classifier"))
    return SearchSpace(
        name="tiny-sepnet",
        description="example plug-in: 3 depthwise-separable blocks with a custom op",
        dimensions=dims,
        builder="abacus_example_space.model:build",
        workloads_fn="abacus_example_space.workloads:sepnet_workloads",
    )
