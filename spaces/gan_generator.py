"""``gan-generator`` and ``gan-generator-sr``: GAN generators in a teacher's macro layout, searched
over the three dimension groups of coarse-to-fine GAN search (Wang et al., arXiv 2104.09223):
*path*, *operator* and *channel*.

No official code exists; the layout and the candidate sets follow the reference design of
``shared/techniques/vision-generative-detection.md`` section 1 (the three axes are verified from
the abstract; everything else is [inferred] and configurable through the builder options).

``gan-generator`` (image-to-image translation, pix2pix / CycleGAN ResNet-generator layout):
stem conv 7x7 -> encoder (two stride-2 cells ``enc.d1``, ``enc.d2``) -> residual body
(``body.b1`` .. ``body.b6``, pre-activation residual cells) -> decoder (two nearest-upsample cells
``dec.u1``, ``dec.u2``) -> head conv 7x7 + sigmoid (images in [0, 1]). U-Net skips
``unet.skip1`` (``enc.d1`` -> ``dec.u1``, half resolution) and ``unet.skip2`` (stem -> ``dec.u2``,
full resolution) add a 1x1 projection of the encoder feature to the decoder feature when kept
(concat-then-conv written as the sum of two convs; the skip half is 1x1 [inferred]).

``gan-generator-sr`` (super-resolution, EDSR-style layout, the SR evaluator's task): head conv 3x3
-> body ``body.b1`` .. ``body.b8`` -> body conv 3x3 + global skip -> pixel-shuffle upsampler ->
tail conv 3x3. Its scale ``sr.scale`` must equal the data's. A separate space (not an option of
``gan-generator``) because its dimensions differ (no encoder, decoder or skips; a scale) and it
runs on another task (``superres``), so each space's dimensions all mean something.

Dimension groups (``dimension_group(label)``, ``dimension_groups(space)``; by label suffix, so
they survive ``restricted`` and JSON round trips): the staged search trains and searches one
group at a time with the others fixed.

* ``path``: ``body.b{i}.keep`` (i >= 2; the first block of the body is always kept, which is
  "at least one block per stage" by construction) and ``unet.skip{l}``;
* ``operator``: per cell ``{cell}.op`` (conv3x3, conv1x1, resblock, dwsep, dil3x3), ``{cell}.family``
  (conv or adder, ``supernets.ops``) and ``{cell}.bits`` (32 = float; b-bit ``QuantConv2d`` /
  ``QuantAdderConv2d`` below);
* ``channel``: ``{cell}.width``, multipliers of the teacher's width (slimmable: the first k
  filters): the output width of the encoder/decoder cells and of the stem (``enc.stem.width``; the
  last encoder cell's width is the body's trunk width, shared by every residual cell) and of the
  SR trunk (``head.width``); the inner width of body cells whose op has one (resblock, dwsep).

Builder options (``space_options``): ``base_width`` (teacher width: pix2pix's ngf, 64 in the
paper setting; default 16 for CPU; SR trunk default 32), ``norm`` (``instance`` (default for
translation) or ``none`` (SR)), ``out_channels`` (default: the input's channels).
"""

from __future__ import annotations

from typing import Any, Mapping

from spaces.catalog import register_space
from spaces.dimensions import Categorical, Condition, Dimension
from spaces.space import SearchSpace

C2F = "Coarse-to-fine GAN generator search (Wang et al., arXiv 2104.09223)"
C2F_INFERRED = f"{C2F}; candidate set not published, reference design of the spec [inferred]"
PIX2PIX = "pix2pix (Isola et al., CVPR 2017, arXiv 1611.07004); CycleGAN ResNet generator (arXiv 1703.10593)"
UNET = "U-Net (Ronneberger et al., MICCAI 2015, arXiv 1505.04597); pix2pix U-Net generator"
EDSR = "EDSR (Lim et al., CVPR-W 2017, arXiv 1707.02921)"
ADDERNET = "AdderNet (Chen et al., CVPR 2020, arXiv 1912.13200)"
ADDER_HW = "AdderNet hardware (Wang et al., arXiv 2101.10015)"

OPS = ("conv3x3", "conv1x1", "resblock", "dwsep", "dil3x3")
INNER_OPS = ("resblock", "dwsep")  # ops with an inner width of their own
FAMILIES = ("conv", "adder")
BITS = (32, 16, 8, 4)
WIDTHS = (0.25, 0.375, 0.5, 0.625, 0.75, 1.0)

N_DOWN = 2
N_BODY = 6
N_BODY_SR = 8
ENC_CELLS = tuple(f"enc.d{i}" for i in range(1, N_DOWN + 1))
DEC_CELLS = tuple(f"dec.u{i}" for i in range(1, N_DOWN + 1))

GROUPS = ("path", "operator", "channel")
_GROUP_BY_SUFFIX = {"keep": "path", "op": "operator", "family": "operator", "bits": "operator", "width": "channel"}


def dimension_group(label: str) -> str | None:
    """``path``, ``operator``, ``channel`` or None (not searched by the staged search, e.g. ``sr.scale``)."""
    if label.startswith("unet.skip"):
        return "path"
    return _GROUP_BY_SUFFIX.get(label.rsplit(".", 1)[-1])


def dimension_groups(space: SearchSpace) -> dict[str, list[str]]:
    """The space's labels by group, in dimension order (every group present, maybe empty)."""
    out: dict[str, list[str]] = {g: [] for g in GROUPS}
    for label in space.labels:
        g = dimension_group(label)
        if g is not None:
            out[g].append(label)
    return out


def body_cells(n: int) -> tuple[str, ...]:
    return tuple(f"body.b{i}" for i in range(1, n + 1))


def channels(teacher: int, mult: float) -> int:
    """Width of a layer: the teacher's width x multiplier, at least 1."""
    return max(1, int(round(teacher * float(mult))))


def translation_widths(arch: Mapping[str, Any], base_width: int) -> dict[str, int]:
    """Channels per width position of a ``gan-generator`` architecture (the builder, the supernet
    and the workloads all use this): ``enc.stem``, the encoder/decoder cells' outputs, the body
    cells' inner widths (only where the cell runs an op with one) and ``trunk`` (= ``enc.d2``)."""
    out = {"enc.stem": channels(base_width, arch["enc.stem.width"])}
    for i, cell in enumerate(ENC_CELLS, start=1):
        out[cell] = channels(base_width * 2 ** i, arch[f"{cell}.width"])
    out["trunk"] = out[ENC_CELLS[-1]]
    for i, cell in enumerate(DEC_CELLS, start=1):
        out[cell] = channels(base_width * 2 ** (N_DOWN - i), arch[f"{cell}.width"])
    teacher_trunk = base_width * 2 ** N_DOWN
    for cell in body_cells(N_BODY):
        if f"{cell}.width" in arch:
            out[cell] = channels(teacher_trunk, arch[f"{cell}.width"])
    return out


def sr_widths(arch: Mapping[str, Any], base_width: int, n_body: int = N_BODY_SR) -> dict[str, int]:
    """Channels of a ``gan-generator-sr`` architecture: ``trunk`` and the body cells' inner widths."""
    out = {"trunk": channels(base_width, arch["head.width"])}
    for cell in body_cells(n_body):
        if f"{cell}.width" in arch:
            out[cell] = channels(base_width, arch[f"{cell}.width"])
    return out


def _operator_dims(cell: str, conds: tuple[Condition, ...], default_op: str) -> list[Dimension]:
    return [
        Categorical(f"{cell}.op", OPS, default=default_op, paper=C2F_INFERRED, conditions=conds,
                    help="[operator] conv3x3, conv1x1, resblock (2x conv3x3), dwsep (1x1 -> dw3x3 -> 1x1), dil3x3 (dilation 2)"),
        Categorical(f"{cell}.family", FAMILIES, default="conv", paper=ADDERNET, conditions=conds,
                    help="[operator] multiplication (conv) or adder layers for the dense convs of the op (depthwise stays float conv)"),
        Categorical(f"{cell}.bits", BITS, default=32, paper=ADDER_HW, conditions=conds,
                    help="[operator] weight/activation bits of the op's dense convs; 32 = float"),
    ]


def _width_dim(label: str, what: str, conds: tuple[Condition, ...] = ()) -> Categorical:
    return Categorical(label, WIDTHS, default=1.0, paper=C2F_INFERRED, conditions=conds,
                       help=f"[channel] width multiplier of the teacher's {what} (slimmable: the first k filters)")


def _body_dims(cells: tuple[str, ...], default_op: str) -> list[Dimension]:
    dims: list[Dimension] = []
    for i, cell in enumerate(cells):
        keep: tuple[Condition, ...] = ()
        if i > 0:
            dims.append(Categorical(f"{cell}.keep", (True, False), default=True, paper=C2F,
                                    help="[path] run this residual block (False: identity, no cost); the body's first block is always run"))
            keep = (Condition(f"{cell}.keep", (True,)),)
        dims += _operator_dims(cell, keep, default_op)
        dims.append(_width_dim(f"{cell}.width", "inner width of the block (resblock / dwsep only)",
                               (*keep, Condition(f"{cell}.op", INNER_OPS))))
    return dims


def gan_generator_space() -> SearchSpace:
    dims: list[Dimension] = [_width_dim("enc.stem.width", "stem width (base width)")]
    for cell in ENC_CELLS:
        dims += _operator_dims(cell, (), "conv3x3")
        dims.append(_width_dim(f"{cell}.width", "output width of this downsampling cell (enc.d2: the body's trunk width)"))
    dims += _body_dims(body_cells(N_BODY), "resblock")
    for cell in DEC_CELLS:
        dims += _operator_dims(cell, (), "conv3x3")
        dims.append(_width_dim(f"{cell}.width", "output width of this upsampling cell"))
    for skip in range(1, N_DOWN + 1):
        dims.append(Categorical(f"unet.skip{skip}", (False, True), default=False, paper=UNET,
                                help="[path] add a 1x1 projection of the encoder feature at this resolution to the decoder's"))
    return SearchSpace(
        name="gan-generator",
        description="GAN generator for image translation (pix2pix ResNet layout): path / operator / channel per cell, U-Net skips",
        dimensions=dims,
        builder="supernets.gan_generator:build_gan_generator",
        workloads_fn="spaces.gan_generator_workloads:gan_generator_workloads",
        presets={"teacher": {}, "slim-half": _uniform_width(0.5, ("enc.stem", *ENC_CELLS, *DEC_CELLS))},
    )


def gan_generator_sr_space() -> SearchSpace:
    dims: list[Dimension] = [
        Categorical("sr.scale", (2, 3, 4), default=2, paper=EDSR, help="upscaling factor (must equal the data's scale)"),
        _width_dim("head.width", "trunk width (every residual cell's width)"),
    ]
    dims += _body_dims(body_cells(N_BODY_SR), "resblock")
    return SearchSpace(
        name="gan-generator-sr",
        description="GAN generator for super-resolution (EDSR layout): path / operator / channel per body cell",
        dimensions=dims,
        builder="supernets.gan_generator:build_gan_generator_sr",
        workloads_fn="spaces.gan_generator_workloads:gan_generator_sr_workloads",
        presets={"teacher": {}, "slim-half": {"head.width": 0.5}},
    )


def _uniform_width(mult: float, cells: tuple[str, ...]) -> Mapping[str, float]:
    return {f"{cell}.width": mult for cell in cells}


register_space("gan-generator")(gan_generator_space)
register_space("gan-generator-sr")(gan_generator_sr_space)
