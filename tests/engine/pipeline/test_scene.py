"""Scene mode end to end (clipasso.scene): real photos split by the bundled u2netp, each layer's start points in
its own region, each layer's objective, the joint pass, per-layer abstraction, and the clear errors; with the
weights-free trace loss and with tiny random CLIP models of both families loaded through the real loader."""

from __future__ import annotations

import pytest
import torch

from clipasso.errors import WeightsNotFoundError
from clipasso.pipeline import sketch
from clipasso.prepare.layers import split_layers
from clipasso.prepare.target import prepare_picture
from clipasso.prepare.xdog import xdog_edges
from clipasso.scene import combine_layers, joint_pass, layer_objective, place_layer
from clipasso.settings import SettingsError, SketchSettings
from clipasso.strokes import Strokes

skdata = pytest.importorskip("skimage.data")


def _scene(**kw):
    base = dict(
        scene=True,
        loss="trace",
        saliency="mask",
        strokes=6,
        background_strokes=10,
        seeds=2,
        iterations=20,
        canvas=128,
        device="cpu",
        allow_download=False,
    )
    base.update(kw)
    return SketchSettings.from_preset("fast", **base).validate()


@pytest.fixture(scope="module")
def chelsea_layers():
    s = _scene()
    picture, mask, _ = prepare_picture(skdata.chelsea(), s.prepare, keep_background=True)
    return split_layers(picture, mask)


def _start_pixels(strokes: Strokes) -> torch.Tensor:
    """[B*S, 2] (row, column) of every stroke's first control point."""
    first = strokes.points[:, :, 0].reshape(-1, 2)
    return torch.stack([first[:, 1].floor().long(), first[:, 0].floor().long()], -1)


@pytest.mark.parametrize("saliency", ["mask", "clip-attention", "none"])
def test_each_layers_strokes_start_in_its_region(chelsea_layers, saliency, tiny_models_dir):
    s = _scene(saliency=saliency, models_dir=tiny_models_dir)
    assert chelsea_layers.names == ("background", "foreground")
    for layer in chelsea_layers.names:
        initial, sal = place_layer(s, chelsea_layers, layer, "cpu")
        assert initial.num_strokes == (10 if layer == "background" else 6) and initial.num_candidates == 2
        rows, cols = _start_pixels(initial).T
        region = chelsea_layers.region(layer)
        assert bool((region[rows, cols] == 1).all()), f"{layer} strokes start outside the {layer}"
        if layer == "background":
            assert bool((chelsea_layers.hole[rows, cols] == 0).all())
        if saliency != "none":  # start on the layer's own edges (saliency x XDoG of its target)
            edges = xdog_edges(chelsea_layers.target(layer))
            assert bool((edges[rows, cols] > 0).all())
            assert float(sal[region == 0].abs().max()) == 0.0


def test_trace_scene_on_a_real_photo(tmp_path):
    res = sketch(skdata.coffee(), _scene())
    assert set(res.layers) == {"background", "foreground"}
    assert res.strokes.layers == ("background",) * 10 + ("foreground",) * 6
    bg, fg = res.layers["background"], res.layers["foreground"]
    assert bg.objective.term("trace") is not None and bg.objective.encoder is None
    # each layer was optimised against its own target: the background's has the object inpainted
    assert torch.equal(fg.target, fg.target * fg.region + (1 - fg.region))
    assert not torch.equal(bg.target, res.target)
    assert float(bg.run.history[-1].min()) < float(bg.run.history[0].min())  # the layer's own loss went down
    j = res.joint
    assert j.iterations == 2 and j.loss_after <= j.loss_before
    assert set(j.layer_losses_before) == set(j.layer_losses_after) == {"background", "foreground"}
    assert res.settings["scene"] is True and res.settings["layers"] == {"background": 10, "foreground": 6}
    svg = res.svg()
    assert '<g id="background"' in svg and '<g id="foreground"' in svg
    res.save_png(tmp_path / "scene.png")
    assert (tmp_path / "scene.png").stat().st_size > 0


@pytest.mark.parametrize("loss, saliency", [("clip", "clip-attention"), ("clip+trace", "clip-relevancy")])
def test_tiny_clip_models_scene_uses_rn_for_the_object_and_a_vit_block_for_the_background(
    tiny_models_dir, loss, saliency
):
    s = _scene(loss=loss, saliency=saliency, scene_fidelity=1, iterations=4, num_augs=1, models_dir=tiny_models_dir)
    res = sketch(skdata.chelsea(), s.replace(canvas=224))
    bg, fg = res.layers["background"].objective, res.layers["foreground"].objective
    assert bg.encoder.is_vit and not fg.encoder.is_vit
    assert bg.term("clip").layer_weights == {"block1": 1.0}
    assert set(fg.term("clip").layer_weights) == {"layer2", "layer3"}
    assert (bg.term("trace") is not None) == (loss == "clip+trace")
    assert res.joint.loss_after <= res.joint.loss_before
    assert res.settings["scene_block"] == 1 and res.settings["background_model"] == "ViT-B-32"


def test_no_salient_object_is_one_background_layer():
    res = sketch(skdata.astronaut(), _scene(background_removal=False, iterations=10))
    assert list(res.layers) == ["background"] and res.strokes.layers == ("background",) * 10
    assert any("one background layer" in n for n in res.notes)
    assert res.mask is None


def test_auto_strokes_prunes_each_layer():
    s = _scene(auto_strokes=0.8, prune_iterations=0, iterations=15, joint_iterations=0, drawing_order=True)
    res = sketch(skdata.chelsea(), s)
    for name, budget in (("background", 10), ("foreground", 12)):  # the foreground prunes from 2 x strokes
        ab = res.layers[name].abstraction
        assert ab is not None and ab.counts[0] == budget and ab.count <= budget
        assert res.strokes.layers.count(name) == ab.count
        assert sorted(res.layers[name].drawing_order.order) == list(range(ab.count))  # ordered within the layer
    n_bg = res.strokes.layers.count("background")
    assert res.strokes.layers == ("background",) * n_bg + ("foreground",) * (res.strokes.num_strokes - n_bg)
    assert res.joint.iterations == 0 and res.joint.loss_after == res.joint.loss_before


def test_joint_pass_api_keeps_layers_and_never_ends_worse(chelsea_layers):
    s = _scene()
    parts = {}
    objectives = {}
    for layer in chelsea_layers.names:
        initial, _ = place_layer(s, chelsea_layers, layer, "cpu", seeds=[0])
        parts[layer] = initial
        objectives[layer] = layer_objective(s, layer, chelsea_layers.target(layer), "cpu")
    joined = combine_layers(parts)
    whole = layer_objective(s, "foreground", chelsea_layers.picture, "cpu")
    out, result = joint_pass(
        joined, chelsea_layers.picture, whole, s.optimize_config(), 10, layer_objectives=objectives
    )
    assert out.layers == joined.layers and result.run.iterations_run == 10
    assert result.loss_after < result.loss_before  # random starting strokes: the pass must help
    assert set(result.moved) == {"background", "foreground"} and min(result.moved.values()) > 0
    from clipasso.errors import PipelineError

    with pytest.raises(PipelineError, match="layered strokes"):
        joint_pass(parts["foreground"], chelsea_layers.picture, whole, s.optimize_config(), 1)


def test_bad_scene_settings_are_clear_errors(tmp_path):
    with pytest.raises(SettingsError, match="scene_fidelity must be literal, balanced, loose or a ViT-B/32 block"):
        _scene(scene_fidelity=12)
    with pytest.raises(SettingsError, match="background_strokes must be at least 1"):
        _scene(background_strokes=0)
    with pytest.raises(SettingsError, match="background strokes x seeds"):
        _scene(background_strokes=1024, seeds=64)
    empty = tmp_path / "no-weights"
    empty.mkdir()
    with pytest.raises(WeightsNotFoundError, match="ViT-B-32"):  # the background's encoder, offline and missing
        sketch(skdata.chelsea(), _scene(loss="clip", models_dir=str(empty), iterations=1))
