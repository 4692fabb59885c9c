"""clipasso.report.metrics on hand-computable cases."""

from __future__ import annotations

import pytest
import torch

from clipasso.report.metrics import (
    MetricError,
    boundary,
    dilate,
    disk,
    edge_map,
    fscore,
    ink_map,
    mask_coverage,
    sketch_fidelity,
)

N = 224


def hline(row, c0, c1, size=N):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[row, c0:c1] = True
    return m


def test_disk_and_dilate():
    assert disk(1).sum() == 5 and disk(1.5).sum() == 9 and disk(3).sum() == 29
    d = dilate(hline(100, 50, 51), 3)[0]
    assert d.sum() == 29 and d[103, 50] and not d[104, 50] and d[102, 52] and not d[103, 51]


def test_identical_maps_score_one():
    e = hline(100, 20, 200)
    out = fscore(e, e)
    assert out["precision"].item() == out["recall"].item() == out["f"].item() == 1.0


def test_tolerance_is_three_pixels():
    edges = hline(100, 20, 200)
    for row, expect in ((103, 1.0), (104, 0.0)):  # 3 px away: matched; 4 px: not
        out = fscore(hline(row, 20, 200), edges)
        assert out["precision"].item() == expect and out["recall"].item() == expect and out["f"].item() == expect


def test_partial_overlap_by_hand():
    edges = hline(100, 0, 100)  # 100 edge pixels
    ink = hline(100, 0, 50)  # 50 ink pixels, all on the edge
    out = fscore(ink, edges)
    # ink reaches edge pixels up to column 49 + 3 = 52: 53 of 100 edge pixels are recalled
    assert out["precision"].item() == 1.0
    assert out["recall"].item() == pytest.approx(0.53)
    assert out["f"].item() == pytest.approx(2 * 0.53 / 1.53)
    # half the ink far away: precision 0.5
    ink2 = hline(100, 0, 50) | hline(150, 0, 50)
    assert fscore(ink2, edges)["precision"].item() == pytest.approx(0.5)


def test_empty_conventions_and_batches():
    empty = torch.zeros(N, N, dtype=torch.bool)
    e = hline(10, 10, 20)
    assert fscore(empty, e)["f"].item() == 0.0 and fscore(e, empty)["f"].item() == 0.0
    assert fscore(empty, empty)["f"].item() == 1.0
    batch = torch.stack([e, hline(50, 10, 20), empty])
    out = fscore(batch, e)
    assert out["f"].tolist() == [1.0, 0.0, 0.0]


def test_maps_are_compared_at_224():
    big = torch.zeros(448, 448, dtype=torch.bool)
    big[200:202, 40:400] = True  # a 2 px line at 448 is a 1 px line at 224
    small = hline(100, 20, 200)
    assert fscore(big, small)["f"].item() == pytest.approx(1.0)
    with pytest.raises(MetricError):
        fscore(torch.zeros(2, 3, 4, 5), small)


def test_mask_coverage_and_boundary():
    mask = torch.zeros(N, N, dtype=torch.bool)
    mask[50:150, 50:150] = True  # 100 x 100 square
    b = boundary(mask)[0]
    assert b.sum() == 4 * 99 and b[50, 70] and not b[51, 70]
    ink = hline(100, 50, 150)  # a line across the middle
    # rows 92..108 lie within 8 px of the line (inside the square): 17 of 100 rows
    assert mask_coverage(ink, mask, radius=8).item() == pytest.approx(0.17)
    assert mask_coverage(ink, torch.zeros(N, N), radius=8).item() == 0.0


def test_ink_map_edge_map_and_fidelity():
    img = torch.ones(3, N, N)
    img[:, 60:160, 60:160] = 0.0  # a black square (a silhouette)
    mask = img[0] < 0.5
    edges = edge_map(img, mask, method="mask")
    assert torch.equal(edges, boundary(mask)[0])
    for method in ("xdog", "canny"):
        e = edge_map(img, None, method=method)
        assert e.sum() > 300 and not e[110, 110]  # the outline, not the inside
        assert fscore(e, edges, tolerance=3)["f"].item() > 0.9
    sketch = torch.ones(2, 3, N, N)
    sketch[0, :, 59:62, 60:160] = 0.0  # the top side drawn
    out = sketch_fidelity(sketch, img, mask, edges=edges)
    assert out["precision"][0] == pytest.approx(1.0) and out["recall"][0] == pytest.approx(0.27, abs=0.03)
    assert out["f"][1] == 0.0 and out["coverage"][1] == 0.0 and out["on_object"][0] == pytest.approx(1.0)
    assert ink_map(sketch)[0].sum() == 300
    with pytest.raises(MetricError, match="unknown edge method"):
        edge_map(img, method="sobel")
