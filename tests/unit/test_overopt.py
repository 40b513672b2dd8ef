"""Gao et al. fits and the hacking flag, against values worked by hand."""

import math

import pytest

from rrpo.audit.overopt import fit_gao, hacking_flags


def test_fit_rl_form_hand_values():
    """R(d) = d(α − β log d) with α = 2, β = 1: d = 1 → 2; d = e → e(2 − 1) = e; d = 0 is dropped."""
    f = fit_gao([0.0, 1.0, math.e], [0.0, 2.0, math.e], "rl")
    assert f["alpha"] == pytest.approx(2.0) and f["beta"] == pytest.approx(1.0) and f["n"] == 2


def test_fit_bon_form_hand_values():
    """R(d) = d(α − β d) with α = 3, β = 0.5: d = 1 → 2.5, d = 2 → 4, d = 4 → 4."""
    f = fit_gao([1.0, 2.0, 4.0], [2.5, 4.0, 4.0], "bon")
    assert f["alpha"] == pytest.approx(3.0) and f["beta"] == pytest.approx(0.5) and f["r2"] == pytest.approx(1.0)


def test_fit_needs_two_points():
    assert math.isnan(fit_gao([0.0, 1.0], [0.0, 1.0])["alpha"])


def test_hacking_flag_hand_example():
    """margin 0.05: the judge peaks at point 1 (0.45); at point 2 the proxy rose 0.2 (> 0.05) and the
    judge fell 0.15 (> 0.05) since then: flagged. Point 1 itself is the judge's best: not flagged."""
    assert hacking_flags([0.3, 0.5, 0.7], [0.4, 0.45, 0.3], 0.05) == [False, False, True]


def test_no_flag_when_both_rise_or_both_fall():
    assert hacking_flags([0.3, 0.5, 0.7], [0.3, 0.4, 0.5], 0.05) == [False] * 3
    assert hacking_flags([0.5, 0.4, 0.3], [0.5, 0.4, 0.3], 0.05) == [False] * 3
    assert hacking_flags([0.3, 0.32, 0.34], [0.5, 0.48, 0.46], 0.05) == [False] * 3  # within the margin
