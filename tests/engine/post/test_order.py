"""clipasso.post.order (greedy drawing order, frames, animated SVG/GIF) with the tiny real open_clip ResNet."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import torch

from clipasso.post.abstraction import AbstractionError
from clipasso.optimize import OptimizeConfig
from clipasso.output.animation import animated_svg, drawing_frames, frames_to_gif, write_animated_svg
from clipasso.post.order import greedy_order, prefix_losses, reorder
from clipasso.strokes import Strokes
from tests.engine.post.test_abstraction import SIDE, seg, t_target

EVAL = OptimizeConfig(iterations=0, num_augs=1)
SVG = "{http://www.w3.org/2000/svg}"


def mixed_sketch():
    """Stroke 2 draws the T's bar; the others are short marks in empty corners of the picture."""
    pts = [seg(4, 90, 14, 92), seg(84, 4, 92, 10), seg(18, 21, 78, 21), seg(86, 88, 92, 80)]
    return Strokes.from_points(torch.tensor([pts]), (SIDE, SIDE), width=3.0)


@pytest.fixture(scope="module")
def greedy(tiny_rn):
    return greedy_order(mixed_sketch(), t_target(), tiny_rn, EVAL)


def test_greedy_order_draws_the_most_useful_stroke_first(tiny_rn, greedy):
    sk, target, res = mixed_sketch(), t_target(), greedy
    assert sorted(res.order) == [0, 1, 2, 3]
    assert res.order[0] == 2  # the bar of the T, not a mark in a corner
    assert res.prefix_losses.shape == (5,)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        perm = torch.randperm(4, generator=gen).tolist()
        rand = prefix_losses(sk, perm, target, tiny_rn, EVAL)
        assert float(res.prefix_losses[1]) <= float(rand[1]) + 1e-6
        # the empty canvas and the whole drawing do not depend on the order
        assert float(rand[0]) == pytest.approx(float(res.prefix_losses[0]), rel=1e-5)
        assert float(rand[4]) == pytest.approx(float(res.prefix_losses[4]), rel=1e-4)
    # the output strokes are the input strokes in that order, with the whole drawing's loss
    assert torch.equal(res.strokes.points[0], sk.points[0, res.order])
    assert float(res.strokes.losses[0]) == pytest.approx(float(res.prefix_losses[-1]))
    assert "added stroke" in res.table()


def test_each_greedy_prefix_is_the_best_extension(tiny_rn, greedy):
    """Step k picks, among the strokes left, the one whose addition gives the lowest loss."""
    sk, target, res = mixed_sketch(), t_target(), greedy
    placed = res.order[:1]
    left = [i for i in range(4) if i not in placed]
    from clipasso.post.abstraction import masked_losses

    rows = torch.zeros(len(left), 4, dtype=torch.bool)
    rows[:, placed] = True
    rows[torch.arange(len(left)), torch.tensor(left)] = True
    alternatives = masked_losses(sk, rows, target, tiny_rn, EVAL)
    assert float(res.prefix_losses[2]) <= float(alternatives.min()) + 1e-5
    assert left[int(alternatives.argmin())] == res.order[1]


def test_frames_show_the_drawing_being_made():
    from clipasso.render.raster import render

    sk = mixed_sketch()
    frames = drawing_frames(sk)
    assert frames.shape == (5, 3, SIDE, SIDE)
    assert float(frames[0].min()) == 1.0  # empty canvas first
    assert torch.allclose(frames[-1], render(sk).image[0], atol=1e-5)
    ink = [(1 - f).sum().item() for f in frames]
    assert all(b > a for a, b in zip(ink, ink[1:]))  # every stroke adds ink
    no_blank = drawing_frames(sk, size=(48, 48), include_blank=False)
    assert no_blank.shape == (4, 3, 48, 48)
    assert float(no_blank[0].min()) < 0.5


def test_animated_svg_is_xml_with_every_stroke_in_order():
    from clipasso.output.svg import read_svg

    sk = reorder(mixed_sketch(), [2, 0, 3, 1])
    for loop in (True, False):
        text = animated_svg(sk, stroke_seconds=0.25, hold_seconds=1.0, loop=loop)
        root = ET.fromstring(text)
        paths = list(root.iter(f"{SVG}path"))
        assert len(paths) == 4
        assert [p.get("data-order") for p in paths] == ["0", "1", "2", "3"]
        for i, p in enumerate(paths):
            anims = [a for a in p if a.tag in (f"{SVG}animate", f"{SVG}set")]
            assert any(a.get("attributeName") == "stroke-dashoffset" for a in anims)
            assert p.get("pathLength") == "1"
            if not loop:
                dash = [a for a in anims if a.get("attributeName") == "stroke-dashoffset"][0]
                assert float(dash.get("begin").rstrip("s")) == pytest.approx(0.25 * i)
    back = read_svg(text)  # the paths are still the sketch's strokes, in drawing order
    assert back.num_strokes == 4
    assert torch.allclose(back.points[0, :, 0], sk.points[0, :, 0], atol=1e-3)


def test_gif_and_svg_files(tmp_path):
    from PIL import Image

    sk = mixed_sketch()
    frames = drawing_frames(sk)
    gif = frames_to_gif(frames, tmp_path / "draw.gif", frame_ms=100, hold_ms=500)
    with Image.open(gif) as im:
        assert im.n_frames == 5
        im.seek(4)
        assert im.info["duration"] == 500
    svg = write_animated_svg(sk, tmp_path / "draw.svg")
    assert ET.parse(svg).getroot().tag == f"{SVG}svg"


def test_bad_inputs_are_clear_errors(tiny_rn):
    sk = mixed_sketch()
    with pytest.raises(AbstractionError, match="permutation"):
        reorder(sk, [0, 1, 1, 2])
    with pytest.raises(AbstractionError, match="stroke_seconds"):
        animated_svg(sk, stroke_seconds=0)
    with pytest.raises(AbstractionError, match="frames must be"):
        frames_to_gif(torch.zeros(0, 3, 8, 8), "x.gif")
    with pytest.raises(AbstractionError, match="Select Best"):
        greedy_order(Strokes.concat([sk, sk]), t_target(), tiny_rn, EVAL)
