"""Winograd AdderNet layer, F(2x2, 3x3), stride 1 (Li et al., ICML 2021, arXiv 2105.05530).

Math (spec ``techniques/addernet-family.md`` section 2): for a 4x4 input tile ``d`` and a 3x3
filter ``g``::

    U = G g G^T          (filter transform, offline at inference)
    V = B^T d B          (input transform, additions only)
    M = -sum_c |U_c - V_c|^p      (adder kernel element-wise in the Winograd domain, summed over c_in)
    Y = A^T M A          (output transform, additions only) -> a 2x2 output tile

This is *not* the direct adder convolution (the l1 norm has no distributive law), so models must be
trained in this form; a guard test keeps anyone from "optimising" one into the other.

Transform matrices (``winograd_matrices``):

* ``"standard"``: Lavin & Gray's F(2,3) set. Its ``A^T`` row sums are (3, -1), so with ``M <= 0`` the
  four positions of a tile get coefficient sums (9, -3, -3, 1): a strong within-tile imbalance that
  per-channel BN cannot remove.
* ``"balanced"``: **derived in the spec (section 2.3), not the paper's published set** (the paper's
  matrices were not available). ``A^T = [[-1,1,1,0],[0,1,-1,1]]`` (equal row sums, so every output
  position has coefficient sum 1) with rows 0 and 3 of ``B^T`` negated to stay exact for
  multiplication. Negating rows of ``G`` instead gives the same adder output, since
  ``|s U - V| = |U - s V|`` for ``s = +-1``.
* user-supplied ``(A^T, G, B^T)``: checked to be exact in multiplication form at construction.

Training: the l2-to-l1 schedule ``p`` goes linearly from ``p_start`` (2) to ``p_end`` (1) over the
first ``p_anneal_end`` fraction of training, updated per epoch through ``set_progress`` (issue #58 of
huawei-noah/AdderNet: "p is linearly reduced from 2 to 1", per epoch; over which fraction of
training is not known, hence configurable). Gradients follow AdderNet's rules in the Winograd
domain: full-precision ``V - U`` for the transformed weight, HardTanh ``clamp(U - V, -1, 1)`` for
the transformed input; that Winograd AdderNet uses these rules is from memory (unverified), so
``grad_rule="exact"`` (the true derivative of ``-|U-V|^p``) is offered as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from supernets.ops._quant_utils import active_slice, alr_rescale, check_channels, check_progress, pair
from supernets.ops.registry import register_op

__all__ = [
    "WinogradMatrices",
    "WINOGRAD_MATRICES",
    "winograd_matrices",
    "winograd_exactness_error",
    "winograd_conv2d",
    "winograd_adder_conv2d",
    "winograd_transform_additions",
    "WinogradAdderConv2d",
]


@dataclass(frozen=True)
class WinogradMatrices:
    """One F(2x2, 3x3) transform set: ``AT`` (2x4), ``G`` (4x3), ``BT`` (4x4), as nested float tuples."""

    name: str
    AT: tuple[tuple[float, ...], ...]
    G: tuple[tuple[float, ...], ...]
    BT: tuple[tuple[float, ...], ...]
    source: str = ""

    def tensors(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            torch.tensor(self.AT, dtype=dtype, device=device),
            torch.tensor(self.G, dtype=dtype, device=device),
            torch.tensor(self.BT, dtype=dtype, device=device),
        )


_STANDARD = WinogradMatrices(
    name="standard",
    AT=((1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, -1.0)),
    G=((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0)),
    BT=((1.0, 0.0, -1.0, 0.0), (0.0, 1.0, 1.0, 0.0), (0.0, -1.0, 1.0, 0.0), (0.0, 1.0, 0.0, -1.0)),
    source="Lavin & Gray, 'Fast Algorithms for Convolutional Neural Networks', CVPR 2016 (arXiv 1509.09308)",
)

_BALANCED = WinogradMatrices(
    name="balanced",
    AT=((-1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, 1.0)),
    G=_STANDARD.G,
    BT=((-1.0, 0.0, 1.0, 0.0), (0.0, 1.0, 1.0, 0.0), (0.0, -1.0, 1.0, 0.0), (0.0, -1.0, 0.0, 1.0)),
    source="derived in techniques/addernet-family.md section 2.3 (equal A^T row sums); NOT the paper's published set",
)

WINOGRAD_MATRICES: dict[str, WinogradMatrices] = {"standard": _STANDARD, "balanced": _BALANCED}
_VALIDATED: set[WinogradMatrices] = set(WINOGRAD_MATRICES.values())


def _as_matrix(value: Any, shape: tuple[int, int], name: str) -> tuple[tuple[float, ...], ...]:
    t = torch.as_tensor(value, dtype=torch.float64) if not isinstance(value, torch.Tensor) else value.detach().to(torch.float64).cpu()
    if tuple(t.shape) != shape:
        raise ValueError(f"Winograd matrix {name} must have shape {shape}, got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"Winograd matrix {name} must be finite, got {t.tolist()}")
    return tuple(tuple(float(v) for v in row) for row in t.tolist())


def winograd_exactness_error(m: WinogradMatrices, trials: int = 4, seed: int = 0) -> float:
    """Max |A^T[(G g G^T) * (B^T d B)]A - corr2d(d, g)| over random fp64 tiles (0 for an exact set)."""
    gen = torch.Generator().manual_seed(seed)
    AT, G, BT = m.tensors(torch.float64)
    d = torch.randn(trials, 4, 4, generator=gen, dtype=torch.float64)
    g = torch.randn(trials, 3, 3, generator=gen, dtype=torch.float64)
    U = G @ g @ G.T
    V = BT @ d @ BT.T
    Y = AT @ (U * V) @ AT.T
    ref = F.conv2d(d[None], g[:, None], groups=trials)[0]  # one single-channel correlation per trial
    return float((Y - ref).abs().max())


def winograd_matrices(spec: str | WinogradMatrices | Mapping[str, Any] | Sequence[Any], *, check_exact: bool = True) -> WinogradMatrices:
    """Resolve a transform-set spec: a name in ``WINOGRAD_MATRICES``, a ``WinogradMatrices``,
    a mapping with keys ``AT``, ``G``, ``BT`` or a sequence ``(AT, G, BT)``.

    User-supplied sets are checked to be exact in multiplication form (``check_exact``), because an
    inexact set silently computes a different operator.
    """
    if isinstance(spec, WinogradMatrices):
        if spec in _VALIDATED:  # built-in or already checked: skip the per-forward re-check
            return spec
        m = spec
    elif isinstance(spec, str):
        if spec not in WINOGRAD_MATRICES:
            raise ValueError(f"matrices must be one of {sorted(WINOGRAD_MATRICES)} or (AT, G, BT), got {spec!r}")
        return WINOGRAD_MATRICES[spec]
    elif isinstance(spec, Mapping):
        missing = {"AT", "G", "BT"} - set(spec)
        if missing:
            raise ValueError(f"matrices mapping must have keys AT, G, BT, missing {sorted(missing)}")
        m = WinogradMatrices(str(spec.get("name", "custom")), _as_matrix(spec["AT"], (2, 4), "AT"), _as_matrix(spec["G"], (4, 3), "G"), _as_matrix(spec["BT"], (4, 4), "BT"), str(spec.get("source", "user")))
    elif isinstance(spec, Sequence) and len(spec) == 3:
        m = WinogradMatrices("custom", _as_matrix(spec[0], (2, 4), "AT"), _as_matrix(spec[1], (4, 3), "G"), _as_matrix(spec[2], (4, 4), "BT"), "user")
    else:
        raise TypeError(f"matrices must be a name, a WinogradMatrices, a mapping or (AT, G, BT), got {type(spec).__name__}")
    if check_exact:
        err = winograd_exactness_error(m)
        if err > 1e-9:
            raise ValueError(f"Winograd matrices {m.name!r} are not exact for F(2x2, 3x3) in multiplication form (max error {err:.3g}); pass check_exact=False to use them anyway")
    _VALIDATED.add(m)
    return m


def winograd_transform_additions(m: WinogradMatrices) -> dict[str, int]:
    """Additions per tile of the input (``B^T d B``, per input channel) and output (``A^T M A``, per
    output channel) transforms, counting a row with k nonzeros as k-1 additions; coefficients other
    than +-1 are counted as ``transform_mults`` (shifts when they are powers of two).
    """
    AT = torch.tensor(m.AT)
    BT = torch.tensor(m.BT)
    b_row = int(((BT != 0).sum(1) - 1).clamp(min=0).sum())
    a_row = int(((AT != 0).sum(1) - 1).clamp(min=0).sum())
    # B^T d: 4 columns of d; (B^T d) B: 4 rows -> 8 * sum(nnz-1). A^T M: 4 columns; (A^T M) A: 2 rows.
    inp = 8 * b_row
    out = 6 * a_row
    non_unit = lambda t: int(((t != 0) & (t.abs() != 1)).sum())  # noqa: E731
    return {"input": inp, "output": out, "input_mults": 8 * non_unit(BT), "output_mults": 6 * non_unit(AT)}


# ----------------------------------------------------------------------------------------------------
# Tiling


def _tile_geometry(h: int, w: int, padding: tuple[int, int]) -> tuple[int, int, int, int]:
    ho, wo = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    if ho < 1 or wo < 1:
        raise ValueError(f"input spatial size {(h, w)} with padding {padding} is too small for a 3x3 kernel")
    return ho, wo, math.ceil(ho / 2), math.ceil(wo / 2)


def _input_tiles(x: torch.Tensor, padding: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
    """Overlapping 4x4 tiles with stride 2: ``(N, C, th, tw, 4, 4)`` (a view of the padded input).

    Odd output sizes get one extra zero row/column at the bottom/right so the last tile is whole; the
    extra outputs are cropped. Note that, unlike Winograd for multiplication, that extra zero row does
    change the *kept* outputs of the last tile in the adder form (the adder is not linear), exactly as
    in any tiled Winograd-adder implementation; the crop only fixes the shape.
    """
    _, _, h, w = x.shape
    ho, wo, th, tw = _tile_geometry(h, w, padding)
    hp, wp = 2 * th + 2, 2 * tw + 2
    xp = F.pad(x, (padding[1], wp - w - padding[1], padding[0], hp - h - padding[0]))
    return xp.unfold(2, 4, 2).unfold(3, 4, 2), ho, wo


def _output_from_tiles(y: torch.Tensor, ho: int, wo: int) -> torch.Tensor:
    """``(N, Co, th, tw, 2, 2)`` tiles -> ``(N, Co, Ho, Wo)`` (cropped)."""
    n, co, th, tw = y.shape[:4]
    y = y.permute(0, 1, 2, 4, 3, 5).reshape(n, co, 2 * th, 2 * tw)
    return y[:, :, :ho, :wo]


def _check_input(x: torch.Tensor, weight: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"weight must have shape (C_out, C_in, 3, 3) for F(2x2, 3x3), got {tuple(weight.shape)}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"input has {x.shape[1]} channels but weight expects {weight.shape[1]}")


def winograd_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int | tuple[int, int] = 0, matrices: Any = "standard") -> torch.Tensor:
    """Multiplication-form Winograd F(2x2, 3x3) convolution (cross-correlation, stride 1).

    A reference for the tiling/cropping and the transform sets: equals ``F.conv2d`` for any exact set.
    """
    _check_input(x, weight)
    m = winograd_matrices(matrices)
    AT, G, BT = m.tensors(x.dtype, x.device)
    d, ho, wo = _input_tiles(x, pair(padding, "padding"))
    V = torch.einsum("ia,nctuab,jb->nctuij", BT, d, BT)
    U = torch.einsum("ia,ocab,jb->ocij", G, weight, G)
    M = torch.einsum("nctuij,ocij->notuij", V, U)
    y = _output_from_tiles(torch.einsum("ai,notuij,bj->notuab", AT, M, AT), ho, wo)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


# ----------------------------------------------------------------------------------------------------
# The adder kernel in the Winograd domain

_DEFAULT_CHUNK_ELEMS = 1 << 22  # bound on temporaries of the broadcast paths (16 MiB in fp32)


class _WinogradAdderFn(torch.autograd.Function):
    """``M[e, o, l] = -sum_c |U[e, o, c] - V[e, l, c]|^p`` for e in 16 Winograd positions.

    ``U``: (16, C_out, C_in), ``V``: (16, L, C_in) with L = N * tiles. The forward uses ``torch.cdist``
    (a GEMM identity at p = 2), the backward chunks its temporaries over L so they stay under
    ``chunk_elems`` elements.
    """

    @staticmethod
    def forward(ctx, U: torch.Tensor, V: torch.Tensor, p: float, grad_rule: str, chunk_elems: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(U, V)
        ctx.p, ctx.grad_rule, ctx.chunk = p, grad_rule, chunk_elems
        if p == 2.0:
            # sum (U-V)^2 = |U|^2 + |V|^2 - 2 U.V: one batched GEMM (no cancellation issue here,
            # all three terms are O(result)); clamp the rounding below 0
            sq = U.pow(2).sum(-1, keepdim=True) + V.pow(2).sum(-1).unsqueeze(1) - 2.0 * torch.bmm(U, V.transpose(1, 2))
            return -sq.clamp_(min=0.0)
        # torch.cdist's l_p kernel needs no (e, co, L, ci) temporary; (sum |.|^p)^(1/p) raised back
        # to p costs ~1 ulp relative error for p != 1
        d = torch.cdist(U, V, p=p, compute_mode="donot_use_mm_for_euclid_dist")
        return -d if p == 1.0 else -d.pow_(p)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        U, V = ctx.saved_tensors
        p, rule = ctx.p, ctx.grad_rule
        e, co, ci = U.shape
        L = V.shape[1]
        g = g.contiguous()
        need_u, need_v = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_u = grad_v = None
        if rule == "addernet" and need_u:
            # full-precision rule dM/dU := V - U is linear in V -> one batched GEMM (spec 1.6)
            grad_u = torch.bmm(g, V) - U * g.sum(-1, keepdim=True)
        if rule == "exact" and need_u:
            grad_u = torch.zeros_like(U)
        if need_v:
            grad_v = torch.empty_like(V)
        if need_v or (rule == "exact" and need_u):
            step = max(1, ctx.chunk // max(1, e * co * ci))
            for l0 in range(0, L, step):
                sl = slice(l0, l0 + step)
                diff = U[:, :, None, :] - V[:, None, sl, :]  # (e, co, lc, ci) = U - V
                gc = g[:, :, sl, None]
                if rule == "addernet":
                    if need_v:
                        grad_v[:, sl] = (gc * diff.clamp_(-1.0, 1.0)).sum(1)  # HardTanh(U - V)
                else:
                    # dM/dU = -p |U-V|^(p-1) sign(U-V);  dM/dV = +p |U-V|^(p-1) sign(U-V)
                    d = torch.sign(diff) if p == 1.0 else p * diff.abs().pow(p - 1.0) * torch.sign(diff)
                    d = gc * d
                    if need_u:
                        grad_u -= d.sum(2)
                    if need_v:
                        grad_v[:, sl] = d.sum(1)
        return grad_u, grad_v, None, None, None


def _adder_kernel_usable(x: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    try:
        from supernets.ops.adder import native_kernel_available
    except ImportError:
        return False
    return native_kernel_available()


def _grouped_adder_kernel(U: torch.Tensor, V: torch.Tensor, n: int, th: int, tw: int, p: float, grad_rule: str) -> torch.Tensor:
    """``M[e] = -cdist_1(U[e], V[e])`` as a 1x1 adder conv with 16 groups: input channel (e, c) at
    pixel (tile row, tile col), filter (e, o) over c. ``adder_conv2d`` has the same AdderNet rules
    (filter: full precision, input: HardTanh; ``lp_grad="exact"`` for the true derivative)."""
    from supernets.ops.adder import adder_conv2d

    e, co, c = U.shape
    xin = V.view(e, n, th, tw, c).permute(1, 0, 4, 2, 3).reshape(n, e * c, th, tw)
    lp_grad = "adder" if grad_rule == "addernet" else "exact"
    y = adder_conv2d(xin, U.reshape(e * co, c, 1, 1), groups=e, p=p, lp_grad=lp_grad)
    return y.view(n, e, co, th * tw).permute(1, 2, 0, 3).reshape(e, co, n * th * tw)


def winograd_adder_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int | tuple[int, int] = 0,
    matrices: Any = "balanced",
    p: float = 1.0,
    grad_rule: str = "addernet",
    chunk_elems: int = _DEFAULT_CHUNK_ELEMS,
    impl: str = "auto",
) -> torch.Tensor:
    """Functional Winograd-adder F(2x2, 3x3), stride 1: ``Y = A^T [-sum_c |G g G^T - B^T d B|^p] A``.

    ``weight`` is the spatial 3x3 filter ``g`` (C_out, C_in, 3, 3); its gradient reaches ``g`` through
    the (linear) filter transform. ``grad_rule`` is ``"addernet"`` (full precision for U, HardTanh for
    V) or ``"exact"``. ``impl``: ``"torch"`` runs this module's kernel; ``"adder"`` maps the
    Winograd-domain kernel onto a grouped 1x1 ``adder_conv2d`` (one group per Winograd position,
    same AdderNet rules; uses its compiled CPU kernel); ``"auto"`` picks ``"adder"`` for float32 on
    CPU when that kernel is available.
    """
    _check_input(x, weight)
    if grad_rule not in ("addernet", "exact"):
        raise ValueError(f"grad_rule must be 'addernet' or 'exact', got {grad_rule!r}")
    if not (float(p) > 0):
        raise ValueError(f"p must be > 0, got {p!r}")
    if x.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(x.device.type):
        # l1 sums of hundreds of O(1) terms lose too much in half precision (spec 1.6): run in fp32
        out_dtype = x.dtype
        with torch.autocast(x.device.type, enabled=False):
            y = winograd_adder_conv2d(x.float(), weight.float(), None if bias is None else bias.float(), padding, matrices, p, grad_rule, chunk_elems, impl)
        return y.to(out_dtype) if out_dtype in (torch.float16, torch.bfloat16) else y
    m = winograd_matrices(matrices)
    AT, G, BT = m.tensors(x.dtype, x.device)
    d, ho, wo = _input_tiles(x, pair(padding, "padding"))
    n, c, th, tw = d.shape[:4]
    co = weight.shape[0]
    L = n * th * tw
    # 2-D transforms as one GEMM each with Kronecker products, kron(B^T, B^T)[(i,j), (a,b)] =
    # B^T[i,a] B^T[j,b]: far faster on CPU than einsum over 4x4 factors, and the GEMM output is
    # already in the (16, L, C) layout the adder kernel wants.
    V = (torch.kron(BT, BT) @ d.permute(4, 5, 0, 2, 3, 1).reshape(16, L * c)).view(16, L, c)
    U = (torch.kron(G, G) @ weight.reshape(co * c, 9).T).view(16, co, c)
    if impl not in ("auto", "torch", "adder"):
        raise ValueError(f"impl must be 'auto', 'torch' or 'adder', got {impl!r}")
    if impl == "adder" or (impl == "auto" and _adder_kernel_usable(x)):
        M = _grouped_adder_kernel(U, V, n, th, tw, float(p), grad_rule)
    else:
        M = _WinogradAdderFn.apply(U, V, float(p), grad_rule, int(chunk_elems))  # (16, co, L)
    Y = (torch.kron(AT, AT) @ M.reshape(16, co * L)).view(2, 2, co, n, th, tw)
    y = _output_from_tiles(Y.permute(3, 2, 4, 5, 0, 1), ho, wo)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


@register_op("winograd_adder")
class WinogradAdderConv2d(nn.Module):
    """Winograd AdderNet layer (3x3, stride 1) with the l2-to-l1 schedule and AdderNet's ALR.

    Args mirror ``nn.Conv2d`` (``kernel_size`` must be 3, ``stride`` 1, ``dilation`` 1, ``groups`` 1;
    use the direct adder op elsewhere). ``matrices``: ``"balanced"`` (default; derived, not the
    paper's set), ``"standard"`` or user ``(AT, G, BT)``.

    Schedule: ``p = p_start + (p_end - p_start) * min(1, progress / p_anneal_end)``; a fresh module
    sits at progress 0 (p = p_start). With ``progress = epoch / max_epochs`` the last epoch has p
    slightly above p_end unless ``p_anneal_end < 1``; call ``set_progress(1.0)`` after training so
    inference runs at p_end. ``p`` can also be assigned directly (``set_adder_p`` in ``adder.py``).
    p and progress are saved in ``state_dict`` (extra state).

    ALR (``alr="accumulated"``, ``eta=0.2``): ``apply_alr()`` rescales the filter gradient to
    ``eta * sqrt(k) / ||g||`` before the optimizer step (the evaluator's ``AdaptiveLRCallback``
    calls it); using ALR for the Winograd adder is from memory (spec 2.4), hence ``alr="off"``.
    Weights are initialised N(0, 1) as in the official AdderNet code. For supernets,
    ``forward(x, out_channels=k)`` or ``active_out_channels = k`` uses the first k filters over the
    first ``x.shape[1]`` input channels.
    """

    supports_alr = True  # duck-typed marker shared with AdderConv2d (adder.apply_alr / set_adder_p)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = False,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        *,
        matrices: Any = "balanced",
        p_start: float = 2.0,
        p_end: float = 1.0,
        p_anneal_end: float = 1.0,
        grad_rule: str = "addernet",
        eta: float = 0.2,
        alr: str = "accumulated",
        alr_granularity: str = "layer",
        chunk_elems: int = _DEFAULT_CHUNK_ELEMS,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        check_channels(in_channels, out_channels, groups)
        if impl not in ("auto", "torch", "adder"):
            raise ValueError(f"impl must be 'auto', 'torch' or 'adder', got {impl!r}")
        if pair(kernel_size, "kernel_size") != (3, 3):
            raise ValueError(f"kernel_size must be 3 for Winograd F(2x2, 3x3), got {kernel_size!r}")
        if pair(stride, "stride") != (1, 1):
            raise ValueError(f"stride must be 1 for Winograd F(2x2, 3x3), got {stride!r}")
        if pair(dilation, "dilation") != (1, 1):
            raise ValueError(f"dilation must be 1 for Winograd F(2x2, 3x3), got {dilation!r}")
        if groups != 1:
            raise ValueError(f"groups must be 1 for the Winograd adder, got {groups!r}")
        if grad_rule not in ("addernet", "exact"):
            raise ValueError(f"grad_rule must be 'addernet' or 'exact', got {grad_rule!r}")
        for nm, v in (("p_start", p_start), ("p_end", p_end)):
            if not (float(v) >= 1.0):
                raise ValueError(f"{nm} must be >= 1, got {v!r}")
        if not (0.0 < float(p_anneal_end) <= 1.0):
            raise ValueError(f"p_anneal_end must be in (0, 1], got {p_anneal_end!r}")
        if alr not in ("accumulated", "off"):
            raise ValueError(f"alr must be 'accumulated' or 'off', got {alr!r}")
        if alr_granularity not in ("layer", "filter"):
            raise ValueError(f"alr_granularity must be 'layer' or 'filter', got {alr_granularity!r}")
        if not float(eta) > 0:
            raise ValueError(f"eta must be > 0, got {eta!r}")
        if not isinstance(chunk_elems, int) or chunk_elems < 1:
            raise ValueError(f"chunk_elems must be a positive int, got {chunk_elems!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation, self.groups = (3, 3), (1, 1), (1, 1), 1
        self.padding = pair(padding, "padding")
        self.matrices = winograd_matrices(matrices)
        self.p_start, self.p_end, self.p_anneal_end = float(p_start), float(p_end), float(p_anneal_end)
        self.grad_rule = grad_rule
        self.eta, self.alr, self.alr_granularity = float(eta), alr, alr_granularity
        self.chunk_elems, self.impl = chunk_elems, impl
        self.active_out_channels: int | None = None
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.rand(out_channels)) if bias else None  # U[0,1) as the official adder
        self.progress = 0.0
        self.p = self.p_start

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value) >= 1.0:
            raise ValueError(f"p must be a number >= 1, got {value!r}")
        self._p = float(value)

    def get_extra_state(self) -> dict:
        return {"p": self._p, "progress": self.progress}

    def set_extra_state(self, state: dict) -> None:
        self.p = state["p"]
        self.progress = float(state["progress"])

    def p_at(self, progress: float) -> float:
        """Scheduled p at a training progress in [0, 1] (linear l2 -> l1)."""
        t = min(1.0, check_progress(progress) / self.p_anneal_end)
        return self.p_start + (self.p_end - self.p_start) * t

    def set_progress(self, progress: float) -> None:
        """Called by the training callback each epoch with ``epoch / max_epochs``."""
        self.progress = check_progress(progress)
        self.p = self.p_at(progress)

    @torch.no_grad()
    def apply_alr(self) -> bool:
        """ALR on ``weight.grad`` (call after gradient accumulation, before ``optimizer.step()``)."""
        if self.alr != "accumulated" or self.weight.grad is None:
            return False
        alr_rescale(self.weight.grad, self.eta, self.alr_granularity)
        return True

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        oc, cin = active_slice(self, x, out_channels)
        w = self.weight if (oc, cin) == (self.out_channels, self.in_channels) else self.weight[:oc, :cin]
        b = None if self.bias is None else self.bias[:oc]
        return winograd_adder_conv2d(x, w, b, self.padding, self.matrices, self._p, self.grad_rule, self.chunk_elems, self.impl)

    def hw_workload(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
        """Abs-diff ops in the Winograd domain: 16 per 2x2 tile per (c_in, c_out) pair (vs 36 direct).

        ``transform_ops`` = input-transform additions (per tile per c_in, shared by all c_out) plus
        output-transform additions (per tile per c_out, shared by all c_in); the filter transform is
        offline. ``params`` counts the stored Winograd-domain weights (16 per pair); ``direct_adder_ops``
        is what a direct 3x3 adder would need for the same output.
        """
        if len(input_shape) != 4 or len(output_shape) != 4:
            raise ValueError(f"input_shape and output_shape must be 4-D (N, C, H, W), got {tuple(input_shape)} and {tuple(output_shape)}")
        n, cin, h, w = (int(v) for v in input_shape)
        _, cout, ho, wo = (int(v) for v in output_shape)
        th, tw = math.ceil(ho / 2), math.ceil(wo / 2)
        tiles = n * th * tw
        adds = winograd_transform_additions(self.matrices)
        params = 16 * cin * cout + (cout if self.bias is not None else 0)
        in_t, out_t = adds["input"] * tiles * cin, adds["output"] * tiles * cout
        return {
            "op": "winograd_adder",
            "ops": 16 * tiles * cin * cout,
            "w_bits": 32,
            "a_bits": 32,
            "params": params,
            "in_elems": n * cin * h * w,
            "out_elems": n * cout * ho * wo,
            "in_channels": cin,
            "out_channels": cout,
            "kernel": 9,
            "out_pixels": n * ho * wo,
            "tiles": tiles,
            "ops_per_tile": 16,
            "transform_ops": in_t + out_t,
            "input_transform_ops": in_t,
            "output_transform_ops": out_t,
            "transform_mults": (adds["input_mults"] * cin + adds["output_mults"] * cout) * tiles,
            "direct_adder_ops": 9 * n * ho * wo * cin * cout,
            "weight_bytes": 4 * params,
            "act_bytes": 4 * (n * cin * h * w + n * cout * ho * wo),
        }

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size=3, padding={self.padding}, matrices={self.matrices.name!r}, p={self._p:.3f}, grad_rule={self.grad_rule!r}, alr={self.alr!r}"
