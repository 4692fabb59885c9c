"""Gradients of the rasterizer w.r.t. colours (RGB and opacity), widths and control points against
central finite differences of its own output, for one shared ink (the all-black start of a run) and for
mixed inks; and the colour optimisation's first step from all-black strokes."""

import pytest
import torch

from clipasso.optimize.style import StyleState
from clipasso.render.raster import rasterize

H = W = 32
# 2 candidates x 3 strokes of one cubic each: one curve under symmetries of the square canvas and small
# shifts, so that every stroke is flattened into the same number of pieces and the dense reference (one
# count for all strokes) samples exactly as the tiled renderer does
_BASE = torch.tensor([[4.37, 6.13], [12.2, 2.4], [18.7, 25.3], [27.6, 20.2]], dtype=torch.float64)


def _moved(k, dx, dy):
    x, y = _BASE[:, 0] - W / 2, _BASE[:, 1] - H / 2
    u, v = [(x, y), (-y, x), (-x, -y), (y, -x), (-x, y), (y, x)][k]
    return torch.stack([u + W / 2 + dx, v + H / 2 + dy], 1)


_MOVES = [(0, 0, 0), (1, 0.3, -0.6), (4, -0.7, 0.2), (2, 0.1, 0.45), (5, -0.35, 0.8), (3, 0.55, -0.25)]
POINTS = torch.stack([_moved(*m) for m in _MOVES]).view(2, 3, 4, 2)
WIDTHS = torch.tensor([[1.37, 2.21, 1.13], [1.71, 0.93, 2.47]], dtype=torch.float64)
OPACITY = torch.tensor([[0.8, 0.7, 0.9], [0.6, 0.95, 0.75]], dtype=torch.float64)[..., None]
INKS = {
    "black": torch.zeros(2, 3, 3, dtype=torch.float64),
    "red": torch.tensor([0.9, 0.1, 0.2], dtype=torch.float64).expand(2, 3, 3),
    "mixed": torch.tensor(
        [[[0.9, 0.1, 0.2], [0.1, 0.3, 0.9], [0.2, 0.7, 0.3]], [[0.5, 0.5, 0.1], [0.0, 0.0, 0.0], [0.8, 0.2, 0.6]]],
        dtype=torch.float64,
    ),
}
G = torch.Generator().manual_seed(0)
IMG_WEIGHTS = torch.rand(2, 3, H, W, dtype=torch.float64, generator=G) - 0.5
ALPHA_WEIGHTS = torch.rand(2, H, W, dtype=torch.float64, generator=G) - 0.5


def _loss(points, widths, colors, backend, background):
    img, alpha = rasterize(points, widths, colors, H, W, background=background, backend=backend)
    return (img * IMG_WEIGHTS.to(img.dtype)).sum() + (alpha * ALPHA_WEIGHTS.to(alpha.dtype)).sum()


def _grads(points, widths, colors, backend, background):
    args = [t.detach().clone().requires_grad_(True) for t in (points, widths, colors)]
    grads = torch.autograd.grad(_loss(*args, backend, background), args)
    return dict(zip(("points", "widths", "colors"), grads))


def _fd(points, widths, colors, backend, background, name, idx, eps):
    args = {"points": points, "widths": widths, "colors": colors}
    out = torch.zeros(len(idx), dtype=torch.float64)
    for n, i in enumerate(idx):
        vals = []
        for sign in (1, -1):
            a = {k: v.detach().clone() for k, v in args.items()}
            a[name].view(-1)[i] += sign * eps
            with torch.no_grad():
                vals.append(float(_loss(a["points"], a["widths"], a["colors"], backend, background)))
        out[n] = (vals[0] - vals[1]) / (2 * eps)
    return out


def _rel_err(analytic, numeric):
    """Largest difference relative to the largest derivative (tiny derivatives have no relative scale)."""
    return float((analytic - numeric).abs().max() / numeric.abs().max().clamp_min(1e-12))


# a few control points: inner and end points of several strokes of both candidates (x and y)
POINT_IDX = [0, 3, 5, 10, 17, 26, 31, 34, 40, 47]


@pytest.mark.parametrize("background", [(1.0, 1.0, 1.0), (0.3, 0.5, 0.7), None], ids=["white", "grey", "none"])
@pytest.mark.parametrize("ink", sorted(INKS))
def test_tiled_gradients_match_finite_differences_and_the_dense_reference(ink, background):
    colors = torch.cat([INKS[ink], OPACITY], -1)
    got = _grads(POINTS, WIDTHS, colors, "torch", background)
    dense = _grads(POINTS, WIDTHS, colors, "dense", background)
    errs = {}
    for name, idx in (("colors", range(colors.numel())), ("widths", range(WIDTHS.numel())), ("points", POINT_IDX)):
        idx = list(idx)
        numeric = _fd(POINTS, WIDTHS, colors, "torch", background, name, idx, eps=1e-6)
        analytic = got[name].reshape(-1)[idx]
        assert numeric.abs().max() > 1e-3, name  # the check is not vacuous
        errs[name] = _rel_err(analytic, numeric)
        torch.testing.assert_close(got[name], dense[name], atol=1e-9, rtol=1e-7)
    assert max(errs.values()) < 1e-5, errs
    # every stroke's colour is reached: the RGB gradient of no stroke is zero
    assert (got["colors"][..., :3].abs().sum(-1) > 1e-3).all(), got["colors"]


@pytest.mark.parametrize("ink", sorted(INKS))
def test_shortcut_picture_is_unchanged_when_colours_need_gradients(ink):
    """One shared ink draws the same bits whether or not the colours are being optimised."""
    colors = torch.cat([INKS[ink], OPACITY], -1)
    plain = rasterize(POINTS, WIDTHS, colors, H, W)
    with_grad = rasterize(POINTS, WIDTHS, colors.clone().requires_grad_(True), H, W)
    for a, b in zip(plain, with_grad):
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize("ink", sorted(INKS))
def test_diffvg_colour_gradients_match_finite_differences(pydiffvg, ink):
    # diffvg samples coverage, so only the colours (on which its picture depends smoothly) are checked
    # against its own finite differences; float32 with a wide step (the picture is linear in RGB)
    colors = torch.cat([INKS[ink], OPACITY], -1).float()
    pts, wid = POINTS.float(), WIDTHS.float()
    got = _grads(pts, wid, colors, "diffvg", (1.0, 1.0, 1.0))["colors"].double().reshape(-1)
    numeric = _fd(pts, wid, colors, "diffvg", (1.0, 1.0, 1.0), "colors", range(colors.numel()), eps=1e-2)
    assert _rel_err(got, numeric) < 2e-2
    ours = _grads(POINTS, WIDTHS, colors.double(), "torch", (1.0, 1.0, 1.0))["colors"].reshape(-1)
    assert torch.nn.functional.cosine_similarity(got, ours, dim=0) > 0.95


def test_colour_optimisation_moves_every_strokes_colour_on_its_first_step():
    """From all-black strokes towards a white target, the first Adam step lightens every stroke."""
    colors = torch.cat([torch.zeros(2, 3, 3, dtype=torch.float64), OPACITY], -1)
    style = StyleState(WIDTHS, colors, optimize_color=True)
    opt = torch.optim.Adam(style.param_groups())
    img, _ = rasterize(POINTS, style.widths, style.colors(), H, W)
    ((img - 1) ** 2).mean().backward()
    opt.step()
    style.project()
    rgb = style.colors()[..., :3].detach()
    assert (rgb > 0).all(), rgb  # every stroke of every candidate moved, not candidate 0's stroke 0 alone
