"""What ``abacus cost`` and the search cost: the input (``input_from_data``) and the one cost path
(``cost_reports``) that the search, ``abacus cost`` and exported models share.

The cost of a convolutional network scales with its input's size, so a silent guess misleads:
the shape comes from ``--data NAME`` (the registered data set's module knows its input shape
and class count without loading anything), else the default data set's (digits, 1x8x8) with a
note saying it was assumed.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

DEFAULT_DATA = "digits"


def input_from_data(data: str | None, num_classes: int | None) -> tuple[tuple[int, ...], int, str | None]:
    """``(input_shape, num_classes, note)``; the note is ``None`` when nothing was assumed.
    A data set that cannot be built from its name alone raises ``ValueError`` (one line)."""
    import evaluators

    name = data or DEFAULT_DATA
    try:
        dm = evaluators.get_datamodule(name)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--data: expected a data set buildable from its name ({', '.join(evaluators.list_datasets())}), "
                         f"found {name!r} ({exc}); pass --input-shape C,H,W instead") from None
    shape = tuple(int(x) for x in dm.input_shape)
    classes = int(num_classes) if num_classes is not None else int(dm.num_classes)
    note = None
    if data is None:
        note = (f"note: costed for input shape {','.join(map(str, shape))} and {classes} classes (assumed: the default data set "
                f"{DEFAULT_DATA}); pass --input-shape C,H,W or --data NAME")
    return shape, classes, note


def cost_reports(space: Any, archs: Sequence[Mapping[str, Any]], input_shape: Sequence[int],
                 hardware: Mapping[str, Any] | None = None, *, task: Mapping[str, Any] | None = None,
                 model_for: Callable[[Mapping[str, Any]], Any] | None = None, rows: bool = False) -> list[Any]:
    """The one path from architectures to ``hw_cost.CostReport``s: the search's ``CostModel``,
    ``abacus cost`` and exported models (``search.export``) all cost through it, so they agree.

    ``input_shape`` is the builder's (C, H, W); costing is for batch 1. ``hardware``: ``hw_cost``
    keywords (``device``, ``style``, ``pe_array``, ``default_bits``, ``mult_impl``). ``task``: what
    the builder and ``workloads_fn`` take besides the shape (``num_classes``, an SR task's ``scale``).

    Architectures the space describes (``workloads_fn``) go through the batch path: the space's
    cached row blocks, ``hw_cost.blocks_to_array`` and ``hw_cost.estimate_reports`` (no torch, no
    per-row Python; ``tests/hw_cost/test_space_contract.py`` keeps it equal to tracing). With
    ``rows=True`` (``abacus cost``) each is costed by ``hw_cost.estimate`` on the same rows instead,
    which adds the per-layer rows and gives the same totals. The others (no ``workloads_fn``, or
    data-dependent ones such as ManiDP / FADN, whose rows come from measurements) are traced:
    ``model_for(arch)`` gives the network (default: built, dynamic layers at their target cost)."""
    import hw_cost

    hw = {k: v for k, v in dict(hardware or {}).items() if v is not None}
    task = {k: v for k, v in dict(task or {}).items() if k != "input_shape"}
    shape = (1, *(int(v) for v in input_shape))
    archs = list(archs)
    blocks = space.workload_blocks(archs, shape, **task)
    out: list[Any] = [None] * len(archs)
    fast = [i for i in range(len(archs)) if blocks is not None and blocks[i] is not None]
    if fast and rows:
        for i in fast:
            out[i] = hw_cost.estimate([r for b in blocks[i] for r in b], None, **hw)
    elif fast:
        batch = hw_cost.blocks_to_array([blocks[i] for i in fast], default_bits=hw.get("default_bits"))
        uncosted: list[list[str]] = [[] for _ in fast]
        if batch is None:  # rows the index cannot take (not read-only, unknown ops): checked one by one
            batch, _, uncosted = hw_cost.workloads_to_array([[r for b in blocks[i] for r in b] for i in fast],
                                                            default_bits=hw.get("default_bits"))
        for i, unc, rep in zip(fast, uncosted, hw_cost.estimate_reports(batch, n_arch=len(fast), **hw)):
            rep.uncosted = list(unc)
            out[i] = rep
    for i, rep in enumerate(out):
        if rep is None:
            model = model_for(archs[i]) if model_for is not None else _built(space, archs[i], input_shape, task)
            out[i] = hw_cost.estimate(model, shape, **hw)
    return out


def _built(space: Any, arch: Mapping[str, Any], input_shape: Sequence[int], task: Mapping[str, Any]) -> Any:
    """The network of ``arch``; before training, dynamic layers (ManiDP gates, FADN branches) assume
    their target cost (the worker re-costs them on what it measured on validation data)."""
    import supernets
    from supernets.dynamic import assume_costs

    model = supernets.build(space, arch, input_shape=tuple(input_shape), **task)
    assume_costs(model, "target")
    return model
