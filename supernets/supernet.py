"""Weight-sharing supernets: the base class, the registry and ``build_supernet``.

A supernet is one ``nn.Module`` that serves every architecture of a space. It names what can be
switched per step as :class:`~supernets.sampling.ChoiceLayer` s (the space's dimension labels),
keeps every other dimension of the space at one value (``fixed``: training recipes, which the
supernet is trained with), and offers

* ``set_active(arch)``: route the forward pass through ``arch``'s path;
* ``extract(arch)``: a stand-alone copy of that path, built by ``supernets.build`` (the same
  module kind a normal trial trains, so cost, export and ``load_exported`` work unchanged) with
  the supernet's weights copied in: every tensor is the leading slice of the shared one
  (``W[:k_out, :k_in]``), so in eval mode its output equals the supernet's active path.

:func:`recalibrate` resets and re-estimates batch-norm statistics (and quantiser activation
ranges) of the active path on a few training batches, which a sub-network needs before it is
evaluated: the shared statistics are a mixture over every path trained.

The slicing layers (:class:`SlicedConv2d`, :class:`SlicedBatchNorm2d`, :class:`SlicedLinear`)
are the standard torch layers with a run-time width, so their state_dict keys match the layers
``supernets.build`` makes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spaces import SearchSpace, get_space
from spaces.registry import Registry
from supernets.sampling import ChoiceLayer

__all__ = [
    "Supernet", "SUPERNETS", "register_supernet", "build_supernet", "list_supernets", "has_supernet",
    "recalibrate", "set_path_mode", "SlicedConv2d", "SlicedBatchNorm2d", "SlicedLinear",
]

SUPERNETS: Registry = Registry("supernet", entry_point_group="abacus.supernets", list_hint="see supernets.list_supernets()")
_EXTRA = "_extra_state"


def register_supernet(space_name: str) -> Callable:
    """Decorator on a factory ``(space, input_shape=..., num_classes=..., fixed=...) -> Supernet``."""
    return SUPERNETS.decorator(space_name)


def list_supernets(pattern: str = "*") -> list[str]:
    return SUPERNETS.names(pattern)


def has_supernet(space: str | SearchSpace) -> bool:
    return (space.name if isinstance(space, SearchSpace) else space) in SUPERNETS


def build_supernet(space: str | SearchSpace, *, input_shape: Sequence[int], num_classes: int,
                   fixed: Mapping[str, Any] | None = None, **options: Any) -> "Supernet":
    """The supernet of ``space`` (a registered name or a ``SearchSpace``, possibly restricted),
    sized to ``input_shape`` (C, H, W) and ``num_classes``. ``fixed`` pins dimensions: those are
    not switched, and non-architecture dimensions (training recipes) take these values."""
    space = space if isinstance(space, SearchSpace) else get_space(space)
    factory = SUPERNETS.get(space.name)
    return factory(space, input_shape=tuple(int(v) for v in input_shape), num_classes=int(num_classes),
                   fixed=dict(fixed or {}), **options)


class Supernet(nn.Module):
    """Base class. Subclasses implement ``choice_layers``, ``_activate`` (route the forward pass)
    and ``_module_map`` (which supernet module each module of the built network copies from)."""

    def __init__(self, space: SearchSpace, task: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
        super().__init__()
        self.space = space
        self.task = dict(task)
        self.fixed = dict(fixed)
        self.active_arch: dict[str, Any] | None = None

    # -- what can be switched ---------------------------------------------------------------
    def choice_layers(self) -> list[ChoiceLayer]:
        raise NotImplementedError

    def complete(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """A full, validated architecture of the space from a path (choice-layer values) or a
        full architecture; the supernet's fixed values fill the rest and may not be contradicted."""
        for label, value in self.fixed.items():
            if label in arch and arch[label] != value:
                raise ValueError(f"{label}: this supernet was built with {value!r}, the architecture asks for {arch[label]!r}")
        return self.space.validate(self.space.complete({**arch, **self.fixed}))

    # -- routing ----------------------------------------------------------------------------
    def set_active(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """Route the forward pass through ``arch``; returns the full validated architecture."""
        full = self.complete(arch)
        self._activate(full)
        self.active_arch = full
        return full

    def _activate(self, arch: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _module_map(self, arch: Mapping[str, Any]) -> dict[str, str]:
        """Built-network module name -> supernet module name (prefixes; children follow)."""
        raise NotImplementedError

    def path_modules(self) -> list[nn.Module]:
        """The top modules the active path runs through (their children follow). Scoring uses it
        to recalibrate and switch modes on the path alone instead of walking every op family's
        blocks (most of a supernet's modules). The supernet itself is always in scope. Default:
        every child (the whole supernet)."""
        return list(self.children())

    # -- size of a path ---------------------------------------------------------------------
    def path_size(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """``params`` and ``macs`` of ``arch``'s stand-alone network, as the evaluator reports them
        for a trained candidate (``evaluators.count_params`` / ``count_macs`` of the built
        network). Default: build and count it; supernets override with something cheaper that
        gives the same numbers (scoring a candidate must not cost a build)."""
        from evaluators import count_macs, count_params
        from supernets.build import build

        model = build(self.space, self.complete(arch), **self.task)
        return {"params": float(count_params(model)), "macs": float(count_macs(model, tuple(self.task["input_shape"])))}

    # -- extraction -------------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any] | None = None) -> nn.Module:
        """A stand-alone network for ``arch`` (default: the active one) from ``supernets.build``
        with the supernet's weights, statistics and schedule states copied in."""
        if arch is None:
            if self.active_arch is None:
                raise ValueError("extract: no architecture given and none is active (call set_active first)")
            arch = self.active_arch
        full = self.complete(arch)
        from supernets.build import build

        target = build(self.space, full, **self.task)
        mapping = self._module_map(full)
        source = self.state_dict(keep_vars=False)
        state: dict[str, Any] = {}
        for key, tensor in target.state_dict().items():
            src_key = _map_key(key, mapping)
            if src_key not in source:
                raise KeyError(f"extract: supernet has no {src_key!r} for the built network's {key!r}")
            value = source[src_key]
            if key.endswith(_EXTRA) or not isinstance(value, torch.Tensor):
                state[key] = value
            else:
                state[key] = prefix_slice(value, tuple(tensor.shape), key).clone()
        target.load_state_dict(state, strict=True)
        modules = dict(self.named_modules())
        for t_name, t_mod in target.named_modules():
            s_mod = modules.get(_map_key(t_name, mapping)) if t_name else None
            if s_mod is not None and hasattr(t_mod, "p") and hasattr(s_mod, "p"):
                t_mod.p = s_mod.p  # lp exponent of adder layers (not part of their state_dict)
        target.train(self.training)
        return target


def _map_key(key: str, mapping: Mapping[str, str]) -> str:
    best = ""
    for prefix in mapping:
        if (key == prefix or key.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    if not best:
        return key
    return mapping[best] + key[len(best):]


def prefix_slice(t: torch.Tensor, shape: tuple[int, ...], name: str = "tensor") -> torch.Tensor:
    """The leading ``shape`` block of ``t`` (``W[:k_out, :k_in, ...]``): how widths share weights."""
    if t.dim() != len(shape) or any(n > m for n, m in zip(shape, t.shape)):
        raise ValueError(f"{name}: cannot take a {tuple(shape)} slice of a {tuple(t.shape)} tensor")
    return t[tuple(slice(0, n) for n in shape)]


# -- batch-norm recalibration ---------------------------------------------------------------

def _path_scope(model: nn.Module) -> list[nn.Module]:
    """Every module of the active path of a supernet (``path_modules``), else of ``model``."""
    if not isinstance(model, Supernet):
        return list(model.modules())
    cached = model.__dict__.get("_scope_cache")
    if cached is not None and cached[0] is model.active_arch:  # set_active makes a new dict: same dict, same path
        return cached[1]
    seen: dict[int, nn.Module] = {id(model): model}
    for top in model.path_modules():
        for m in top.modules():
            seen.setdefault(id(m), m)
    scope = list(seen.values())
    model.__dict__["_scope_cache"] = (model.active_arch, scope)
    return scope


@torch.no_grad()
def recalibrate(model: nn.Module, batches: Iterable[Any]) -> int:
    """Re-estimate batch-norm statistics (cumulative mean over ``batches``, as OFA does) and
    quantiser activation ranges (``act_absmax`` buffers, restarted from the first batch) by
    forward passes without gradients in which only those statistics modules are in training
    mode (every other module runs as in evaluation, e.g. no FDA noise, so the statistics are
    those of the evaluated network); the model's mode is restored. Returns
    the number of batches used. A batch is a tensor or a tuple whose first item is the input.
    On a :class:`Supernet` only the active path's modules are touched (``path_modules``)."""
    scope = _path_scope(model)
    bns = [m for m in scope if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    quantisers = []  # modules holding an activation range and the layer that owns them (its mode drives the update)
    for m in scope:
        for name, buf in m.named_buffers(recurse=False):
            if name.endswith("act_absmax"):
                buf.zero_()
                quantisers.append(m)
        if any(name.endswith("act_absmax") for c in m.children() for name, _ in c.named_buffers(recurse=False)):
            quantisers.append(m)
    modes = {m: m.training for m in scope}
    stats = {id(m) for m in (*bns, *quantisers)}
    for m in scope:  # only what keeps statistics trains: every other op runs as it will be evaluated (no FDA noise)
        m.training = id(m) in stats
    n = 0
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x)
            n += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        for m, mode in modes.items():
            m.training = mode
    return n


def set_path_mode(model: nn.Module, training: bool) -> None:
    """``model.train(training)`` restricted to the active path of a supernet (cheap per candidate)."""
    for m in _path_scope(model):
        m.training = training


# -- slicing layers -------------------------------------------------------------------------

class SlicedConv2d(nn.Conv2d):
    """``nn.Conv2d`` that uses its first ``active_out_channels`` filters over the first
    ``x.shape[1]`` input channels (state_dict keys as ``nn.Conv2d``). A depthwise layer
    (``groups == in_channels == out_channels``) follows its input: k channels use the first k filters."""

    active_out_channels: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = x.shape[1]
        if self.groups > 1 and self.groups == self.in_channels == self.out_channels:
            if cin > self.in_channels:
                raise ValueError(f"SlicedConv2d (depthwise): {cin} input channels exceed {self.in_channels}")
            b = None if self.bias is None else self.bias[:cin]
            return F.conv2d(x, self.weight[:cin], b, self.stride, self.padding, self.dilation, cin)
        oc = self.active_out_channels or self.out_channels
        if oc > self.out_channels or cin > self.in_channels or self.groups != 1:
            raise ValueError(f"SlicedConv2d: {cin} in / {oc} out channels exceed {self.in_channels} / {self.out_channels} (or groups != 1)")
        w = self.weight if (oc, cin) == (self.out_channels, self.in_channels) else self.weight[:oc, :cin]
        b = None if self.bias is None else self.bias[:oc]
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, 1)


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` over the first ``x.shape[1]`` channels (statistics updated in place)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[1]
        if k == self.num_features:
            return super().forward(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or self.running_mean is None
        rm = self.running_mean[:k] if self.running_mean is not None else None
        rv = self.running_var[:k] if self.running_var is not None else None
        w = self.weight[:k] if self.weight is not None else None
        b = self.bias[:k] if self.bias is not None else None
        return F.batch_norm(x, rm if (not self.training or self.track_running_stats) else None,
                            rv if (not self.training or self.track_running_stats) else None,
                            w, b, use_batch, factor, self.eps)


class SlicedLinear(nn.Linear):
    """``nn.Linear`` over the first ``x.shape[-1]`` input features (all outputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[-1]
        w = self.weight if k == self.in_features else self.weight[:, :k]
        return F.linear(x, w, self.bias)
