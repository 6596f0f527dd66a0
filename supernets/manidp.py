"""ManiDP: manifold-regularised dynamic channel pruning (Tang et al., CVPR 2021, arXiv 2103.05861).

Every residual basic block gets two per-instance gate generators, as the official code
(``huawei-noah/Efficient-Computing`` ``Pruning/ManiDP/models/resnet_cifar.py``, "MaskBlock"):

* ``gate1`` gates conv1's output channels, computed from the block input;
* ``gate2`` gates conv2's output channels, computed from the masked conv1 output.

A gate is a squeeze-excitation-like predictor ``pi = clamp(ReLU(fc2(ReLU(fc1(GAP(x))))), max=1000)``
(fc1 without bias, fc2 bias initialised to 1, Kaiming-normal weights) and the mask is
``pi * 1[pi >= theta]`` with a per-layer threshold ``theta`` (a buffer, -10000 = keep everything).
The gates are real-valued scales; only below-threshold entries are zeroed; gradients pass through
``pi`` but not through the indicator. ``mask1`` multiplies conv1's output after BN+ReLU, ``mask2``
conv2's output after BN, before the residual add.

Losses (complexity-aware sparsity, manifold similarity) and the remain-rate schedule are pure
functions here (``complexity_weights``, ``lasso_loss``, ``similarity_loss``, ``remain_rate``) so the
model can add its own regulariser through the ``auxiliary_loss()`` duck-typed hook that
``evaluators.ClassificationModule`` calls; the Lightning side (labels per batch, per-epoch threshold
updates, measurement on validation data) is ``evaluators.recipes.manidp``.

Hardware cost: the gated convs are wrapped in ``DynamicConv``, whose ``hw_workload`` carries the
*measured* expected fraction of work that runs, ``active_ratio`` (docs/architecture.md): for conv1
``E_i[k1_i / C1]``, for conv2 ``E_i[(k1_i / C1)(k2_i / C2)]`` (per instance, a conv with k_in active
inputs and k_out active outputs costs H W K^2 k_in k_out MACs; spec "Dynamic FLOPs accounting",
[inferred]). A channel counts as active when its mask is non-zero. A dynamic layer that was never
measured refuses to be costed (``UnmeasuredDynamicLayerError``) unless a ratio was *assumed*
explicitly (``assume_active_ratios``), in which case the workload says so
(``active_ratio_source="assumed"``): dynamic ops are never costed at full width silently.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from supernets.dynamic import UnmeasuredDynamicLayerError
from supernets.dynamic import conv_like_workload as _conv_like_workload

__all__ = [
    "DynamicChannelGate", "DynamicConv", "DynamicBasicBlock", "ManiDPRegularizer", "UnmeasuredDynamicLayerError",
    "add_dynamic_gates", "manidp_kwargs", "remain_rate", "complexity_weights", "lasso_loss", "similarity_loss",
    "dynamic_gates", "dynamic_convs", "assume_active_ratios", "REMAIN_SCHEDULES",
]

REMAIN_SCHEDULES = ("cosine", "linear", "step")
INITIAL_THRESHOLD = -10000.0


# ---------------------------------------------------------------------------------------------
# the math (reference defaults from the official main.py)
# ---------------------------------------------------------------------------------------------

def remain_rate(epoch: int, epochs: int, target: float, schedule: str = "cosine") -> float:
    """Channel remain rate after training epoch ``epoch`` (0-based) of ``epochs``.

    ``cosine`` (official code): ``(1 - r_T)/2 cos(pi (e+1)/E) + (1 + r_T)/2``, from about 1 down to
    exactly ``r_T`` at the last epoch. ``linear``: ``1 - (1 - r_T)(e+1)/E``. ``step``: 1 for the
    first half of the epochs, ``r_T`` after ([inferred] alternatives, same end point).
    """
    if epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, found {epochs}")
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch: expected an integer in [0, {epochs - 1}], found {epoch}")
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target remain rate: expected a number in (0, 1], found {target}")
    t = (epoch + 1) / epochs
    if schedule == "cosine":
        return (1.0 - target) / 2.0 * math.cos(math.pi * t) + (1.0 + target) / 2.0
    if schedule == "linear":
        return 1.0 - (1.0 - target) * t
    if schedule == "step":
        return 1.0 if t <= 0.5 else float(target)
    raise ValueError(f"remain schedule: expected one of {list(REMAIN_SCHEDULES)}, found {schedule!r}")


def complexity_weights(losses: torch.Tensor, mean_loss: float | torch.Tensor, thre_cls: float = 0.5, gamma: float = 1.0) -> torch.Tensor:
    """Per-sample sparsity weights ``1[l_i < k] ((k - l_i)/k)^gamma`` with ``k = thre_cls * mean_loss``
    (official code; the base is clamped at 1e-10 before the power): hard samples (loss >= k) get
    no sparsity pressure, easy ones the most. Returned detached (a weight, not a loss)."""
    losses = losses.detach()
    kappa = float(thre_cls) * float(mean_loss)
    if not kappa > 0:
        raise ValueError(f"thre_cls * mean training loss must be > 0, found {kappa}")
    base = ((kappa - losses) / kappa).clamp(min=1e-10)
    return (losses < kappa).to(losses.dtype) * base.pow(float(gamma))


def lasso_loss(pis: Iterable[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_layers mean_i(w_i * mean_c pi_ic)``: the L1 norm of each sample's gates over C, weighted."""
    terms = [(weights.to(p.dtype) * p.mean(dim=1)).mean() for p in pis]
    if not terms:
        raise ValueError("lasso_loss needs at least one gate tensor")
    return torch.stack(terms).sum()


def similarity_loss(pi: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
    """Manifold alignment of one layer: ``||F^ F^T - P^ P^T||_F^2 / B^2`` with row-L2-normalised
    gates ``P^`` and features ``F^`` (both B x C). No detach: gradients reach gates and features."""
    if pi.dim() != 2 or pi.shape != feat.shape:
        raise ValueError(f"similarity_loss: expected two (B, C) tensors of one shape, found {tuple(pi.shape)} and {tuple(feat.shape)}")
    p = F.normalize(pi, dim=1)
    f = F.normalize(feat, dim=1)
    b = pi.shape[0]
    return ((f @ f.t() - p @ p.t()) ** 2).sum() / (b * b)


# ---------------------------------------------------------------------------------------------
# modules
# ---------------------------------------------------------------------------------------------

class DynamicChannelGate(nn.Module):
    """Per-instance channel gates for ``out_channels`` channels from a ``(B, in_channels, H, W)`` input.

    ``squeeze_rate`` s: hidden width ``out_channels // s``; the official code halves s when
    ``out_channels < 80`` (``halve_below_80``). Buffers: ``threshold`` (theta), the training-epoch
    sums of ``pi`` (``mask_sum``/``mask_count``, for the threshold update) and, while ``recording``
    is on, the per-channel count of instances whose mask is non-zero (``active_sum``/``active_count``).
    """

    def __init__(self, in_channels: int, out_channels: int, squeeze_rate: int = 2, halve_below_80: bool = True) -> None:
        super().__init__()
        for nm, v in (("in_channels", in_channels), ("out_channels", out_channels), ("squeeze_rate", squeeze_rate)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{nm}: expected a positive int, found {v!r}")
        s = max(1, squeeze_rate // 2) if (halve_below_80 and out_channels < 80) else squeeze_rate
        self.in_channels, self.out_channels, self.squeeze = in_channels, out_channels, s
        hidden = max(1, out_channels // s)
        self.fc1 = nn.Linear(in_channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, out_channels, bias=True)
        nn.init.kaiming_normal_(self.fc1.weight)
        nn.init.kaiming_normal_(self.fc2.weight)
        nn.init.constant_(self.fc2.bias, 1.0)
        self.register_buffer("threshold", torch.tensor(INITIAL_THRESHOLD))
        self.register_buffer("mask_sum", torch.zeros(out_channels))
        self.register_buffer("mask_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("active_sum", torch.zeros(out_channels, dtype=torch.float64))
        self.register_buffer("active_count", torch.zeros((), dtype=torch.float64))
        self.recording = False
        self.last_pi: torch.Tensor | None = None
        self.last_feature: torch.Tensor | None = None

    def no_weight_decay(self) -> set[str]:
        """The reference ManiDP recipe trains the gates without weight decay."""
        return {n for n, _ in self.named_parameters()}

    def gate_values(self, x: torch.Tensor) -> torch.Tensor:
        """``pi`` (B x C_out), continuous and >= 0, before the threshold."""
        g = x.mean(dim=(2, 3)) if x.dim() == 4 else x
        return torch.clamp(F.relu(self.fc2(F.relu(self.fc1(g)))), max=1000.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pi = self.gate_values(x)
        mask = pi * (pi >= self.threshold).to(pi.dtype)
        if self.training:
            self.last_pi = pi
            with torch.no_grad():
                self.mask_sum += pi.detach().sum(0).to(self.mask_sum.dtype)
                self.mask_count += pi.shape[0]
        elif self.recording:
            with torch.no_grad():
                self.active_sum += (mask.detach() != 0).sum(0).to(torch.float64)
                self.active_count += mask.shape[0]
        return mask

    # -- statistics ------------------------------------------------------------------------
    def reset_epoch_stats(self) -> None:
        self.mask_sum.zero_()
        self.mask_count.zero_()

    def reset_activity(self) -> None:
        self.active_sum.zero_()
        self.active_count.zero_()

    @property
    def channel_active_ratio(self) -> torch.Tensor | None:
        """Per channel, the fraction of recorded instances whose mask was non-zero (None: nothing recorded)."""
        n = float(self.active_count)
        return None if n == 0 else (self.active_sum / n).float()

    @property
    def active_ratio(self) -> float | None:
        r = self.channel_active_ratio
        return None if r is None else float(r.mean())

    @torch.no_grad()
    def update_threshold(self, rate: float) -> float:
        """theta := the ceil(rate * C)-th largest mean gate value of the epoch (official rule)."""
        if float(self.mask_count) == 0:
            raise ValueError("update_threshold: no training forward passes were accumulated since the last reset")
        mu = self.mask_sum / float(self.mask_count)
        k = min(self.out_channels, max(1, math.ceil(float(rate) * self.out_channels - 1e-9)))
        theta = torch.topk(mu, k).values[-1]
        self.threshold.copy_(theta.to(self.threshold.dtype))
        return float(theta)

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> list[dict]:
        """GAP, two FCs and the threshold. The pooling accumulates while the block's input streams
        in and the threshold runs in fc2's output stage, so both are marked ``fused`` (arithmetic
        charged, no layer of their own) [inferred: a design choice of this cost model]."""
        b = int(input_shape[0])
        cin = int(input_shape[1])
        spatial = math.prod(int(v) for v in input_shape[2:]) if len(input_shape) > 2 else 1
        hid, cout = self.fc1.out_features, self.out_channels
        f32 = {"w_bits": 32, "a_bits": 32}
        return [
            {"name": "gap", "op": "pool", "ops": b * cin * spatial, "in_elems": b * cin * spatial, "out_elems": b * cin, "fused": True, **f32},
            {"name": "fc1", "op": "linear", "ops": b * cin * hid, "params": cin * hid, "in_elems": b * cin, "out_elems": b * hid,
             "in_channels": cin, "out_channels": hid, "kernel": 1, "out_pixels": b, **f32},
            {"name": "fc2", "op": "linear", "ops": b * hid * cout, "params": hid * cout + cout, "in_elems": b * hid,
             "out_elems": b * cout, "in_channels": hid, "out_channels": cout, "kernel": 1, "out_pixels": b, **f32},
            {"name": "threshold", "op": "eltwise", "ops": 3 * b * cout, "in_elems": b * cout, "out_elems": b * cout, "fused": True, **f32},
        ]

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, squeeze={self.squeeze}, threshold={float(self.threshold):.4g}"


class DynamicConv(nn.Module):
    """A conv whose work depends on the instance: forward is the wrapped ``op``; the cost carries the
    measured ``active_ratio`` (expected fraction of the dense MACs that run)."""

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op
        self.register_buffer("ratio_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("ratio_count", torch.zeros((), dtype=torch.float64))
        self.assumed_ratio: float | None = None
        self.target_ratio: float | None = None  # set by add_dynamic_gates: what "target" assumes

    def assume_cost(self, how: str | float = "target") -> None:
        """Data-dependent-cost protocol (``supernets.dynamic``): assume a ratio unless measured."""
        if self.measured:
            return
        if how == "target":
            if self.target_ratio is None:
                raise ValueError("assume_cost('target'): this dynamic conv has no target ratio (build it with add_dynamic_gates)")
            self.assumed_ratio = float(self.target_ratio)
        else:
            v = float(how)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"assumed active ratio: expected 'target' or a number in [0, 1], found {how!r}")
            self.assumed_ratio = v

    @property
    def in_channels(self) -> int:
        return int(self.op.in_channels)

    @property
    def out_channels(self) -> int:
        return int(self.op.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    @torch.no_grad()
    def record(self, per_instance_ratio: torch.Tensor) -> None:
        self.ratio_sum += per_instance_ratio.detach().to(torch.float64).sum()
        self.ratio_count += per_instance_ratio.numel()

    def reset_activity(self) -> None:
        self.ratio_sum.zero_()
        self.ratio_count.zero_()

    @property
    def measured(self) -> bool:
        return float(self.ratio_count) > 0

    @property
    def active_ratio(self) -> float | None:
        """Measured expected active fraction, or None before any measurement."""
        return float(self.ratio_sum / self.ratio_count) if self.measured else None

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> list[dict]:
        if self.measured:
            ratio, source = self.active_ratio, "measured"
        elif self.assumed_ratio is not None:
            ratio, source = self.assumed_ratio, "assumed"
        else:
            raise UnmeasuredDynamicLayerError(
                "dynamic layer has no measured active ratio: run evaluators.recipes.measure_active_ratios(model, "
                "val_loader) (or supernets.manidp.assume_active_ratios(model, 'target')) before costing it")
        wls = _conv_like_workload(self.op, input_shape, output_shape)
        for d in wls:
            d["active_ratio"] = float(min(1.0, max(0.0, ratio)))
            d["active_ratio_source"] = source
        return wls

    def extra_repr(self) -> str:
        r = self.active_ratio
        return f"active_ratio={'unmeasured' if r is None else f'{r:.4f}'}"


class DynamicBasicBlock(nn.Module):
    """A basic residual block (conv1/bn1/conv2/bn2 + shortcut) with ManiDP's two channel gates.

    Takes the parts of an existing block (its ``shortcut`` or ``downsample``; absent = identity),
    so weights of a dense block carry over; the forward is the standard basic block's
    (ReLU(BN(conv1)) -> BN(conv2) -> + shortcut -> ReLU) with the masks inserted.
    """

    def __init__(self, block: nn.Module, squeeze_rate: int = 2, halve_below_80: bool = True) -> None:
        super().__init__()
        for attr in ("conv1", "bn1", "conv2", "bn2"):
            if not hasattr(block, attr):
                raise TypeError(f"{type(block).__name__} is not a basic block: it has no attribute {attr!r}")
        cin = getattr(block.conv1, "in_channels", None)
        if not isinstance(cin, int):
            raise TypeError(f"conv1 of {type(block).__name__} must expose in_channels, found {type(block.conv1).__name__}")
        c1, c2 = int(block.bn1.num_features), int(block.bn2.num_features)
        self.conv1 = DynamicConv(block.conv1)
        self.bn1 = block.bn1
        self.conv2 = DynamicConv(block.conv2)
        self.bn2 = block.bn2
        sc = getattr(block, "shortcut", None)
        if sc is None:
            sc = getattr(block, "downsample", None)
        self.shortcut = sc if sc is not None else nn.Identity()
        self.relu = nn.ReLU()
        self.gate1 = DynamicChannelGate(cin, c1, squeeze_rate, halve_below_80)
        self.gate2 = DynamicChannelGate(c1, c2, squeeze_rate, halve_below_80)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        m1 = self.gate1(x)
        if self.training:
            self.gate1.last_feature = out.mean(dim=(2, 3))
        out = out * m1[:, :, None, None]
        out2 = self.bn2(self.conv2(out))
        m2 = self.gate2(out)
        if self.training:
            self.gate2.last_feature = out2.mean(dim=(2, 3))
        out2 = out2 * m2[:, :, None, None]
        y = self.relu(out2 + self.shortcut(x))
        if not self.training and self.gate1.recording:
            with torch.no_grad():
                a1 = (m1 != 0).to(torch.float64).mean(dim=1)
                a2 = (m2 != 0).to(torch.float64).mean(dim=1)
                self.conv1.record(a1)
                self.conv2.record(a1 * a2)
        return y


class ManiDPRegularizer(nn.Module):
    """ManiDP's training loss terms for a gated network; lives at ``model.manidp``.

    ``auxiliary_loss()`` returns ``lambda_lasso * L_lasso + lambda_graph * L_graph`` for the last
    training forward pass. It needs the batch labels (``set_targets(y)`` before the forward; the
    ``ManiDPCallback`` of ``evaluators.recipes`` does it) because the sparsity weight of each sample
    depends on its cross-entropy relative to ``mean_train_loss`` (the previous epoch's mean). The
    per-sample losses of the epoch are accumulated so ``end_epoch()`` can update that mean.
    """

    def __init__(self, target_remain_rate: float = 0.65, lambda_lasso: float = 0.1, lambda_graph: float = 0.1,
                 thre_cls: float = 0.5, gamma: float = 1.0, remain_schedule: str = "cosine", threshold_freq: int = 1) -> None:
        super().__init__()
        if not 0.0 < float(target_remain_rate) <= 1.0:
            raise ValueError(f"target_remain_rate: expected a number in (0, 1], found {target_remain_rate!r}")
        if float(lambda_lasso) < 0 or float(lambda_graph) < 0:
            raise ValueError(f"lambda_lasso and lambda_graph: expected numbers >= 0, found {lambda_lasso!r} and {lambda_graph!r}")
        if not float(thre_cls) > 0 or not float(gamma) > 0:
            raise ValueError(f"thre_cls and gamma: expected numbers > 0, found {thre_cls!r} and {gamma!r}")
        if remain_schedule not in REMAIN_SCHEDULES:
            raise ValueError(f"remain_schedule: expected one of {list(REMAIN_SCHEDULES)}, found {remain_schedule!r}")
        if not isinstance(threshold_freq, int) or threshold_freq < 1:
            raise ValueError(f"threshold_freq: expected a positive int (epochs), found {threshold_freq!r}")
        self.target_remain_rate, self.lambda_lasso, self.lambda_graph = float(target_remain_rate), float(lambda_lasso), float(lambda_graph)
        self.thre_cls, self.gamma, self.remain_schedule, self.threshold_freq = float(thre_cls), float(gamma), remain_schedule, threshold_freq
        self.register_buffer("mean_train_loss", torch.tensor(float("nan"), dtype=torch.float64))
        self.register_buffer("epoch_loss_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("epoch_loss_count", torch.zeros((), dtype=torch.float64))
        self.gates: list[DynamicChannelGate] = []   # plain list: the gates are registered in their blocks
        self._targets: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None
        self.last_terms: dict[str, float] = {}

    def set_targets(self, y: torch.Tensor) -> None:
        self._targets = y

    def capture(self, module: nn.Module, args: Any, output: Any) -> None:
        """Forward hook of the root model: keep the logits of a training pass."""
        if module.training and isinstance(output, torch.Tensor):
            self._logits = output

    def loss_terms(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """``lasso``, ``graph`` and the per-sample cross-entropy ``ce`` of one batch (uses the gates'
        last training forward)."""
        pis = [g.last_pi for g in self.gates]
        feats = [g.last_feature for g in self.gates]
        if any(p is None for p in pis) or any(f is None for f in feats):
            raise ValueError("ManiDP loss: the gates hold no training forward pass (call the model in train mode first)")
        ce = F.cross_entropy(logits.detach().float(), targets, reduction="none")
        mean_loss = float(self.mean_train_loss)
        if math.isnan(mean_loss):
            mean_loss = float(ce.mean())  # before the first epoch mean is known (callback normally sets it)
        w = complexity_weights(ce, mean_loss, self.thre_cls, self.gamma)
        lasso = lasso_loss(pis, w)
        graph = torch.stack([similarity_loss(p, f) for p, f in zip(pis, feats)]).sum()
        return {"lasso": lasso, "graph": graph, "ce": ce}

    def auxiliary_loss(self) -> torch.Tensor | None:
        if not self.training or self._logits is None:
            return None
        if self._targets is None:
            raise RuntimeError("ManiDP's complexity-aware sparsity loss needs the batch labels: add "
                               "evaluators.recipes.ManiDPCallback to the trainer, or call model.manidp.set_targets(y) before the forward")
        terms = self.loss_terms(self._logits, self._targets)
        with torch.no_grad():
            self.epoch_loss_sum += terms["ce"].sum().double()
            self.epoch_loss_count += terms["ce"].numel()
        self.last_terms = {"lasso": float(terms["lasso"].detach()), "graph": float(terms["graph"].detach())}
        self._logits, self._targets = None, None
        for g in self.gates:
            g.last_pi, g.last_feature = None, None
        return self.lambda_lasso * terms["lasso"] + self.lambda_graph * terms["graph"]

    # -- epoch bookkeeping (driven by the recipe callback) ----------------------------------
    def start_epoch(self) -> None:
        self.epoch_loss_sum.zero_()
        self.epoch_loss_count.zero_()
        for g in self.gates:
            g.reset_epoch_stats()

    def end_epoch(self) -> None:
        """Update the mean training loss from the epoch's per-sample losses."""
        if float(self.epoch_loss_count) > 0:
            self.mean_train_loss.copy_(self.epoch_loss_sum / self.epoch_loss_count)

    def should_update(self, epoch: int, epochs: int) -> bool:
        """Thresholds update after epoch e >= 1 every ``threshold_freq`` epochs (official), and always
        after the last epoch so the final model runs at the target remain rate (our addition)."""
        return (epoch >= 1 and epoch % self.threshold_freq == 0) or epoch == epochs - 1

    def update_thresholds(self, epoch: int, epochs: int) -> float:
        rate = remain_rate(epoch, epochs, self.target_remain_rate, self.remain_schedule)
        for g in self.gates:
            g.update_threshold(rate)
        return rate

    def extra_repr(self) -> str:
        return (f"target_remain_rate={self.target_remain_rate}, lambda_lasso={self.lambda_lasso}, lambda_graph={self.lambda_graph}, "
                f"thre_cls={self.thre_cls}, gamma={self.gamma}, schedule={self.remain_schedule!r}, threshold_freq={self.threshold_freq}")


# ---------------------------------------------------------------------------------------------
# wiring
# ---------------------------------------------------------------------------------------------

def _is_basic_block(m: nn.Module) -> bool:
    return all(hasattr(m, a) for a in ("conv1", "bn1", "conv2", "bn2")) and not isinstance(m, DynamicBasicBlock)


def add_dynamic_gates(
    model: nn.Module,
    target_remain_rate: float = 0.65,
    *,
    lambda_lasso: float = 0.1,
    lambda_graph: float = 0.1,
    thre_cls: float = 0.5,
    gamma: float = 1.0,
    squeeze_rate: int = 2,
    remain_schedule: str = "cosine",
    threshold_freq: int = 1,
) -> nn.Module:
    """Turn every basic block of ``model`` (a module with conv1, bn1, conv2, bn2) into a
    ``DynamicBasicBlock``, in place, and attach the regulariser as ``model.manidp``.

    Defaults are the official code's (r_T 0.65, lambda_lasso 0.1, lambda_graph 0.1, thre_cls 0.5,
    gamma 1, squeeze 2, cosine schedule, thresholds every epoch); its README's ResNet-56/CIFAR-10
    run uses r_T 0.6, lambda_lasso 5e-3, lambda_graph 1.0. Returns ``model``.
    """
    if hasattr(model, "manidp"):
        raise ValueError("model already has ManiDP gates (attribute 'manidp' exists)")
    reg = ManiDPRegularizer(target_remain_rate, lambda_lasso, lambda_graph, thre_cls, gamma, remain_schedule, threshold_freq)
    targets = [(n, m) for n, m in model.named_modules() if n and _is_basic_block(m)]
    if not targets:
        raise ValueError(f"add_dynamic_gates: {type(model).__name__} has no basic blocks (modules with conv1, bn1, conv2, bn2)")
    for name, block in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        new = DynamicBasicBlock(block, squeeze_rate)
        new.conv1.target_ratio, new.conv2.target_ratio = reg.target_remain_rate, reg.target_remain_rate ** 2
        new.train(block.training)
        setattr(parent, child, new)
    model.add_module("manidp", reg)
    reg.gates = dynamic_gates(model)
    model.register_forward_hook(reg.capture)
    return model


def manidp_kwargs(arch: Mapping[str, Any], prefix: str = "manidp.") -> dict[str, Any]:
    """``add_dynamic_gates`` keyword arguments from an architecture's ``manidp.*`` dimensions."""
    keys = {"target_remain_rate": float, "lambda_lasso": float, "lambda_graph": float, "thre_cls": float, "gamma": float,
            "squeeze_rate": int, "remain_schedule": str, "threshold_freq": int}
    return {k: cast(arch[prefix + k]) for k, cast in keys.items() if prefix + k in arch}


def dynamic_gates(model: nn.Module) -> list[DynamicChannelGate]:
    return [m for m in model.modules() if isinstance(m, DynamicChannelGate)]


def dynamic_convs(model: nn.Module) -> list[tuple[str, DynamicConv]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DynamicConv)]


def assume_active_ratios(model: nn.Module, how: str | float = "target") -> dict[str, float]:
    """Give unmeasured dynamic convs an *assumed* active ratio so a model can be costed before
    training (e.g. a search's pre-screen). ``"target"``: r_T for conv1 and r_T^2 for conv2 (the
    target channel remain rate, independent gates; [inferred]); a number: that ratio everywhere.
    The workloads then carry ``active_ratio_source="assumed"``; measured layers keep their value."""
    if how == "target":
        reg = getattr(model, "manidp", None)
        if not isinstance(reg, ManiDPRegularizer):
            raise ValueError("assume_active_ratios('target') needs a model built by add_dynamic_gates")
        r = reg.target_remain_rate
        per = {"conv1": r, "conv2": r * r}
    else:
        v = float(how)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"assumed active ratio: expected 'target' or a number in [0, 1], found {how!r}")
        per = {"conv1": v, "conv2": v}
    out = {}
    for name, conv in dynamic_convs(model):
        conv.assumed_ratio = per.get(name.rpartition(".")[2], per["conv1"])
        out[name] = conv.assumed_ratio
    return out
