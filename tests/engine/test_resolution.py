"""Higher resolution: vector output at any size, and a working canvas larger than the encoder's input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipasso.objective.losses import CLIPassoLoss
from clipasso.optimize import OptimizeConfig, optimize
from clipasso.render.raster import render
from clipasso.strokes import Strokes


def _strokes(size=224, n=6, seed=0, b=1):
    g = torch.Generator().manual_seed(seed)
    start = size * 0.2 + torch.rand(b, n, 1, 2, generator=g) * size * 0.6
    pts = start + torch.randn(b, n, 4, 2, generator=g) * size * 0.08
    return Strokes.from_points(pts, (size, size), width=1.5 * size / 224)


def _target(size=224):
    t = torch.ones(3, size, size)
    a, b, w = int(size * 0.25), int(size * 0.75), max(2, size // 50)
    t[:, a:b, a : a + w] = 0.0
    t[:, b - w : b, a:b] = 0.0
    return t


def _ink_centroid(alpha):
    h, w = alpha.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    m = alpha.sum()
    return torch.stack([(alpha * xs).sum() / m, (alpha * ys).sum() / m])


@pytest.mark.parametrize("factor", [2, 4])
def test_render_at_any_size_is_the_same_drawing(factor):
    s = _strokes()
    small = render(s).alpha[0]
    big = render(s, size=(224 * factor, 224 * factor)).alpha[0]
    assert big.shape == (224 * factor, 224 * factor)
    # the same as drawing the scaled strokes on the big canvas (points and widths scale)
    scaled = s.scaled(224 * factor, 224 * factor)
    assert torch.allclose(scaled.points, s.points * factor) and torch.allclose(scaled.widths, s.widths * factor)
    assert torch.allclose(render(scaled).alpha[0], big)
    # box-averaged back to the canvas it matches the canvas render: no quality is lost, only gained
    down = F.avg_pool2d(big[None, None], factor)[0, 0]
    assert float((down - small).abs().mean()) < 0.01
    assert float(down.sum()) == pytest.approx(float(small.sum()), rel=0.03)
    # ink sits in the same place, in the big frame's units
    assert torch.allclose(_ink_centroid(big), _ink_centroid(small) * factor, atol=0.05 * factor)


def test_render_at_another_aspect_ratio_keeps_strokes_inside():
    s = _strokes()
    out = render(s, size=(224, 448)).alpha[0]
    assert out.shape == (224, 448)
    c = _ink_centroid(out)
    ref = _ink_centroid(render(s).alpha[0])
    assert abs(float(c[0]) - 2 * float(ref[0])) < 1.0 and abs(float(c[1]) - float(ref[1])) < 1.0


def test_loss_downsamples_a_larger_canvas_to_the_encoder_size(tiny_rn):
    small, big = CLIPassoLoss(tiny_rn, _target(224), num_augs=2), CLIPassoLoss(tiny_rn, _target(448), num_augs=2)
    assert small.work_size == (224, 224) and big.work_size == (224, 224)
    assert CLIPassoLoss(tiny_rn, _target(96), num_augs=0).work_size == (96, 96)  # smaller: as before
    s = _strokes(224)
    with torch.no_grad():
        l_small = small.eval_loss(render(s).image)["total"]
        l_big = big.eval_loss(render(s.scaled(448, 448)).image)["total"]
    # the same drawing at twice the resolution costs about the same (antialiased downsampling)
    assert float(l_big) == pytest.approx(float(l_small), rel=0.15)
    # the loss is differentiable through the downsampling, with augmented views too
    from clipasso.render.raster import rasterize

    s2 = s.scaled(448, 448)
    pts = s2.points.clone().requires_grad_(True)
    img = rasterize(pts, s2.widths, s2.colors, 448, 448)[0]
    big.train_loss(img, [torch.Generator().manual_seed(0)])["total"].sum().backward()
    assert pts.grad is not None and float(pts.grad.abs().sum()) > 0


def test_optimise_on_a_448_canvas(tiny_rn):
    start = _strokes(448)
    run = optimize(start, _target(448), tiny_rn, OptimizeConfig(iterations=2, num_augs=1, eval_interval=1))
    assert run.strokes.canvas == (448, 448)
    assert not torch.equal(run.final.points, start.points)
    assert torch.isfinite(run.strokes.losses).all()


def test_pipeline_and_cli_with_a_larger_canvas_and_png_size(tiny_models_dir, tmp_path):
    from PIL import Image

    from clipasso.cli import main

    img = Image.new("RGB", (100, 80), "white")
    img.paste((0, 0, 0), (20, 20, 80, 26))
    src = tmp_path / "bar.png"
    img.save(src)
    svg, png = tmp_path / "hi.svg", tmp_path / "hi.png"
    rc = main(
        [
            "sketch",
            str(src),
            "-o",
            str(svg),
            "--png",
            str(png),
            "--png-size",
            "640",
            "--canvas",
            "320",
            "--models-dir",
            tiny_models_dir,
            "--iterations",
            "1",
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
        ]
    )
    assert rc == 0  # paper frames as the original (stretch): the 100x80 picture's sketch comes back 5:4
    assert 'viewBox="0 0 320 256"' in svg.read_text()
    with Image.open(png) as im:  # --png-size is the long side
        assert im.size == (640, 512)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--png-size", "0"], "--png-size must be between"),
        (["--canvas", "16"], "--canvas must be between"),
        (["--pen-width", "-1"], "--pen-width must be"),
    ],
)
def test_cli_rejects_bad_sizes(tmp_path, capsys, flags, message):
    from clipasso.cli import main

    with pytest.raises(SystemExit):
        main(["sketch", "-o", str(tmp_path / "x.svg")] + flags)
    assert message in capsys.readouterr().err


def test_bad_render_size():
    with pytest.raises(ValueError, match="render size must be positive"):
        render(_strokes(), size=(0, 100))
