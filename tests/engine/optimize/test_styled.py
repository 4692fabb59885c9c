"""Styled strokes: bounded per-stroke width/opacity/colour optimisation, colours from the picture, pen."""

from __future__ import annotations

import pytest
import torch

from clipasso.optimize import OptimizeConfig, optimize
from clipasso.render.raster import render
from clipasso.strokes import Strokes
from clipasso.optimize.style import StyleError, colors_from_image, with_pen
from clipasso.settings import SettingsError

SIZE = 96


def _target():
    t = torch.ones(3, SIZE, SIZE)
    t[:, 20:76, 20:24] = 0.0  # a dark L
    t[:, 72:76, 20:76] = 0.0
    t[0, 35:60, 40:65], t[1:, 35:60, 40:65] = 0.8, 0.1  # a red square
    return t


def _strokes(n=5, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    start = 20 + torch.rand(b, n, 1, 2, generator=g) * (SIZE - 40)
    pts = start + torch.randn(b, n, 4, 2, generator=g) * 8
    return Strokes.from_points(pts, (SIZE, SIZE), width=1.5, seeds=list(range(b)))


def _run(encoder, strokes, **kw):
    cfg = dict(iterations=3, num_augs=0, eval_interval=1)
    cfg.update(kw)
    return optimize(strokes, _target(), encoder, OptimizeConfig(**cfg))


def test_widths_and_opacities_are_optimised_within_bounds(tiny_rn):
    start = _strokes()
    # big steps, so the bounds are reached and must hold
    run = _run(tiny_rn, start, optimize_width=True, optimize_opacity=True, width_lr=2.0, opacity_lr=0.5)
    for s in (run.final, run.strokes):
        assert not torch.allclose(s.widths, start.widths)
        assert not torch.allclose(s.colors[..., 3], start.colors[..., 3])
        assert float(s.widths.min()) >= 0.5 - 1e-6 and float(s.widths.max()) <= 4.0 + 1e-6
        assert float(s.colors[..., 3].min()) >= 0.05 - 1e-6 and float(s.colors[..., 3].max()) <= 1.0 + 1e-6
    assert float(run.final.widths.max()) == pytest.approx(4.0) or float(run.final.widths.min()) == pytest.approx(0.5)
    # the RGB stays black when only width and opacity are optimised
    assert torch.equal(run.final.colors[..., :3], start.colors[..., :3])
    # the best state keeps its own widths and opacities: its loss is the loss of what it draws
    from clipasso.objective.losses import CLIPassoLoss

    with torch.no_grad():
        again = CLIPassoLoss(tiny_rn, _target(), num_augs=0).eval_loss(render(run.strokes).image)["total"]
    assert torch.allclose(again, run.strokes.losses, rtol=1e-4, atol=1e-6)


def test_custom_bounds_hold(tiny_rn):
    run = _run(
        tiny_rn,
        _strokes(b=1),
        optimize_width=True,
        width_lr=3.0,
        width_range=(1.0, 1.2),
        optimize_opacity=True,
        opacity_lr=1.0,
        min_opacity=0.5,
        iterations=1,
    )
    assert float(run.final.widths.min()) >= 1.0 - 1e-6 and float(run.final.widths.max()) <= 1.2 + 1e-6
    assert float(run.final.colors[..., 3].min()) >= 0.5 - 1e-6


def test_without_style_flags_widths_and_colours_stay(tiny_rn):
    start = _strokes(b=1)
    run = _run(tiny_rn, start, iterations=1)
    assert torch.equal(run.final.widths, start.widths) and torch.equal(run.final.colors, start.colors)
    assert not torch.equal(run.final.points, start.points)


def test_colours_from_the_picture():
    pts = torch.tensor(
        [
            [
                [[42.0, 40], [50, 45], [56, 50], [62, 55]],  # inside the red square
                [[21.0, 25], [21.5, 40], [22, 55], [22, 70]],  # along the dark bar
                [[85.0, 5], [88, 8], [90, 10], [92, 12]],
            ]
        ]
    )  # on white paper only
    s = Strokes.from_points(pts, (SIZE, SIZE), color=(0.2, 0.3, 0.9, 0.7))
    c = colors_from_image(s, _target()).colors[0]
    assert c[0, 0] > 0.7 and c[0, 1] < 0.2 and c[0, 2] < 0.2  # red
    assert float(c[1, :3].max()) < 0.1  # black, not washed out by the paper
    assert torch.allclose(c[2], torch.tensor([0.2, 0.3, 0.9, 0.7]))  # no ink under it: own colour kept
    assert torch.allclose(c[:, 3], torch.full((3,), 0.7))  # opacity kept
    # a picture of another size is resized to the canvas first
    big = torch.nn.functional.interpolate(_target()[None], size=(192, 192), mode="nearest")[0]
    assert torch.allclose(colors_from_image(s, big).colors[0, 0], c[0], atol=0.05)


def test_colour_from_image_and_colour_optimisation(tiny_rn):
    start = _strokes(b=1, seed=4)
    picked = colors_from_image(start, _target())
    run = _run(tiny_rn, start, color_from_image=True, iterations=1)
    assert torch.allclose(run.final.colors, picked.colors, atol=1e-6)  # one step, colours not optimised
    run = _run(tiny_rn, start, color_from_image=True, optimize_color=True, color_lr=0.3, iterations=2)
    assert not torch.allclose(run.final.colors[..., :3], picked.colors[..., :3])
    assert float(run.final.colors.min()) >= 0 and float(run.final.colors.max()) <= 1


def test_pen_gives_uniform_widths(tiny_rn):
    start = _strokes(b=1)
    penned = with_pen(start, 5.0)
    assert torch.all(penned.widths == 2.5) and torch.equal(penned.points, start.points)
    # the pen wins over optimised widths in the output
    run = _run(tiny_rn, start, optimize_width=True, width_lr=1.0, pen_width=2.0, iterations=1)
    assert torch.all(run.strokes.widths == 1.0) and torch.all(run.final.widths == 1.0)
    # without width optimisation the run draws with the pen from the start
    run = _run(tiny_rn, start.replace(widths=torch.rand(1, 5) * 3 + 0.5), pen_width=4.0, iterations=1)
    assert torch.all(run.strokes.widths == 2.0)
    # rendered: every stroke as thick as the pen; a thicker pen inks more
    assert float(render(with_pen(start, 6.0)).alpha.sum()) > 1.5 * float(render(with_pen(start, 2.0)).alpha.sum())


def test_svg_keeps_per_stroke_width_colour_and_opacity():
    svg = pytest.importorskip("clipasso.output.svg")
    s = _strokes(b=1)
    styled = s.replace(
        widths=torch.tensor([[0.5, 1.25, 2.0, 3.5, 4.0]]),
        colors=torch.tensor(
            [[[1.0, 0, 0, 1], [0, 0.5, 0, 0.3], [0, 0, 1, 0.05], [0.2, 0.2, 0.2, 0.8], [1, 1, 0, 0.55]]]
        ),
    )
    back = svg.read_svg(svg.to_svg(styled))
    assert torch.allclose(back.widths, styled.widths, atol=1e-3)
    assert torch.allclose(back.colors, styled.colors, atol=1 / 255 + 1e-3)
    assert torch.allclose(back.points, styled.points, atol=1e-3)
    pen = svg.read_svg(svg.to_svg(with_pen(styled, 3.0)))
    assert torch.allclose(pen.widths, torch.full((1, 5), 1.5))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(pen_width=0.0), "pen_width must be above 0"),
        (dict(pen_width=float("inf")), "pen_width must be a finite number"),
        (dict(optimize_width=True, width_range=(2.0, 1.0)), "width range"),
        (dict(optimize_width=True, width_range=(0.0, 1.0)), "width range"),
        (dict(optimize_opacity=True, min_opacity=0.0), "min_opacity"),
        (dict(optimize_width=True, width_lr=-1.0), "width_lr must be above 0"),
    ],
)
def test_bad_style_settings(tiny_rn, kw, match):
    with pytest.raises(SettingsError, match=match):
        _run(tiny_rn, _strokes(b=1), iterations=0, **kw)


def test_bad_style_inputs():
    s = _strokes(b=1)
    with pytest.raises(SettingsError, match="pen width must be above 0"):
        with_pen(s, -2)
    with pytest.raises(StyleError, match=r"RGB \[3,H,W\]"):
        colors_from_image(s, torch.ones(1, SIZE, SIZE))
    with pytest.raises(StyleError, match="0..1"):
        colors_from_image(s, torch.full((3, SIZE, SIZE), 2.0))


def test_cli_style_flags(tiny_models_dir, tmp_path, capsys):
    from PIL import Image

    from clipasso.cli import main

    img = Image.new("RGB", (120, 120), "white")
    img.paste((200, 30, 30), (30, 30, 90, 90))
    src = tmp_path / "red.png"
    img.save(src)
    svg, png = tmp_path / "s.svg", tmp_path / "s.png"
    rc = main(
        [
            "sketch",
            str(src),
            "-o",
            str(svg),
            "--png",
            str(png),
            "--png-size",
            "300",
            "--models-dir",
            tiny_models_dir,
            "--iterations",
            "2",
            "--strokes",
            "3",
            "--seeds",
            "1",
            "--no-background-removal",
            "--device",
            "cpu",
            "--offline",
            "--saliency",
            "none",
            "-q",
            "--lr",
            "1.0",
            "--optimize-width",
            "--optimize-opacity",
            "--color-from-image",
            "--pen-width",
            "2.5",
            "--text",
            "a red square",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "text guidance: 'a red square' (weight 0.3)" in out
    assert "styled strokes: optimize width, optimize opacity, color from image, pen 2.5 px" in out
    text = svg.read_text()
    assert text.count('stroke-width="2.5"') == 3
    with Image.open(png) as im:
        assert im.size == (300, 300)
