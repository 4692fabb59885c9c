"""Re-seeding collapsed strokes (clipasso.optimize.reseed_collapsed and the optimiser's reseed_* settings)."""

from __future__ import annotations

import pytest
import torch

from clipasso.optimize import OptimizeConfig, optimize, reseed_collapsed
from clipasso.render.raster import rasterize
from clipasso.strokes import Strokes
from clipasso.settings import SettingsError

SIZE = 96


def _two_bars():
    """Target with a dark bar on the left (x 20..24) and one on the right (x 70..74)."""
    t = torch.ones(3, SIZE, SIZE)
    t[:, 15:80, 20:24] = 0.0
    t[:, 15:80, 70:74] = 0.0
    return t


def _sketch(points):
    pts = torch.as_tensor(points, dtype=torch.float32)
    return Strokes.from_points(pts, (SIZE, SIZE), width=1.5)


def _left_bar_and_a_dot():
    # stroke 0 draws the left bar; stroke 1 has collapsed to a dot at the top left; stroke 2 is
    # a dot too but transparent (a stroke left out on purpose)
    left = [[22.0, 18.0], [22.0, 40.0], [22.0, 56.0], [22.0, 78.0]]
    dot = [[50.0, 8.0]] * 4
    return _sketch([[left, dot, dot]])


def test_a_collapsed_stroke_moves_to_the_ink_the_sketch_lacks():
    from clipasso.objective.losses import line_map

    sk = _left_bar_and_a_dot()
    colors = sk.colors.clone()
    colors[0, 2, 3] = 0.0
    image, _ = rasterize(sk.points, sk.widths, colors, SIZE, SIZE)
    ref = line_map(_two_bars())
    points = sk.points.clone()
    moved = reseed_collapsed(points, colors[..., 3], image, ref, [torch.Generator().manual_seed(0)], 3.0)
    assert moved == [1]
    assert torch.equal(points[0, 0], sk.points[0, 0])  # a real stroke stays
    assert torch.equal(points[0, 2], sk.points[0, 2])  # a transparent one is left out on purpose
    new = points[0, 1]
    assert float((new[1:] - new[:-1]).norm(dim=-1).sum()) >= 3.0  # no longer a dot
    centre = new.mean(0)
    assert 60 <= float(centre[0]) <= 84 and 10 <= float(centre[1]) <= 86  # on the right bar, not drawn yet


def test_adam_moments_of_a_moved_stroke_are_reset():
    sk = _left_bar_and_a_dot()
    points = sk.points.clone().requires_grad_(True)
    opt = torch.optim.Adam([points], lr=0.01)  # a tiny step: the dots stay dots
    points.grad = torch.randn_like(points)
    opt.step()
    state = opt.state[points]
    before = state["exp_avg_sq"].clone()
    image, _ = rasterize(points.detach(), sk.widths, sk.colors, SIZE, SIZE)
    from clipasso.objective.losses import line_map

    moved = reseed_collapsed(
        points, sk.colors[..., 3], image, line_map(_two_bars()), [torch.Generator().manual_seed(1)], 3.0, opt
    )
    assert moved == [2]  # both dots are visible here
    assert float(state["exp_avg"][0, 1:].abs().max()) == 0.0
    assert torch.allclose(state["exp_avg_sq"][0, 1], before[0, 0])  # the mean of the strokes that stayed
    assert torch.equal(state["exp_avg_sq"][0, 0], before[0, 0])


def test_optimiser_reseeds_under_the_trace_loss_and_reaches_a_lower_loss():
    sk = _left_bar_and_a_dot()
    cfg = dict(loss="trace", iterations=60, lr=0.5, eval_interval=5)
    off = optimize(sk, _two_bars(), None, OptimizeConfig(reseed_interval=0, **cfg))
    on = optimize(sk, _two_bars(), None, OptimizeConfig(reseed_interval=10, **cfg))
    assert off.reseeded == [0] and on.reseeded[0] >= 1
    assert float(on.strokes.losses[0]) < 0.8 * float(off.strokes.losses[0])
    again = optimize(sk, _two_bars(), None, OptimizeConfig(reseed_interval=10, **cfg))
    assert torch.equal(again.strokes.points, on.strokes.points)  # deterministic


def test_automatic_setting_follows_the_loss_and_is_validated():
    assert OptimizeConfig(loss="trace").reseed_every == 50
    assert OptimizeConfig(loss="clip+trace").reseed_every == 50
    assert OptimizeConfig().reseed_every == 0  # the paper's CLIP loss: never
    assert OptimizeConfig(reseed_interval=7).reseed_every == 7
    assert OptimizeConfig(loss="trace", reseed_interval=0).reseed_every == 0
    for bad in (
        dict(reseed_interval=-1),
        dict(reseed_interval=2.5),
        dict(reseed_min_length=0),
        dict(reseed_min_length=float("nan")),
        dict(reseed_until=1.5),
    ):
        with pytest.raises(SettingsError, match="reseed"):
            OptimizeConfig(**bad).validate()


def test_pipeline_and_cli_settings(tmp_path, capsys):
    from PIL import Image, ImageDraw

    from clipasso.cli import main
    from clipasso.pipeline import sketch

    im = Image.new("RGB", (120, 120), "white")
    ImageDraw.Draw(im).rectangle([20, 20, 100, 100], outline="black", width=4)
    common = dict(
        preset="fast",
        strokes=4,
        seeds=1,
        iterations=4,
        saliency="none",
        background_removal=False,
        device="cpu",
        loss="trace",
        allow_download=False,
    )
    assert sketch(im, **common).settings["reseed_interval"] == 50
    assert sketch(im, reseed_interval=2, **common).settings["reseed_interval"] == 2
    src = tmp_path / "sq.png"
    im.save(src)
    rc = main(
        [
            "sketch",
            str(src),
            "-o",
            str(tmp_path / "sq.svg"),
            "--loss",
            "trace",
            "--saliency",
            "none",
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
            "-q",
            "--reseed",
            "1",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sketch", str(src), "--loss", "trace", "--reseed", "-1"])
    assert "--reseed" in capsys.readouterr().err
