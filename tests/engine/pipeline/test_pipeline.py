"""clipasso.pipeline.sketch end to end with tiny real models, and its input handling."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from clipasso.prepare.images import ImageError
from clipasso.pipeline import EXAMPLE_IMAGE, prepare_target, sketch
from clipasso.settings import SettingsError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _object(size=(160, 120), mode="RGB"):
    img = Image.new(mode, size, "white" if mode != "RGBA" else (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    w, h = size
    fill = "black" if mode != "RGBA" else (20, 20, 20, 255)
    d.ellipse([w * 0.25, h * 0.2, w * 0.75, h * 0.8], outline=fill, width=4)
    d.line([w * 0.5, h * 0.2, w * 0.5, h * 0.05], fill=fill, width=4)
    return img


def _quick(models_dir, **kw):
    base = dict(
        strokes=4,
        seeds=2,
        iterations=2,
        eval_interval=1,
        device="cpu",
        models_dir=models_dir,
        background_removal=False,
        allow_download=False,
        num_augs=1,
    )
    base.update(kw)
    return base


def test_sketch_end_to_end_with_saliency(tiny_models_dir):
    res = sketch(_object(), **_quick(tiny_models_dir))
    assert res.strokes.num_candidates == 1 and res.candidates.num_candidates == 2
    # paper frames as the original (stretch): the 160x120 picture's sketch comes back 4:3
    assert res.strokes.points.shape == (1, 4, 4, 2) and res.strokes.canvas == (168, 224)
    assert res.candidates.seeds == (0, 1000)
    assert res.loss == float(res.candidates.losses.min())
    assert res.saliency is not None and res.saliency.shape == (224, 224)
    assert res.target.shape == (3, 224, 224)
    assert res.render(1.0).shape == (3, 168, 224) and res.frame_strokes.canvas == (224, 224)
    assert res.settings["clip_model"] == "RN101" and res.settings["iterations"] == 2


def test_presets_and_overrides(tiny_models_dir):
    res = sketch(_object(), preset="fast", **_quick(tiny_models_dir, seeds=[5], saliency="none"))
    assert res.settings["preset"] == "fast" and res.settings["aug_pool"] > 0
    assert res.candidates.seeds == (5,) and res.saliency is None
    with pytest.raises(SettingsError, match="preset"):
        sketch(_object(), preset="turbo", **_quick(tiny_models_dir))
    with pytest.raises(SettingsError, match="strokes"):
        sketch(_object(), **_quick(tiny_models_dir, strokes=0))


def test_no_input_sketches_the_bundled_example(tiny_models_dir):
    assert EXAMPLE_IMAGE.is_file() and EXAMPLE_IMAGE.stat().st_size < 200_000
    res = sketch(None, **_quick(tiny_models_dir, iterations=1, seeds=1, saliency="none"))
    assert any("example" in n for n in res.notes)


def test_cancel_returns_best_so_far(tiny_models_dir):
    res = sketch(_object(), should_stop=lambda: True, **_quick(tiny_models_dir, iterations=500))
    assert res.run.cancelled and res.run.iterations_run == 0
    assert any("cancelled" in n for n in res.notes)
    assert torch.isfinite(res.strokes.losses).all()


def test_missing_weights_offline_is_a_clear_error(tmp_path):
    from clipasso.models import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match=str(tmp_path).replace("\\", "\\\\")):
        sketch(_object(), **_quick(str(tmp_path)))


# ----------------------------------------------------------------------------- inputs


def test_non_square_input_is_not_stretched():
    img = Image.new("RGB", (300, 100), "white")
    ImageDraw.Draw(img).rectangle([130, 30, 169, 69], fill="black")  # a 40x40 square
    target, mask = prepare_target(img, background_removal=False)
    dark = (target.mean(0) < 0.5).nonzero()
    hgt = dark[:, 0].max() - dark[:, 0].min() + 1
    wid = dark[:, 1].max() - dark[:, 1].min() + 1
    assert abs(int(hgt) - int(wid)) <= 1 and mask is None
    assert float(target[:, :40].min()) > 0.99  # padding is white


def test_rgba_is_composited_over_white_and_alpha_is_the_mask():
    img = _object(mode="RGBA")
    target, mask = prepare_target(img, background_removal=True)  # alpha is used: no matting model run
    assert target.shape == (3, 224, 224) and float(target.max()) <= 1.0
    assert float(target[:, 0, 0].min()) > 0.99  # transparent corner -> white
    assert mask is not None and 0 < float(mask.mean()) < 0.5


def test_greyscale_and_tiny_inputs_are_handled():
    grey = _object().convert("L")
    t, _ = prepare_target(grey, background_removal=False)
    assert t.shape == (3, 224, 224) and torch.allclose(t[0], t[1])
    small, _ = prepare_target(np.full((8, 8, 3), 255, dtype=np.uint8), background_removal=False)  # the minimum
    assert small.shape == (3, 224, 224) and torch.isfinite(small).all()
    with pytest.raises(ImageError, match="at least 8 px"):  # issue 15: too small to sketch is an error
        prepare_target(np.array([[[255, 0, 0]]], dtype=np.uint8), background_removal=False)


def test_one_pixel_image_is_refused(tiny_models_dir):
    with pytest.raises(ImageError, match="1x1 pixels, too small to sketch"):
        sketch(np.array([[[0, 0, 0]]], dtype=np.uint8), **_quick(tiny_models_dir, iterations=1, seeds=1))


def test_huge_input_is_shrunk_before_use():
    img = Image.new("RGB", (8000, 8000), "white")
    ImageDraw.Draw(img).rectangle([2000, 2000, 6000, 6000], outline="black", width=60)
    t, _ = prepare_target(img, background_removal=False)
    assert t.shape == (3, 224, 224) and float(t.min()) < 0.5


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ImageError, match="empty"):
        prepare_target(np.zeros((0, 10, 3), dtype=np.uint8))
    bad = torch.rand(3, 32, 32)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ImageError, match="NaN"):
        prepare_target(bad)
    with pytest.raises(ImageError, match="not found"):
        prepare_target("/nonexistent/cat.png")
    with pytest.raises(ImageError):
        prepare_target("not an image at all".encode())


def test_background_removal_with_u2netp(monkeypatch, tmp_path):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))  # empty: the u2netp.onnx shipped in clipasso/data is used
    monkeypatch.delenv("CLIPASSO_MODELS_DIR", raising=False)
    img = Image.new("RGB", (200, 200), (120, 160, 90))
    ImageDraw.Draw(img).ellipse([50, 50, 150, 150], fill=(200, 30, 30))
    target, mask = prepare_target(img, background_removal=True, allow_download=False)
    assert target.shape == (3, 224, 224)
    if mask is not None:  # u2netp found the disc: background became white
        assert float(target[:, 2, 2].min()) > 0.99


def test_vit_loss_encoder_works_by_name(tiny_models_dir):
    res = sketch(_object(), **_quick(tiny_models_dir, clip_model="clipasso-tiny-vit", saliency="none"))
    assert res.settings["clip_model"] == "clipasso-tiny-vit"
    assert torch.isfinite(res.candidates.losses).all()


# ----------------------------------------------------------------------------- framing


def _photo(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, h, w, generator=g)


def _bicubic(x, size):
    """The reference for "stretch": torch's antialiased bicubic, PIL's bicubic (what the original used)."""
    import torch.nn.functional as F

    return F.interpolate(x[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)


def test_square_input_is_only_resized_by_stretch_and_padded_by_the_others():
    img = _photo(300, 300)
    stretch, _ = prepare_target(img, background_removal=False, framing="stretch")
    assert torch.allclose(stretch, _bicubic(img, (224, 224)), atol=1e-6)
    for framing in ("fix-scale", "pad"):
        t, _ = prepare_target(img, background_removal=False, framing=framing)
        assert t.shape == (3, 224, 224) and float(t[:, :2].min()) > 0.999  # a white margin
        assert not torch.allclose(t, stretch, atol=1e-3)
    same = prepare_target(_photo(224, 224), background_removal=False, framing="stretch")[0]
    assert torch.equal(same, _photo(224, 224))  # already the canvas size: untouched


def test_stretch_resizes_a_non_square_input_straight_to_the_square():
    img = _photo(120, 180)
    t, _ = prepare_target(img, background_removal=False, framing="stretch")
    assert torch.allclose(t, _bicubic(img, (224, 224)), atol=1e-6)
    up = _photo(60, 30)  # upscaling (no antialiasing then)
    assert torch.allclose(
        prepare_target(up, background_removal=False, framing="stretch")[0], _bicubic(up, (224, 224)), atol=1e-6
    )


def test_fix_scale_pads_by_ten_input_pixels_a_side():
    img = _photo(60, 100) * 0.5  # never white
    t, _ = prepare_target(img, canvas=120, background_removal=False, framing="fix-scale")  # side 100+20: no resize
    ref = torch.ones(3, 120, 120)
    ref[:, 30:90, 10:110] = img
    assert torch.allclose(t, ref, atol=1e-6)
    # pad (ours) puts round(100 * 10/224) = 4 px a side instead
    p, _ = prepare_target(img, canvas=108, background_removal=False, framing="pad")
    assert float(p[:, :, :4].min()) == 1.0 and float(p[:, 50, 4:104].max()) <= 0.5


def test_fix_scale_margin_is_in_the_original_inputs_pixels():
    big = Image.new("RGB", (2000, 1000), "black")  # shrunk to 1024 x 512 before use: 10 px -> 5 px
    # the white square is 1024 + 2 x 5 = 1034 px, shown on a 517 px canvas: margins of 2.5 px (10 px of the
    # shrunk picture would give 4.95 px)
    t, _ = prepare_target(big, canvas=517, background_removal=False, framing="fix-scale")
    row = t[:, 258].amin(0)
    white = (row > 0.5).nonzero().flatten().tolist()
    assert white[:2] == [0, 1] and white[-2:] == [515, 516] and len(white) in (4, 5, 6)
    assert float(row[:2].min()) > 0.9 and float(row[4:513].max()) < 0.01


def test_mask_is_framed_like_the_picture():
    img = _object(size=(180, 120), mode="RGBA")
    for framing in ("stretch", "fix-scale", "pad"):
        t, m = prepare_target(img, background_removal=True, framing=framing)
        assert m is not None and m.shape == (224, 224)
        assert float(t[0][m == 0].mean()) > 0.9  # off the object: white


def test_unknown_framing_is_a_clear_error():
    with pytest.raises(SettingsError, match="framing must be one of stretch, fix-scale, pad"):
        prepare_target(_photo(10, 10), background_removal=False, framing="crop")
    with pytest.raises(SettingsError, match="framing"):
        sketch(_photo(10, 10), framing="squash", loss="trace", saliency="none", iterations=1, device="cpu")


def _trace_sketch(img, **kw):
    base = dict(
        loss="trace",
        saliency="none",
        strokes=4,
        seeds=2,
        iterations=3,
        device="cpu",
        background_removal=False,
        allow_download=False,
        eval_interval=1,
    )
    base.update(kw)
    return sketch(img, **base)


def test_stretched_sketch_comes_back_with_the_inputs_aspect_ratio():
    img = _object(size=(180, 120))  # 3:2 landscape
    res = _trace_sketch(img, framing="stretch", drawing_order=True)
    assert res.framing == "stretch" and res.settings["framing"] == "stretch"
    assert res.settings["input_size"] == [120, 180]
    assert res.strokes.canvas == (149, 224) and res.candidates.canvas == (149, 224)
    # optimisation-frame values stay square: target, initial strokes, the winner before mapping
    assert res.target.shape == (3, 224, 224) and res.initial.canvas == (224, 224)
    frame = res.frame_strokes
    assert frame.canvas == (224, 224) and res.drawing_order is not None
    assert torch.allclose(res.strokes.points[..., 0], frame.points[..., 0])
    assert torch.allclose(res.strokes.points[..., 1], frame.points[..., 1] * 149 / 224)
    assert torch.equal(res.strokes.widths, frame.widths)  # the pen keeps its width
    assert torch.equal(res.strokes.losses, frame.losses)  # the losses are the original's, in its frame
    assert res.render(scale=1.0).shape == (3, 149, 224)
    assert 'viewBox="0 0 224 149"' in res.svg()
    tall = _trace_sketch(_object(size=(100, 200)), framing="stretch", seeds=1)
    assert tall.strokes.canvas == (224, 112)


def test_padded_framings_return_the_square_and_paper_stretches():
    img = _object(size=(180, 120))
    for framing in ("pad", "fix-scale"):
        res = _trace_sketch(img, framing=framing, seeds=1)
        assert res.strokes.canvas == (224, 224) and res.frame_strokes is res.strokes
    assert _trace_sketch(img, seeds=1).framing == "stretch"  # the paper preset, as the original
    from clipasso.settings import PRESETS

    assert PRESETS["paper"]["framing"] == "stretch" and PRESETS["fast"]["framing"] in ("stretch", "fix-scale", "pad")
    assert _trace_sketch(img, seeds=1, preset="fast").framing == PRESETS["fast"]["framing"]


def test_matting_searches_every_models_dir_and_the_environment(monkeypatch, tmp_path):
    """A list of folders and $CLIPASSO_MODELS_DIR reach the matting model (was: only the first folder)."""
    import shutil

    from clipasso.prepare import matting

    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "empty"))
    first, second, env = tmp_path / "first", tmp_path / "second", tmp_path / "env"
    for d in (first, second, env):
        d.mkdir()
    shutil.copy(os.path.join(matting.BUNDLED_DIR, "u2netp.onnx"), second / "u2netp.onnx")
    seen = []
    real = matting.get_session

    def spy(model, models_dir=None, allow_download=True):
        seen.append(matting.find_weights(model, models_dir))
        return real(model, models_dir, allow_download)

    monkeypatch.setattr(matting, "get_session", spy)
    img = Image.new("RGB", (64, 48), (120, 160, 90))
    ImageDraw.Draw(img).ellipse([16, 8, 48, 40], fill=(200, 30, 30))
    prepare_target(img, background_removal=True, models_dir=[str(first), str(second)], allow_download=False)
    assert seen[-1] == str(second / "u2netp.onnx")
    monkeypatch.setenv("CLIPASSO_MODELS_DIR", os.pathsep.join([str(first), str(env)]))
    shutil.copy(os.path.join(matting.BUNDLED_DIR, "u2netp.onnx"), env / "u2netp.onnx")
    prepare_target(img, background_removal=True, allow_download=False)
    assert seen[-1] == str(env / "u2netp.onnx")
