"""Horowitz anchors are reproduced exactly and the per-op energies order as the physics says."""

import numpy as np
import pytest

from hw_cost import e_add, e_adder_kernel, e_mac, e_mul, e_xnor_popcount
from hw_cost.energy import HorowitzAnchors


@pytest.mark.parametrize("fn,args,pj", [
    (e_add, (8,), 0.03), (e_add, (32,), 0.1), (e_mul, (8, 8), 0.2), (e_mul, (32, 32), 3.1),
    (e_add, (16, True), 0.4), (e_add, (32, True), 0.9), (e_mul, (16, 16, True), 1.1), (e_mul, (32, 32, True), 3.7),
])
def test_horowitz_anchors_exact(fn, args, pj):
    assert fn(*args) == pytest.approx(pj, rel=1e-12)


def test_scaling_rules_close_to_spec_and_monotone():
    bits = np.arange(1, 33)
    add, mul = e_add(bits), e_mul(bits, bits)
    assert np.all(np.diff(add) > 0) and np.all(np.diff(mul) > 0)
    # spec rule e_mul ~ 0.2 (a/8)(w/8): within 5% at 16 bit; 1-bit add ~ 0.004 pJ
    assert e_mul(16, 16) == pytest.approx(0.8, rel=0.05)
    assert e_add(1) == pytest.approx(0.004, abs=0.0015)


def test_kernel_ordering_int8():
    mac, adder, xnor = e_mac(8, 8), e_adder_kernel(8, 8), e_xnor_popcount()
    assert xnor < adder < mac
    # spec §1.1: adder kernel saves 61-74% of a MAC at int8
    assert 0.55 <= 1 - adder / mac <= 0.75


def test_anchors_are_overridable():
    h = HorowitzAnchors(int_mul_8=0.4)
    assert e_mul(8, 8, anchors=h) == pytest.approx(0.4)
    assert e_mul(32, 32, anchors=h) == pytest.approx(3.1)
