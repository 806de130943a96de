"""tools/ab_paired.py: the interval it reports, and a whole run of two worker processes."""

import numpy as np
import pytest
from helpers import ROOT, load_script


def load_tool():
    return load_script("tools/ab_paired.py")


def test_median_interval_brackets_the_median():
    tool = load_tool()
    rng = np.random.default_rng(1)
    ratios = rng.normal(1.0, 0.05, 400)
    lo, hi = tool.median_interval(ratios, np.random.default_rng(0))
    assert lo < np.median(ratios) < hi
    assert hi - lo < 0.03                      # ~2 x 1.25 x 0.05 / sqrt(400) x 1.96
    assert tool.median_interval(np.full(50, 1.25), np.random.default_rng(0)) == (1.25, 1.25)


@pytest.mark.slow
def test_same_tree_twice(capsys):
    """Both processes of a session and both sessions run; the same tree gives identical logits."""
    tool = load_tool()
    assert tool.main([str(ROOT), str(ROOT), "--nets", "mobilenet", "--pairs", "3", "--block", "1",
                      "--warmup", "1"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mobilenet")]
    assert len(row) == 1
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    a_ms, b_ms, ratio = float(cells[3]), float(cells[4]), float(cells[5])
    assert a_ms > 0 and b_ms > 0 and ratio > 0
    assert cells[8] == "3" and float(cells[9]) == 0.0
