"""The differentiable rasterizer against independent computations."""

import math

import numpy as np
import pytest
import torch

from clipasso.render import raster
from clipasso.render.raster import coverage, piece_counts, rasterize, render
from clipasso.strokes import StrokeError, Strokes


def line_stroke(x0, y0, x1, y1, t1=1 / 3, t2=2 / 3):
    """A straight cubic from (x0,y0) to (x1,y1) with inner control points at t1, t2 along it."""
    p = lambda t: [x0 + (x1 - x0) * t, y0 + (y1 - y0) * t]  # noqa: E731
    return [p(0.0), p(t1), p(t2), p(1.0)]


def box_coverage(d, r):
    """Closed-form 1-D box filter of a band of half-width r at distance d (numpy, independent)."""
    return np.clip(np.minimum(d + r, 0.5) - np.maximum(d - r, -0.5), 0, 1)


def seg_distance(px, py, ax, ay, bx, by):
    vx, vy = bx - ax, by - ay
    t = np.clip(((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy), 0, 1)
    return np.hypot(px - (ax + t * vx), py - (ay + t * vy))


def draw(points, width=1.5, size=(32, 32), color=(0, 0, 0, 1), backend="torch", background=(1, 1, 1)):
    s = Strokes.from_points(
        torch.tensor(points, dtype=torch.float64)[None]
        if torch.tensor(points).ndim == 3
        else torch.tensor(points, dtype=torch.float64),
        size,
        width=width,
        color=color,
    )
    return render(s, background=background, backend=backend)


# ------------------------------------------------------------------------------------- coverage
def test_horizontal_stroke_covers_the_rows_it_should():
    # half-width 1.5 at y = 10.3: band 8.8..11.8, so rows 8..11 are covered .2, 1, 1, .8 and no others
    img, alpha = draw([line_stroke(5, 10.3, 40, 10.3)], size=(24, 48))
    col = alpha[0, :, 20].numpy()
    expected = np.zeros(24)
    expected[8:12] = [0.2, 1.0, 1.0, 0.8]
    np.testing.assert_allclose(col, expected, atol=1e-5)
    # black ink over white: the image is 1 - coverage in every channel
    np.testing.assert_allclose(img[0, :, :, 20].numpy(), np.broadcast_to(1 - expected, (3, 24)), atol=1e-5)
    # round caps: nothing beyond end + r, full ink at the end point itself
    assert float(alpha[0, 10, 42:].max()) == 0.0
    assert float(alpha[0, 10, 40]) == pytest.approx(1.0, abs=1e-5)


def test_coverage_closed_form_matches_box_filter():
    d = torch.linspace(0, 4, 401, dtype=torch.float64)
    for r in (0.25, 0.5, 1.0, 1.5, 3.0):
        got = coverage(d, torch.tensor(r, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(got, box_coverage(d.numpy(), r), atol=1e-12)
    # a thin line (r < 1/2) never fully covers a pixel; its peak equals its width
    assert float(coverage(torch.tensor(0.0), torch.tensor(0.2))) == pytest.approx(0.4)


@pytest.mark.parametrize("t1,t2", [(1 / 3, 2 / 3), (0.1, 0.9), (0.45, 0.5)])
def test_straight_bezier_equals_a_line_segment(t1, t2):
    """Any straight cubic renders as the segment: distance to the segment, then the box filter."""
    a, b, r = (3.2, 5.7), (27.9, 21.4), 1.5
    _, alpha = draw([line_stroke(*a, *b, t1, t2)], width=r, size=(28, 32))
    ys, xs = np.mgrid[0:28, 0:32] + 0.5
    expected = box_coverage(seg_distance(xs, ys, *a, *b), r)
    np.testing.assert_allclose(alpha[0].numpy(), expected, atol=1e-6)


def test_diagonal_antialiasing_close_to_supersampled_truth():
    """Against 16x16 supersampling of the exact stroke shape: the box filter is close everywhere."""
    a, b, r = (4.0, 3.0), (28.0, 25.0), 1.5
    _, alpha = draw([line_stroke(*a, *b)], width=r, size=(30, 32))
    n = 16
    off = (np.arange(n) + 0.5) / n
    ys, xs = np.mgrid[0:30, 0:32]
    sx = xs[..., None, None] + off[None, None, None, :]
    sy = ys[..., None, None] + off[None, None, :, None]
    inside = seg_distance(sx, sy, *a, *b) <= r
    truth = inside.mean(axis=(-1, -2))
    err = np.abs(alpha[0].numpy() - truth)
    assert err.max() < 0.12
    assert err.mean() < 0.01
    # ink totals agree: area of a 3 px wide stroke of this length plus round caps
    area = 2 * r * math.hypot(b[0] - a[0], b[1] - a[1]) + math.pi * r * r
    assert float(alpha.sum()) == pytest.approx(area, rel=0.01)


def test_long_strokes_are_flattened_finely_enough():
    """Piece counts adapt to length and curvature: the polyline stays within 0.05 px of the curve."""
    torch.manual_seed(1)
    cub = torch.rand(6, 4, 2, dtype=torch.float64) * torch.tensor([2000.0, 1500.0], dtype=torch.float64)
    counts = piece_counts(cub)
    t_fine = torch.linspace(0, 1, 20001, dtype=torch.float64)
    basis = raster._bezier_basis(t_fine)
    for c, n in zip(cub, counts.tolist()):
        curve = basis @ c
        t_poly = torch.linspace(0, 1, n + 1, dtype=torch.float64)
        poly = (raster._bezier_basis(t_poly) @ c).numpy()
        # distance from dense curve samples to the polyline
        a, b = poly[:-1], poly[1:]
        d = seg_distance(curve[:, 0, None].numpy(), curve[:, 1, None].numpy(), a[:, 0], a[:, 1], b[:, 0], b[:, 1])
        assert d.min(axis=1).max() < 0.06
    short = piece_counts(torch.tensor([[[0, 0], [1, 0], [2, 0], [3, 0.0]]]))
    assert int(short[0]) <= 2 and int(counts.min()) > int(short[0])


# ------------------------------------------------------------------------------------- gradients
def _fd_check(make_loss, x, eps=1e-6, cos_min=0.999, rel=0.02):
    x = x.detach().clone().requires_grad_(True)
    make_loss(x).backward()
    analytic = x.grad.reshape(-1).clone()
    numeric = torch.zeros_like(analytic)
    flat = x.detach().reshape(-1)
    for i in range(flat.numel()):
        up, dn = flat.clone(), flat.clone()
        up[i] += eps
        dn[i] -= eps
        with torch.no_grad():
            numeric[i] = (make_loss(up.view_as(x)) - make_loss(dn.view_as(x))) / (2 * eps)
    cos = torch.nn.functional.cosine_similarity(analytic, numeric, dim=0)
    assert float(cos) > cos_min, (analytic, numeric)
    assert float((analytic - numeric).norm() / numeric.norm()) < rel


@pytest.mark.parametrize("backend", ["torch", "dense"])
def test_point_gradients_match_finite_differences(backend):
    torch.manual_seed(0)
    # (no pixel centre sits exactly on a kink of the box filter, where only one-sided derivatives exist)
    pts = torch.tensor(
        [
            [
                [[4.37, 6.13], [12.2, 2.4], [18.7, 25.3], [27.6, 20.2]],
                [[6.6, 26.4], [10.1, 14.9], [20.3, 15.7], [25.1, 4.2]],
            ]
        ],
        dtype=torch.float64,
    )
    weights = torch.rand(1, 3, 30, 32, dtype=torch.float64)
    widths = torch.tensor([[1.5, 2.2]], dtype=torch.float64)
    colors = torch.tensor([[[0.9, 0.1, 0.2, 0.8], [0.1, 0.3, 0.9, 0.7]]], dtype=torch.float64)

    def loss(p):
        img, _ = rasterize(p, widths, colors, 30, 32, backend=backend)
        return (img * weights).sum()

    _fd_check(loss, pts)


def test_width_and_colour_gradients_match_finite_differences():
    torch.manual_seed(0)
    # (no pixel centre sits exactly on a kink of the box filter, where only one-sided derivatives exist)
    pts = torch.tensor(
        [
            [
                [[4.37, 6.13], [12.2, 2.4], [18.7, 25.3], [27.6, 20.2]],
                [[6.6, 26.4], [10.1, 14.9], [20.3, 15.7], [25.1, 4.2]],
            ]
        ],
        dtype=torch.float64,
    )
    weights = torch.rand(1, 3, 30, 32, dtype=torch.float64)
    widths = torch.tensor([[1.37, 2.21]], dtype=torch.float64)
    colors = torch.tensor([[[0.9, 0.1, 0.2, 0.8], [0.1, 0.3, 0.9, 0.7]]], dtype=torch.float64)
    _fd_check(lambda w: (rasterize(pts, w, colors, 30, 32)[0] * weights).sum(), widths)
    _fd_check(lambda c: (rasterize(pts, widths, c, 30, 32)[0] * weights).sum(), colors)


def test_tiled_matches_dense_reference_when_sampling_is_the_same():
    """Translated copies of one stroke share piece counts, so both backends sample identically."""
    base = torch.tensor([[3.0, 4.0], [20.0, -6.0], [30.0, 30.0], [44.0, 12.0]], dtype=torch.float64)
    pts = torch.stack([base + torch.tensor([dx, dy], dtype=torch.float64) for dx, dy in [(0, 5), (6, 20), (-2, 30)]])[
        None
    ].repeat(2, 1, 1, 1)
    pts[1] += 3.3
    pts.requires_grad_(True)
    widths = torch.tensor([[1.5, 1.0, 2.5], [0.7, 1.5, 3.0]], dtype=torch.float64)
    colors = torch.tensor([[0.2, 0.4, 0.1, 0.9], [0.8, 0.1, 0.5, 0.6], [0, 0, 0, 1.0]], dtype=torch.float64).expand(
        2, 3, 4
    )
    w = torch.rand(2, 3, 64, 56, dtype=torch.float64)
    out = {}
    for backend in ("torch", "dense"):
        img, alpha = rasterize(pts, widths, colors, 64, 56, backend=backend)
        (g,) = torch.autograd.grad((img * w).sum(), pts)
        out[backend] = (img.detach(), alpha.detach(), g)
    for a, b in zip(out["torch"], out["dense"]):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


# ------------------------------------------------------------------------------------- batching, colour
def test_candidates_render_independently():
    torch.manual_seed(3)
    pts = torch.rand(4, 6, 7, 2) * 60
    s = Strokes(pts, torch.rand(4, 6) * 2 + 0.5, torch.rand(4, 6, 4), (64, 64))
    together = render(s)
    for b in range(4):
        alone = render(s.select(b))
        torch.testing.assert_close(together.image[b : b + 1], alone.image, atol=1e-6, rtol=0)
        torch.testing.assert_close(together.alpha[b : b + 1], alone.alpha, atol=1e-6, rtol=0)


def test_strokes_composite_in_order_with_opacity():
    red = [1.0, 0.0, 0.0, 0.5]
    blue = [0.0, 0.0, 1.0, 0.5]
    horiz = line_stroke(2, 10.5, 30, 10.5)
    vert = line_stroke(16.5, 2, 16.5, 30)
    pts = torch.tensor([[horiz, vert]])
    bg = (1.0, 1.0, 1.0)

    def at_cross(colors):
        img, alpha = rasterize(pts, torch.full((1, 2), 2.0), torch.tensor([colors]), 32, 32, bg)
        return img[0, :, 10, 16], float(alpha[0, 10, 16])

    px, a = at_cross([red, blue])
    # blue over (red over white): by hand
    under = 0.5 * torch.tensor([1.0, 0, 0]) + 0.5 * torch.tensor(bg)
    torch.testing.assert_close(px, 0.5 * torch.tensor([0, 0, 1.0]) + 0.5 * under, atol=1e-6, rtol=0)
    assert a == pytest.approx(0.75)
    px_rev, _ = at_cross([blue, red])
    assert float(px_rev[0]) > float(px[0]) and float(px_rev[2]) < float(px[2])  # last drawn dominates
    # only one stroke: 50 % red over white
    img, _ = rasterize(pts, torch.full((1, 2), 2.0), torch.tensor([[red, blue]]), 32, 32, bg)
    torch.testing.assert_close(img[0, :, 10, 4], torch.tensor([1.0, 0.5, 0.5]), atol=1e-6, rtol=0)


def test_transparent_background_gives_straight_ink_colour():
    s = Strokes.from_points([line_stroke(2, 8.5, 20, 8.5)], (16, 24), color=(0.2, 0.6, 0.4, 1.0))
    r = render(s, background=None)
    torch.testing.assert_close(r.image[0, :, 8, 10], torch.tensor([0.2, 0.6, 0.4]), atol=1e-6, rtol=0)
    assert float(r.alpha[0, 0, 0]) == 0.0


def test_render_size_width_and_colour_options():
    s = Strokes.from_points([line_stroke(4, 10.3, 40, 10.3)], (24, 48))
    big = render(s, size=(48, 96))
    by_hand = render(Strokes.from_points([line_stroke(8, 20.6, 80, 20.6)], (48, 96), width=3.0))
    torch.testing.assert_close(big.image, by_hand.image, atol=1e-5, rtol=0)
    wide = render(s, width_scale=2.0)
    assert float(wide.alpha.sum()) > 1.9 * float(render(s).alpha.sum())
    red = render(s, color=(1, 0, 0))
    assert float(red.image[0, 0].min()) == pytest.approx(1.0) and float(red.image[0, 1].min()) < 0.01
    with pytest.raises(ValueError, match="width_scale"):
        render(s, width_scale=0)
    with pytest.raises(ValueError, match="size"):
        render(s, size=(0, 10))
    with pytest.raises(ValueError, match="color"):
        render(s, color=(2, 0, 0))
    with pytest.raises(ValueError, match="backend"):
        render(s, backend="nope")
    with pytest.raises(StrokeError):
        render(torch.zeros(1, 1, 4, 2))


def test_large_canvas_and_many_strokes_stay_cheap():
    """A 2048 px canvas with long strokes renders without materialising pixels x pieces."""
    torch.manual_seed(0)
    pts = torch.rand(1, 64, 4, 2) * 2048
    s = Strokes(
        pts.requires_grad_(True), torch.full((1, 64), 3.0), torch.tensor([0, 0, 0, 1.0]).expand(1, 64, 4), (2048, 2048)
    )
    img, alpha = render(s)
    img.mean().backward()
    assert img.shape == (1, 3, 2048, 2048)
    assert bool(torch.isfinite(pts.grad).all()) and float(pts.grad.abs().sum()) > 0
    assert 0 < float(alpha.detach().mean()) < 0.5


def test_off_canvas_strokes_draw_nothing_and_keep_finite_gradients():
    pts = torch.tensor([[[[-50.0, -50.0], [-40, -45], [-30, -42], [-20, -40]]]], requires_grad=True)
    img, alpha = rasterize(pts, torch.full((1, 1), 1.5), torch.tensor([[[0, 0, 0, 1.0]]]), 16, 16)
    assert float(alpha.detach().max()) == 0.0 and float(img.detach().min()) == 1.0
    img.sum().backward()
    assert bool(torch.isfinite(pts.grad).all())


def test_zero_length_stroke_draws_a_round_dot():
    p = [[10.5, 10.5]] * 4
    _, alpha = draw([p], width=3.0, size=(21, 21))
    ys, xs = np.mgrid[0:21, 0:21] + 0.5
    expected = box_coverage(np.hypot(xs - 10.5, ys - 10.5), 3.0)
    np.testing.assert_allclose(alpha[0].numpy(), expected, atol=1e-6)


# ------------------------------------------------------------------------------------- devices, diffvg
def _devices():
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


@pytest.mark.gpu
@pytest.mark.skipif(not _devices(), reason="no CUDA or MPS device here")
@pytest.mark.parametrize("device", _devices() or ["none"])
def test_device_matches_cpu(device):
    torch.manual_seed(0)
    s = Strokes(torch.rand(2, 16, 4, 2) * 224, torch.full((2, 16), 1.5), torch.rand(2, 16, 4), (224, 224))
    w = torch.rand(2, 3, 224, 224)
    results = []
    for dev in ("cpu", device):
        pts = s.points.to(dev).requires_grad_(True)
        img, _ = rasterize(pts, s.widths.to(dev), s.colors.to(dev), 224, 224)
        (img * w.to(dev)).sum().backward()
        results.append((img.detach().cpu(), pts.grad.cpu()))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-4, rtol=0)
    cos = torch.nn.functional.cosine_similarity(results[0][1].reshape(-1), results[1][1].reshape(-1), dim=0)
    assert float(cos) > 0.999


# diffvg tests take the `pydiffvg` fixture (tests/engine/render/conftest.py)


def _diffvg_scene(seed, n=6, size=48, ink="black", width=1.5, opacity=1.0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(1, n, 4, 2, generator=g, dtype=torch.float64) * (size - 8) + 4
    widths = torch.full((1, n), float(width), dtype=torch.float64)
    if ink == "black":
        rgb = torch.zeros(1, n, 3, dtype=torch.float64)
    else:
        rgb = torch.rand(1, n, 3, generator=g, dtype=torch.float64)
    colors = torch.cat([rgb, torch.full((1, n, 1), float(opacity), dtype=torch.float64)], -1)
    return pts, widths, colors, size


def _image_and_grad(pts, widths, colors, size, background, fn):
    g = torch.Generator().manual_seed(123)
    weights = torch.rand(1, 3, size, size, generator=g, dtype=torch.float64)
    p = pts.clone().requires_grad_(True)
    img, _ = fn(p, widths, colors, size, size, background)
    (img * weights).sum().backward()
    return img.detach(), p.grad.reshape(-1)


# Against diffvg at 16x16 samples, ours may differ at most this many times as much as diffvg at 2x2
# samples (CLIPasso's) does: mean |image difference|, and 1 - cosine of the point gradients. Measured
# (seed 7): images 0.19-0.27x; gradients 0.7-1.4x with opaque ink, but 4.0x with ink at opacity 0.5
# (cosines 0.82 against diffvg 2x2's 0.955: an open difference, see issue 28), bounded at 5x there.
AGREEMENT_FACTOR = 1.0
GRADIENT_FACTOR = 2.0
GRADIENT_FACTOR_TRANSLUCENT = 5.0
DIFFVG_CASES = {
    "black, 3 px": dict(ink="black", width=1.5),
    "colour, 1.5 px": dict(ink="colour", width=0.75),
    "colour, 6 px": dict(ink="colour", width=3.0),
    "colour, opacity 0.5, on grey": dict(ink="colour", width=1.5, opacity=0.5, background=(0.5, 0.5, 0.5)),
}


@pytest.mark.parametrize("case", list(DIFFVG_CASES))
def test_diffvg_agrees_with_ours_within_its_own_sampling_noise(pydiffvg, case):
    kw = dict(DIFFVG_CASES[case])
    background = kw.pop("background", (1.0, 1.0, 1.0))
    scene = _diffvg_scene(7, **kw)

    def diffvg_at(samples):
        return lambda *a: raster._rasterize_diffvg(*a, samples=samples)

    ours, g_ours = _image_and_grad(*scene, background, raster._rasterize_tiled)
    ref, g_ref = _image_and_grad(*scene, background, diffvg_at(16))
    d2, g2 = _image_and_grad(*scene, background, diffvg_at(2))
    ours_err = float((ours - ref).abs().mean())
    noise = float((d2 - ref).abs().mean())
    assert ours_err <= AGREEMENT_FACTOR * noise, (case, ours_err, noise)
    cos = torch.nn.functional.cosine_similarity
    cos_ours = float(cos(g_ours, g_ref, dim=0))
    cos_noise = float(cos(g2, g_ref, dim=0))
    factor = GRADIENT_FACTOR if kw.get("opacity", 1.0) == 1.0 else GRADIENT_FACTOR_TRANSLUCENT
    assert 1 - cos_ours <= factor * (1 - cos_noise), (case, cos_ours, cos_noise)


def _partial_red_line():
    # a 1 px wide horizontal line whose band covers a fraction of the pixels of rows 9 and 10
    return torch.tensor([[line_stroke(4, 9.8, 28, 9.8)]], dtype=torch.float64), torch.full((1, 1), 0.5)


def test_diffvg_composites_colours_as_ours(pydiffvg):
    pts, w = _partial_red_line()
    red = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]], dtype=torch.float64)
    img, alpha = raster._rasterize_diffvg(pts, w.double(), red, 20, 32, (1.0, 1.0, 1.0), samples=8)
    partial = (alpha > 0.05) & (alpha < 0.95)
    assert bool(partial.any())
    torch.testing.assert_close(img[:, 0], torch.ones_like(img[:, 0]))  # red over white keeps R = 1
    straight, a2 = raster._rasterize_diffvg(pts, w.double(), red, 20, 32, None, samples=8)
    inked = a2[0] > 1e-3
    torch.testing.assert_close(straight[0][:, inked], red[0, 0, :3, None].expand(3, int(inked.sum())))
    white = torch.tensor([[[1.0, 1.0, 1.0, 1.0]]], dtype=torch.float64)
    on_grey, _ = raster._rasterize_diffvg(pts, w.double(), white, 20, 32, (0.5, 0.5, 0.5), samples=8)
    assert float(on_grey.min()) >= 0.5 - 1e-6  # white ink never darkens grey paper
    ours, _ = raster._rasterize_tiled(pts, w.double(), white, 20, 32, (0.5, 0.5, 0.5))
    assert float((on_grey - ours).abs().max()) < 0.1


def test_diffvg_takes_float64_and_gives_float64_gradients(pydiffvg):
    pts, widths, colors, size = _diffvg_scene(3, ink="colour")
    p = pts.clone().requires_grad_(True)
    w = widths.clone().requires_grad_(True)
    c = colors.clone().requires_grad_(True)
    img, alpha = rasterize(p, w, c, size, size, backend="diffvg")
    assert img.dtype == torch.float64 and alpha.dtype == torch.float64
    img.sum().backward()
    for t in (p, w, c):
        assert t.grad is not None and t.grad.dtype == torch.float64 and bool(torch.isfinite(t.grad).all())
        assert float(t.grad.abs().sum()) > 0


def test_diffvg_draws_straight_segments(pydiffvg):
    lines = [line_stroke(4, 6, 40, 6), line_stroke(6, 10, 6, 40), line_stroke(10, 12, 40, 42)]
    pts = torch.tensor([lines], dtype=torch.float64)
    w = torch.full((1, 3), 1.5, dtype=torch.float64)
    c = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64).expand(1, 3, 4)
    _, ours = raster._rasterize_tiled(pts, w, c, 48, 48, (1.0, 1.0, 1.0))
    _, theirs = raster._rasterize_diffvg(pts, w, c, 48, 48, (1.0, 1.0, 1.0), samples=4)
    assert float(theirs.sum()) == pytest.approx(float(ours.sum()), rel=0.03)


def test_diffvg_renderer_reaches_the_optimiser(pydiffvg):
    from clipasso.optimize import optimize_pictures
    from clipasso.settings import OptimizeConfig

    pts, widths, colors, size = _diffvg_scene(5, n=4, size=64)
    strokes = Strokes(pts.float(), widths.float(), colors.float(), (size, size))
    target = torch.ones(3, size, size)
    target[:, 20:44, 20:44] = 0.0
    runs = {}
    for renderer in ("torch", "diffvg"):
        config = OptimizeConfig.from_preset("paper", loss="trace", iterations=3, renderer=renderer, num_augs=1)
        runs[renderer] = optimize_pictures(strokes, [target], None, config, device="cpu")
    assert not torch.equal(runs["torch"].points, runs["diffvg"].points)


def test_diffvg_missing_says_how_to_get_it(monkeypatch):
    import sys

    from clipasso.settings import SettingsError, SketchSettings

    monkeypatch.setitem(sys.modules, "pydiffvg", None)  # as if it were not installed: import fails
    assert not raster.diffvg_available()
    s = Strokes.from_points([line_stroke(0, 0, 5, 5)], (8, 8))
    with pytest.raises(SettingsError, match="diffvg_build.py") as err:
        render(s, backend="diffvg")
    assert "libthrust-dev" in str(err.value) and "torch" in str(err.value)
    with pytest.raises(SettingsError, match="renderer diffvg"):
        SketchSettings.from_preset("paper", renderer="diffvg").validate()


# ---------------------------------------------------------------------------------------------
# bounded memory: stroke groups, compaction, the running-sum compositing, culled segments
# ---------------------------------------------------------------------------------------------
def _scene(b=2, s=40, k=3, size=48, seed=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pts = (torch.rand(b, s, 1 + 3 * k, 2, generator=g, dtype=dtype) * (size + 20) - 10).requires_grad_()
    widths = (torch.rand(b, s, generator=g, dtype=dtype) * 2 + 0.5).requires_grad_()
    colors = torch.rand(b, s, 4, generator=g, dtype=dtype).requires_grad_()
    return pts, widths, colors


def _image_and_grads(pts, widths, colors, size=48, background=(0.9, 0.8, 0.7)):
    img, alpha = rasterize(pts, widths, colors, size, size, background)
    w = torch.linspace(0, 1, img.numel(), dtype=img.dtype).reshape(img.shape)
    (img * w).sum().add(alpha.sum()).backward()
    out = (img.detach(), alpha.detach(), pts.grad.clone(), widths.grad.clone(), colors.grad.clone())
    for t in (pts, widths, colors):
        t.grad = None
    return out


@pytest.mark.parametrize(
    "setting,value",
    [("_PIECES_PER_GROUP", 60), ("_ENTRIES_BEFORE_COMPACT", 50), ("_DENSE_SUFFIX_CELLS", 0), ("_PAIRS_PER_CHUNK", 512)],
)
def test_bounded_memory_paths_give_the_same_picture_and_gradients(monkeypatch, setting, value):
    pts, widths, colors = _scene()
    ref = _image_and_grads(pts, widths, colors)
    monkeypatch.setattr(raster, setting, value)
    got = _image_and_grads(pts, widths, colors)
    for a, b in zip(ref, got):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
    if setting == "_PIECES_PER_GROUP":
        assert len(raster._stroke_groups(raster._drawn_counts(pts, widths, 48, 48).reshape(80, -1).sum(-1), 60)) > 3


def test_padding_and_off_canvas_segments_are_not_drawn_but_the_picture_is_the_same():
    pts = torch.tensor(
        [
            [
                [[2.0, 2.0], [10, 4], [20, 30], [28, 28]] + [[28.0, 28.0]] * 6,  # padded to 3 segments
                [[-80.0, -80.0], [-70, -60], [-60, -70], [5, 5]] + [[5.0, 5.0]] * 6,
            ]
        ]
    )  # first segment partly off
    widths = torch.full((1, 2), 1.5)
    counts = raster._drawn_counts(pts, widths, 32, 32)
    assert counts[0, 0, 1:].tolist() == [0, 0] and int(counts[0, 0, 0]) > 0
    assert int(counts[0, 1, 0]) > 0 and counts[0, 1, 1:].tolist() == [0, 0]
    off = torch.tensor([[[[-80.0, -80.0], [-70, -60], [-60, -70], [-50, -50]]]])
    assert int(raster._drawn_counts(off, torch.full((1, 1), 1.5), 32, 32).sum()) == 0
    colors = torch.tensor([[[0.0, 0, 0, 1], [1.0, 0, 0, 0.5]]])
    tiled = rasterize(pts.double(), widths.double(), colors.double(), 32, 32, backend="torch")
    dense = rasterize(pts.double(), widths.double(), colors.double(), 32, 32, backend="dense")
    # the dense reference samples each cubic uniformly with one count for all: same picture to sampling error
    torch.testing.assert_close(tiled[1], dense[1], atol=0.06, rtol=0)
