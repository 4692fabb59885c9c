"""clipasso.pipeline.sketch end to end with tiny real models, and its input handling."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from clipasso.images import ImageError
from clipasso.pipeline import EXAMPLE_IMAGE, PipelineError, prepare_target, sketch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_WEIGHTS = os.path.join(os.path.dirname(ROOT), "shared", "weights")


def _object(size=(160, 120), mode="RGB"):
    img = Image.new(mode, size, "white" if mode != "RGBA" else (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    w, h = size
    fill = "black" if mode != "RGBA" else (20, 20, 20, 255)
    d.ellipse([w * 0.25, h * 0.2, w * 0.75, h * 0.8], outline=fill, width=4)
    d.line([w * 0.5, h * 0.2, w * 0.5, h * 0.05], fill=fill, width=4)
    return img


def _quick(models_dir, **kw):
    base = dict(strokes=4, seeds=2, iterations=2, eval_interval=1, device="cpu", models_dir=models_dir,
                background_removal=False, allow_download=False, num_augs=1)
    base.update(kw)
    return base


def test_sketch_end_to_end_with_saliency(tiny_models_dir):
    res = sketch(_object(), **_quick(tiny_models_dir))
    assert res.strokes.num_candidates == 1 and res.candidates.num_candidates == 2
    assert res.strokes.points.shape == (1, 4, 4, 2) and res.strokes.canvas == (224, 224)
    assert res.candidates.seeds == (0, 1000)
    assert res.loss == float(res.candidates.losses.min())
    assert res.saliency is not None and res.saliency.shape == (224, 224)
    assert res.target.shape == (3, 224, 224)
    assert res.render(1.0).shape == (3, 224, 224)
    assert res.settings["clip_model"] == "RN101" and res.settings["iterations"] == 2


def test_presets_and_overrides(tiny_models_dir):
    res = sketch(_object(), preset="fast", **_quick(tiny_models_dir, seeds=[5], saliency="none"))
    assert res.settings["preset"] == "fast" and res.settings["aug_pool"] > 0
    assert res.candidates.seeds == (5,) and res.saliency is None
    with pytest.raises(PipelineError, match="preset"):
        sketch(_object(), preset="turbo", **_quick(tiny_models_dir))
    with pytest.raises(PipelineError, match="strokes"):
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
    one, _ = prepare_target(np.array([[[255, 0, 0]]], dtype=np.uint8), background_removal=False)
    assert one.shape == (3, 224, 224) and torch.isfinite(one).all()


def test_one_pixel_image_sketches(tiny_models_dir):
    res = sketch(np.array([[[0, 0, 0]]], dtype=np.uint8), **_quick(tiny_models_dir, iterations=1, seeds=1))
    assert torch.isfinite(res.strokes.points).all()


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


@pytest.mark.skipif(not os.path.isfile(os.path.join(SHARED_WEIGHTS, "u2netp.onnx")),
                    reason="rembg's u2netp.onnx is not in ../shared/weights")
def test_background_removal_with_u2netp(monkeypatch):
    monkeypatch.setenv("U2NET_HOME", SHARED_WEIGHTS)
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
