"""Stroke initialization: sampling from softmax(map / T), per-seed determinism, random walk, fallbacks."""

import math
import warnings

import pytest
import torch

from clipasso.place.init import InitError, InitFallbackWarning, initialize_strokes, sampling_map, start_probabilities
from clipasso.settings import PlaceSettings, SettingsError, SketchSettings
from clipasso.strokes import Strokes

SETTING_ARGS = {"num_strokes", "num_segments", "temperature", "width", "settings"}

torch.set_num_threads(2)


def starts(strokes: Strokes) -> torch.Tensor:
    return strokes.points[:, :, 0, :]  # B, S, 2 (x, y)


def test_uniform_without_saliency_shape_canvas_and_metadata():
    s = initialize_strokes((120, 200), 16, (0, 1000, 2000))
    assert isinstance(s, Strokes)
    assert tuple(s.points.shape) == (3, 16, 4, 2)
    assert s.canvas == (120, 200) and s.seeds == (0, 1000, 2000)
    assert torch.allclose(s.widths, torch.full((3, 16), 1.5))
    assert torch.equal(s.colors[0, 0], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    x, y = s.points[..., 0], s.points[..., 1]
    assert float(x.min()) >= 0 and float(x.max()) <= 200 and float(y.min()) >= 0 and float(y.max()) <= 120
    # uniform starts spread over the whole canvas, not a corner
    st = starts(s).reshape(-1, 2)
    assert float(st[:, 0].std()) > 30 and float(st[:, 1].std()) > 15


@pytest.mark.parametrize("segments", [1, 2, 5])
def test_any_number_of_segments_and_walk_step_bound(segments):
    h, w, radius = 224, 224, 0.05
    s = initialize_strokes((h, w), 12, [3], num_segments=segments, radius=radius, width=2.0)
    assert tuple(s.points.shape) == (1, 12, 1 + 3 * segments, 2)
    assert torch.allclose(s.widths, torch.full((1, 12), 2.0))
    steps = s.points[:, :, 1:] - s.points[:, :, :-1]
    # each step of the chained walk moves at most radius/2 of the canvas per axis
    assert float(steps[..., 0].abs().max()) <= radius / 2 * w + 1e-4
    assert float(steps[..., 1].abs().max()) <= radius / 2 * h + 1e-4
    assert float(steps.abs().max()) > 0  # and it does move


def test_starts_are_pixel_centres():
    s = initialize_strokes((64, 48), 20, [5, 6])
    frac = starts(s) - starts(s).floor()
    assert torch.allclose(frac, torch.full_like(frac, 0.5))


def test_one_hot_region_gets_all_starts():
    sal = torch.zeros(100, 100)
    sal[20:26, 70:76] = 1.0  # 36 hot pixels, 16 strokes
    s = initialize_strokes((100, 100), 16, (0, 1, 2), saliency=sal)
    st = starts(s)
    assert bool(((st[..., 0] > 70) & (st[..., 0] < 76) & (st[..., 1] > 20) & (st[..., 1] < 26)).all())
    # without replacement: no start pixel is used twice within a candidate
    for b in range(3):
        assert len({tuple(p) for p in st[b].tolist()}) == 16


def test_softmax_temperature_sets_how_strongly_the_map_is_followed():
    sal = torch.zeros(100, 100)
    sal[:, :50] = 1.0
    sal[:, 50:] = 0.5
    sal[-1, -1] = 0.0  # the map's minimum is 0, so its min-max normalisation leaves 1 and 0.5 as they are

    def high_fraction(temp):
        s = initialize_strokes((100, 100), 400, list(range(5)), saliency=sal, temperature=temp)
        return float((starts(s)[..., 0] < 50).float().mean())

    # with equal areas, P(high half) = e^{1/T} / (e^{1/T} + e^{0.5/T})
    expected = 1 / (1 + math.exp(-0.5 / 0.3))  # 0.841 at CLIPasso's T = 0.3
    # sampling without replacement from 5000 pixels per half barely changes it
    assert abs(high_fraction(0.3) - expected) < 0.05
    assert high_fraction(0.05) > 0.99
    assert abs(high_fraction(100.0) - 0.5) < 0.06


def test_start_probabilities_are_a_softmax_over_nonzero_pixels():
    m = torch.tensor([[0.0, 0.2], [1.0, 0.0]])
    p = start_probabilities(m, 0.3)
    e = torch.exp(torch.tensor([0.2, 1.0]) / 0.3)
    assert torch.allclose(p, torch.tensor([[0.0, e[0] / e.sum()], [e[1] / e.sum(), 0.0]]))
    assert abs(float(p.sum()) - 1) < 1e-6
    assert float(start_probabilities(torch.zeros(3, 3)).sum()) == 0


def test_deterministic_per_seed_and_independent_of_the_batch():
    sal = torch.rand(80, 80)
    a = initialize_strokes((80, 80), 10, (0, 1000), saliency=sal)
    b = initialize_strokes((80, 80), 10, (0, 1000), saliency=sal)
    assert torch.equal(a.points, b.points)
    alone = initialize_strokes((80, 80), 10, 1000, saliency=sal)
    assert torch.equal(a.points[1], alone.points[0])
    assert not torch.allclose(a.points[0], a.points[1])


def test_edges_rule_keeps_only_ink_pixels_and_can_be_switched_off():
    sal = torch.ones(60, 60)
    edges = torch.zeros(60, 60)
    edges[10:20, 10:20] = 1
    on = initialize_strokes((60, 60), 30, (0, 1), saliency=sal, edges=edges)
    st = starts(on)
    assert bool(((st >= 10) & (st <= 20)).all())
    off = initialize_strokes((60, 60), 30, (0, 1), saliency=sal, edges=edges, use_edges=False)
    assert bool(((starts(off) > 20).any(dim=-1)).any())


def test_mask_restricts_starts_to_the_object():
    mask = torch.zeros(50, 50)
    mask[:, 30:] = 1
    s = initialize_strokes((50, 50), 40, (0, 1), saliency=torch.rand(50, 50), mask=mask)
    assert bool((starts(s)[..., 0] > 30).all())
    u = initialize_strokes((50, 50), 40, (0,), mask=mask)  # uniform over the mask
    assert bool((starts(u)[..., 0] > 30).all())


def test_sampling_map_is_the_normalised_saliency_times_ink_not_normalised_again():
    # as the original: A min-max normalised first, then M = ink * A, no second normalisation
    sal = 2 + torch.linspace(0, 1, 16).reshape(4, 4)  # 2.0 .. 3.0
    edges = torch.zeros(4, 4)
    edges[0, :2] = 1
    m = sampling_map(sal, edges)
    assert int((m > 0).sum()) == 1  # pixel (0,0) is the minimum (0 after min-max), (0,1) keeps its value
    assert float(m[0, 1]) == pytest.approx(1 / 15)  # not renormalised to 1
    flat = sampling_map(torch.full((4, 4), 0.2), None)  # a constant map: every pixel alike
    assert torch.equal(flat, torch.ones(4, 4))


def test_too_few_salient_pixels_falls_back_and_says_so():
    sal = torch.zeros(40, 40)
    sal[5, 5] = sal[6, 30] = sal[30, 12] = 1.0
    with pytest.warns(InitFallbackWarning, match="only 3 usable pixel"):
        s = initialize_strokes((40, 40), 8, (0, 7), saliency=sal)
    for b in range(2):
        got = {tuple(p) for p in starts(s)[b].tolist()}
        assert {(5.5, 5.5), (30.5, 6.5), (12.5, 30.5)} <= got  # every salient pixel used first
        assert len(got) == 8


def test_no_ink_at_all_falls_back_to_saliency_alone():
    sal = torch.zeros(30, 30)
    sal[10:20, 10:20] = 1.0
    with pytest.warns(InitFallbackWarning, match="without the ink"):
        s = initialize_strokes((30, 30), 6, (1,), saliency=sal, edges=torch.zeros(30, 30))
    assert bool(((starts(s) > 10) & (starts(s) < 20)).all())


def test_tiny_canvas_more_strokes_than_pixels():
    with pytest.warns(InitFallbackWarning, match="reuse pixels"):
        s = initialize_strokes((1, 2), 16, (0, 1), saliency=torch.ones(1, 2))
    assert tuple(s.points.shape) == (2, 16, 4, 2)
    assert float(s.points[..., 0].max()) <= 2 and float(s.points[..., 1].max()) <= 1
    assert float(s.points.min()) >= 0


def test_no_warning_in_the_normal_case():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        initialize_strokes(
            (224, 224), 16, (0, 1000, 2000), saliency=torch.rand(224, 224), edges=(torch.rand(224, 224) > 0.8).float()
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(canvas=(0, 10)), "canvas size must be positive"),
        (dict(canvas=(10.5, 10)), "whole pixels"),
        (dict(num_strokes=0), "num_strokes must be at least 1"),
        (dict(num_strokes=2.5), "num_strokes must be a whole number"),
        (dict(seeds=[]), "seeds is empty"),
        (dict(seeds="abc"), "seeds must be"),
        (dict(num_segments=0), "num_segments must be at least 1"),
        (dict(temperature=0.0, saliency=torch.ones(10, 10)), "temperature must be above 0"),
        (dict(radius=-1.0), "radius"),
        (dict(width=0.0), r"width must be a half-width in canvas pixels in \(0, 50\]"),
        (dict(settings=PlaceSettings(num_segments=0)), "num_segments must be at least 1"),
        (dict(saliency=torch.ones(9, 10)), "9x10 but the canvas is 10x10"),
        (dict(saliency=torch.ones(2, 10, 10)), "2-D map"),
        (dict(saliency=torch.full((10, 10), float("nan"))), "NaN"),
        (dict(saliency=-torch.ones(10, 10)), "non-negative"),
        (dict(mask=torch.ones(5, 5)), "mask is 5x5"),
    ],
)
def test_bad_inputs_give_clear_errors(kwargs, match):
    args = dict(canvas=(10, 10), num_strokes=4, seeds=(0,))
    args.update(kwargs)
    # settings (strokes, segments, temperature, width) are checked by the settings; the inputs here
    with pytest.raises(SettingsError if kwargs.keys() & SETTING_ARGS else InitError, match=match):
        initialize_strokes(**args)


def test_huge_canvas_sampler_follows_the_map_too(monkeypatch):
    import clipasso.place.init as init_mod

    monkeypatch.setattr(init_mod, "MULTINOMIAL_LIMIT", 100)  # force the Gumbel top-k path
    sal = torch.zeros(100, 100)
    sal[20:26, 70:76] = 1.0
    s = initialize_strokes((100, 100), 16, (0, 1), saliency=sal)
    st = starts(s)
    assert bool(((st[..., 0] > 70) & (st[..., 0] < 76) & (st[..., 1] > 20) & (st[..., 1] < 26)).all())
    assert len({tuple(p) for p in st[0].tolist()}) == 16
    half = torch.zeros(100, 100)
    half[:, :50], half[:, 50:] = 1.0, 0.5
    half[-1, -1] = 0.0  # minimum 0: min-max normalisation keeps 1 and 0.5
    u = initialize_strokes((100, 100), 400, list(range(5)), saliency=half)
    assert abs(float((starts(u)[..., 0] < 50).float().mean()) - 1 / (1 + math.exp(-0.5 / 0.3))) < 0.05


def test_all_white_image_has_no_ink_and_still_gets_strokes():
    from clipasso.prepare.xdog import xdog_edges

    edges = xdog_edges(torch.ones(3, 64, 64))
    assert float(edges.sum()) == 0
    with pytest.warns(InitFallbackWarning, match="uniform"):
        s = initialize_strokes((64, 64), 8, (0, 1), edges=edges)
    assert tuple(s.points.shape) == (2, 8, 4, 2)
    assert float(s.points.min()) >= 0 and float(s.points.max()) <= 64


def test_settings_objects_give_the_same_strokes_as_keywords():
    sal = torch.rand(64, 64, generator=torch.Generator().manual_seed(1))
    whole = SketchSettings.from_preset(strokes=5, seeds=2, seed=7, num_segments=2, width=2.0, temperature=0.5)
    by_settings = initialize_strokes((64, 64), saliency=sal, settings=whole)  # strokes and seeds from the settings
    by_stage = initialize_strokes((64, 64), 5, (7, 1007), saliency=sal, settings=whole.place)
    by_keywords = initialize_strokes((64, 64), 5, (7, 1007), saliency=sal, num_segments=2, width=2.0, temperature=0.5)
    for other in (by_stage, by_keywords):
        assert torch.equal(by_settings.points, other.points) and torch.equal(by_settings.widths, other.widths)
    assert by_settings.seeds == (7, 1007) and tuple(by_settings.points.shape) == (2, 5, 7, 2)
    defaults = initialize_strokes((32, 32))  # the defaults: 16 strokes, seeds 0, 1000, 2000
    assert tuple(defaults.points.shape) == (3, 16, 4, 2) and defaults.seeds == (0, 1000, 2000)


def test_stroke_count_is_not_capped_by_the_strokes_setting():
    # automatic abstraction places a budget of up to twice `strokes` (whose own cap is 1024)
    s = initialize_strokes((64, 64), 1100, (0,), settings=PlaceSettings(strokes=1024))
    assert s.num_strokes == 1100
