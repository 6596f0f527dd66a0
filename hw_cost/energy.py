"""Per-operation energies (pJ) after Horowitz, ISSCC 2014 (45 nm, 0.9 V), scaled to any bit width.

Why power laws: the spec (`fpga-cost-model.md` §1.1) gives a linear rule for adds (0.03 pJ * n/8)
and a quadratic one for multiplies (0.2 pJ * a*w/64); both miss one published anchor (32-bit add
0.1 vs 0.12; 32x32 mult 3.1 vs 3.2). A power law fitted through the two anchors of each family
reproduces every anchor exactly and stays within a few percent of the spec's rules in between:

    e_add_int(n)     = 0.03 * (n/8) ** q,        q = log(0.1/0.03) / log(32/8)      (= 0.8685)
    e_mul_int(a, w)  = 0.2  * (a*w/64) ** p,     p = log(3.1/0.2) / log(1024/64)   (= 0.9886)
    e_add_fp(n)      = 0.4  * (n/16) ** r,       r = log(0.9/0.4) / log(2)         (= 1.170)
    e_mul_fp(n)      = 1.1  * (n/16) ** s,       s = log(3.7/1.1) / log(2)         (= 1.750)

Anchors (all verified in the spec, table 1.1): int8 add 0.03, int32 add 0.1, int8 mult 0.2,
int32 mult 3.1, fp16 add 0.4, fp32 add 0.9, fp16 mult 1.1, fp32 mult 3.7 pJ. These are ASIC
numbers; `hw_cost` multiplies them by a per-device factor (``energy_scale``) for FPGA fabric.
All functions accept numpy arrays (the batch path) as well as scalars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HorowitzAnchors:
    """The eight 45 nm anchors (pJ); override to re-base the scaling laws."""

    int_add_8: float = 0.03   # Horowitz ISSCC'14, 8-bit add (verified: stillwater-sc/universal generic_45nm.hpp)
    int_add_32: float = 0.1   # Horowitz ISSCC'14, 32-bit add (verified: same; PMC8934428)
    int_mul_8: float = 0.2    # Horowitz ISSCC'14, 8-bit mult (verified: stillwater)
    int_mul_32: float = 3.1   # Horowitz ISSCC'14, 32-bit mult (verified: stillwater, PMC8934428)
    fp_add_16: float = 0.4    # Horowitz ISSCC'14, fp16 add (verified: stillwater)
    fp_add_32: float = 0.9    # Horowitz ISSCC'14, fp32 add (verified: stillwater, PMC8934428)
    fp_mul_16: float = 1.1    # Horowitz ISSCC'14, fp16 mult (verified: stillwater)
    fp_mul_32: float = 3.7    # Horowitz ISSCC'14, fp32 mult (verified: stillwater, PMC8934428)

    @property
    def q_add(self) -> float:
        return math.log(self.int_add_32 / self.int_add_8) / math.log(4.0)

    @property
    def p_mul(self) -> float:
        return math.log(self.int_mul_32 / self.int_mul_8) / math.log(16.0)

    @property
    def r_fadd(self) -> float:
        return math.log(self.fp_add_32 / self.fp_add_16) / math.log(2.0)

    @property
    def s_fmul(self) -> float:
        return math.log(self.fp_mul_32 / self.fp_mul_16) / math.log(2.0)


HOROWITZ = HorowitzAnchors()


def e_add(bits, is_float=False, anchors: HorowitzAnchors = HOROWITZ):
    """Energy (pJ) of one add of ``bits`` width; float adds use the fp anchors."""
    b = np.maximum(np.asarray(bits, dtype=np.float64), 1.0)
    ei = anchors.int_add_8 * (b / 8.0) ** anchors.q_add
    ef = anchors.fp_add_16 * (b / 16.0) ** anchors.r_fadd
    out = np.where(np.asarray(is_float, dtype=bool), ef, ei)
    return float(out) if out.ndim == 0 else out


def e_mul(a_bits, w_bits, is_float=False, anchors: HorowitzAnchors = HOROWITZ):
    """Energy (pJ) of one ``a_bits`` x ``w_bits`` multiply (float: by the wider operand)."""
    a = np.maximum(np.asarray(a_bits, dtype=np.float64), 1.0)
    w = np.maximum(np.asarray(w_bits, dtype=np.float64), 1.0)
    ei = anchors.int_mul_8 * (a * w / 64.0) ** anchors.p_mul
    ef = anchors.fp_mul_16 * (np.maximum(a, w) / 16.0) ** anchors.s_fmul
    out = np.where(np.asarray(is_float, dtype=bool), ef, ei)
    return float(out) if out.ndim == 0 else out


def e_mac(a_bits, w_bits, is_float=False, anchors: HorowitzAnchors = HOROWITZ):
    """Multiply-accumulate: one multiply plus one add at the product width (a+w; float: same width)."""
    a = np.asarray(a_bits, dtype=np.float64)
    w = np.asarray(w_bits, dtype=np.float64)
    f = np.asarray(is_float, dtype=bool)
    acc = np.where(f, np.maximum(a, w), a + w)
    return e_mul(a, w, f, anchors) + e_add(acc, f, anchors)


def e_adder_kernel(a_bits, w_bits, is_float=False, anchors: HorowitzAnchors = HOROWITZ):
    """AdderNet ``|x - w|`` + accumulate (spec §1.1, derived: 2-3 adds).

    Integer: a subtract, a conditional negate and an accumulate, each (n+1) bits wide, n = max(a, w)
    (the AdderNet-FPGA RTL computes 9-bit differences at 8-bit data). Float: a subtract and an add
    (the absolute value is a sign-bit clear).
    """
    n = np.maximum(np.asarray(a_bits, dtype=np.float64), np.asarray(w_bits, dtype=np.float64))
    f = np.asarray(is_float, dtype=bool)
    return np.where(f, 2.0 * e_add(n, True, anchors), 3.0 * e_add(n + 1.0, False, anchors))


def e_xnor_popcount(anchors: HorowitzAnchors = HOROWITZ) -> float:
    """One binary MAC: an XNOR (~one adder bit, spec §1.1) plus its share of the popcount tree.

    A popcount tree over Q inputs has Q-1 adders whose average width tends to 2 bits
    (sum over levels of 2^-l * (l+1)), so each input costs about one 2-bit add (derived).
    """
    return float(e_add(1.0, False, anchors) + e_add(2.0, False, anchors))
