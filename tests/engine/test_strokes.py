"""The stroke type: validation, immutability, candidate handling."""

import dataclasses

import pytest
import torch

from clipasso.strokes import StrokeError, Strokes


def make(b=2, s=3, p=4, canvas=(64, 48)):
    return Strokes(torch.rand(b, s, p, 2) * 40, torch.full((b, s), 1.5), torch.rand(b, s, 4), canvas)


@pytest.mark.parametrize(
    "points,match",
    [
        (torch.zeros(2, 3, 4), r"\[B, S, P, 2\]"),
        (torch.zeros(1, 3, 4, 3), r"\[B, S, P, 2\]"),
        (torch.zeros(0, 3, 4, 2), "at least one candidate"),
        (torch.zeros(1, 0, 4, 2), "at least one stroke"),
        (torch.zeros(1, 2, 5, 2), "1 \\+ 3k"),
        (torch.zeros(1, 2, 1, 2), "1 \\+ 3k"),
    ],
)
def test_bad_point_shapes(points, match):
    with pytest.raises(StrokeError, match=match):
        Strokes(points, torch.ones(1), torch.zeros(4), (10, 10))


def test_bad_values_and_sizes():
    pts = torch.rand(1, 2, 4, 2)
    bad = pts.clone()
    bad[0, 1, 2, 0] = float("nan")
    with pytest.raises(StrokeError, match="NaN"):
        Strokes(bad, torch.ones(1, 2), torch.zeros(1, 2, 4), (8, 8))
    with pytest.raises(StrokeError, match="infinity"):
        Strokes(pts, torch.tensor([[1.0, float("inf")]]), torch.zeros(1, 2, 4), (8, 8))
    with pytest.raises(StrokeError, match="positive half-widths"):
        Strokes(pts, torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2, 4), (8, 8))
    with pytest.raises(StrokeError, match="0..1"):
        Strokes(pts, torch.ones(1, 2), torch.full((1, 2, 4), 1.5), (8, 8))
    with pytest.raises(StrokeError, match="canvas size must be positive"):
        Strokes(pts, torch.ones(1, 2), torch.zeros(1, 2, 4), (0, 8))
    with pytest.raises(StrokeError, match="canvas"):
        Strokes(pts, torch.ones(1, 2), torch.zeros(1, 2, 4), "big")
    with pytest.raises(StrokeError, match="widths must have shape"):
        Strokes(pts, torch.ones(3, 2), torch.zeros(1, 2, 4), (8, 8))
    with pytest.raises(StrokeError, match="colors must have shape"):
        Strokes(pts, torch.ones(1, 2), torch.zeros(1, 2, 5), (8, 8))
    with pytest.raises(StrokeError, match="one value per candidate"):
        Strokes(pts, torch.ones(1, 2), torch.zeros(1, 2, 4), (8, 8), losses=torch.ones(3))
    with pytest.raises(StrokeError, match="seeds"):
        Strokes(pts, torch.ones(1, 2), torch.zeros(1, 2, 4), (8, 8), seeds=(1, 2))


def test_broadcasting_of_widths_and_colours():
    s = Strokes(torch.rand(2, 3, 7, 2), 2.0, [0.1, 0.2, 0.3], (16, 16))
    assert s.widths.shape == (2, 3) and float(s.widths.max()) == 2.0
    assert s.colors.shape == (2, 3, 4) and torch.equal(s.colors[1, 2], torch.tensor([0.1, 0.2, 0.3, 1.0]))
    assert (s.num_candidates, s.num_strokes, s.num_segments, s.height, s.width) == (2, 3, 2, 16, 16)
    one = Strokes(torch.rand(5, 4, 2), 1.0, torch.zeros(4), (9, 9))  # a single candidate [S, P, 2]
    assert one.points.shape == (1, 5, 4, 2)


def test_from_points_uses_the_paper_pen():
    s = Strokes.from_points(torch.rand(3, 4, 2) * 10, (32, 32))
    assert torch.equal(s.widths, torch.full((1, 3), 1.5))
    assert torch.equal(s.colors, torch.tensor([0, 0, 0, 1.0]).expand(1, 3, 4))


def test_frozen_and_replace_validates_again():
    s = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.points = torch.zeros(1)
    t = s.replace(widths=torch.full((2, 3), 2.5))
    assert float(t.widths[0, 0]) == 2.5 and float(s.widths[0, 0]) == 1.5
    with pytest.raises(StrokeError):
        s.replace(widths=torch.full((2, 3), -1.0))


def test_select_concat_scaled_detach():
    s = make(b=3).replace(losses=torch.tensor([3.0, 1.0, 2.0]), seeds=(0, 1000, 2000))
    best = s.select(1)
    assert best.num_candidates == 1 and best.seeds == (1000,) and float(best.losses[0]) == 1.0
    assert torch.equal(best.points[0], s.points[1])
    assert s.select(-1).seeds == (2000,)
    assert s.select([2, 0]).seeds == (2000, 0)
    with pytest.raises(StrokeError, match="does not exist"):
        s.select(3)
    with pytest.raises(StrokeError, match="empty"):
        s.select(slice(5, 9))
    joined = Strokes.concat([s.select(0), s.select(2)])
    assert joined.seeds == (0, 2000) and joined.num_candidates == 2
    with pytest.raises(StrokeError, match="share canvas"):
        Strokes.concat([s, make(canvas=(10, 10))])
    big = s.scaled(128, 96)
    assert big.canvas == (128, 96)
    torch.testing.assert_close(big.points, s.points * 2)
    torch.testing.assert_close(big.widths, s.widths * 2)
    pts = s.points.clone().requires_grad_(True)
    d = s.replace(points=pts * 1).detach()
    assert not d.points.requires_grad


def test_repr_is_short_and_informative():
    s = make(b=20).replace(losses=torch.arange(20.0), seeds=tuple(range(20)))
    text = repr(s)
    assert text.startswith("Strokes(candidates=20, strokes=3, segments=1, canvas=64x48")
    assert len(text) < 300


def test_cpu_and_device_moves_keep_values():
    s = make()
    c = s.to("cpu")
    assert torch.equal(c.points, s.points) and c.canvas == s.canvas
    if torch.cuda.is_available():
        g = s.to("cuda")
        assert g.device.type == "cuda" and torch.equal(g.cpu().points, s.points)
