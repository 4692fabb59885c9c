"""Scene mode in ComfyUI: Split Scene Layers, Combine Sketch Layers, Optimize Sketch's vit_block and the one-box
node's scene inputs, called as ComfyUI calls them (inside torch.inference_mode), inside the real ComfyUI 0.3.75
core, on a real photo (scikit-image's astronaut) with the bundled u2netp, the weights-free trace loss and the
tiny random CLIP models where CLIP is needed."""

from __future__ import annotations

import asyncio
import os
import shutil
import xml.etree.ElementTree as ET

import pytest
import torch

from e2e.comfy_env import comfyui_or_skip, import_core, load_pack
from e2e.server import find_u2netp

SVG_NS = "{http://www.w3.org/2000/svg}"
NEW_NODES = ("CLIPassoSplitLayers", "CLIPassoCombineLayers")


@pytest.fixture(scope="module")
def N(tmp_path_factory, tiny_models_dir):
    folder_paths = import_core(comfyui_or_skip())
    base = tmp_path_factory.mktemp("comfy_dirs_scene")
    for sub in ("output", "input", "temp"):
        (base / sub).mkdir()
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_temp_directory(str(base / "temp"))
    folder_paths.add_model_folder_path("clipasso", str(tiny_models_dir), is_default=True)
    src = find_u2netp()
    if src is None:
        pytest.skip("rembg's u2netp.onnx is needed (clipasso/data/u2netp.onnx)")
    matting = base / "matting"
    matting.mkdir()
    shutil.copy(src, matting / "u2netp.onnx")
    folder_paths.add_model_folder_path("clipasso", str(matting))
    pack = load_pack()
    ext = asyncio.run(pack.comfy_entrypoint())
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(ext.get_node_list())}


def run(node, **inputs):
    cls = node.PREPARE_CLASS_CLONE({})
    with torch.inference_mode():
        return cls.execute(**inputs)


def node_error(N):
    import sys

    return sys.modules[N["CLIPassoSplitLayers"].__module__].NodeInputError


@pytest.fixture(scope="module")
def astronaut():
    """scikit-image's astronaut as a ComfyUI IMAGE [1,160,160,3]."""
    from skimage import data

    pic = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(255)
    pic = torch.nn.functional.interpolate(pic[None], size=(160, 160), mode="area")[0]
    return pic.permute(1, 2, 0).unsqueeze(0).contiguous()


@pytest.fixture(scope="module")
def matte(N, astronaut):
    """The astronaut's object mask from the Remove Background node (the bundled u2netp)."""
    _, mask = run(
        N["CLIPassoRemoveBackground"],
        image=astronaut,
        model="u2netp",
        threshold=0.5,
        soft_mask=False,
        allow_download=False,
    ).args
    share = float(mask.mean())
    assert 0.1 < share < 0.8, f"u2netp found {share:.0%} of the astronaut photo to be the object"
    return mask


@pytest.fixture(scope="module")
def split(N, astronaut, matte):
    return run(N["CLIPassoSplitLayers"], image=astronaut, mask=matte).args


@pytest.fixture(scope="module")
def models(N):
    return run(
        N["CLIPassoLoadModels"],
        loss_model="ViT-B-32",
        saliency_model="ViT-B-32",
        pretrained="openai",
        device="cpu",
        precision="fp32",
        allow_download=False,
    )[0]


# --------------------------------------------------------------------------- schema


def _inputs(N, node_id):
    return [i.id for i in N[node_id].GET_SCHEMA().inputs]


def test_scene_nodes_are_registered_and_new_inputs_come_last_with_todays_behaviour(N):
    for node_id in NEW_NODES:
        schema = N[node_id].GET_SCHEMA()
        assert schema.category == "CLIPasso" and schema.description
        for item in list(schema.inputs) + list(schema.outputs):
            assert item.tooltip, f"{node_id}.{item.id}"
        N[node_id].GET_NODE_INFO_V1()
    for node_id in ("CLIPassoOptimize", "CLIPassoAutoAbstraction", "CLIPassoDrawingOrder"):
        schema = {i.id: i for i in N[node_id].GET_SCHEMA().inputs}
        assert _inputs(N, node_id)[-1] == "vit_block", node_id
        assert schema["vit_block"].optional and schema["vit_block"].default == "default"
        assert {"literal", "balanced", "loose", "0", "11"} <= set(schema["vit_block"].options)
    for node_id in ("CLIPassoSketch", "CLIPassoBatch"):
        assert _inputs(N, node_id)[-3:] == ["scene", "background_strokes", "scene_fidelity"], node_id
        schema = {i.id: i for i in N[node_id].GET_SCHEMA().inputs}
        assert schema["scene"].default is False and schema["background_strokes"].default == 64
        assert schema["scene_fidelity"].default == "balanced" and "2" in schema["scene_fidelity"].options
    assert _inputs(N, "CLIPassoSketch")[-4] == "renderer"  # the older last input keeps its place


# --------------------------------------------------------------------------- Split Scene Layers


def test_split_scene_layers_on_a_real_photo(N, astronaut, matte, split):
    from clipasso.prepare.layers import split_layers

    fg, bg, fg_region, bg_region = split
    assert fg.shape == bg.shape == astronaut.shape and fg_region.shape == bg_region.shape == (1, 160, 160)
    pic, obj = astronaut[0], matte[0] >= 0.5
    # foreground: the object as it is, white around it; its region is the object
    assert torch.allclose(fg[0][obj], pic[obj], atol=1e-6) and float(fg[0][~obj].min()) == 1.0
    assert torch.equal(fg_region[0], obj.float())
    # background: the photo untouched outside the hole, the hole (the object grown by a margin) filled
    hole = bg_region[0] < 0.5
    assert bool((hole | ~obj).all()), "the hole covers the whole object"
    assert float((fg_region[0] * bg_region[0]).max()) == 0.0  # the regions do not overlap
    assert 0 < int((hole & ~obj).sum()) < 0.5 * int(obj.sum())  # a thin margin around the object
    assert torch.allclose(bg[0][~hole], pic[~hole], atol=1e-6)

    # the fill is smooth (biharmonic): the astronaut's detail is gone from the hole
    def roughness(img):
        dx = (img[:, 1:, :] - img[:, :-1, :]).abs().mean(-1)[:-1]
        dy = (img[1:, :, :] - img[:-1, :, :]).abs().mean(-1)[:, :-1]
        return float((dx + dy)[hole[:-1, :-1]].mean())

    assert roughness(bg[0]) < 0.25 * roughness(pic)
    # the node is the engine's split, nothing else
    ref = split_layers(pic.permute(2, 0, 1), matte[0])
    assert torch.allclose(bg[0].permute(2, 0, 1).cpu(), ref.background, atol=1e-6)


def test_split_without_an_object_is_all_background(N, astronaut):
    fg, bg, fg_region, bg_region = run(N["CLIPassoSplitLayers"], image=astronaut, mask=torch.zeros(1, 160, 160)).args
    assert float(fg.min()) == 1.0 and float(fg_region.max()) == 0.0
    assert torch.allclose(bg, astronaut, atol=1e-6) and float(bg_region.min()) == 1.0


def test_split_refuses_bad_inputs_with_clear_messages(N, astronaut, matte):
    err = node_error(N)
    two = torch.cat([astronaut, astronaut])
    with pytest.raises(err, match="3 masks for 2 pictures"):
        run(N["CLIPassoSplitLayers"], image=two, mask=matte.repeat(3, 1, 1))
    nan = matte.clone()
    nan[0, 0, 0] = float("nan")
    with pytest.raises(err, match="NaN"):
        run(N["CLIPassoSplitLayers"], image=astronaut, mask=nan)
    with pytest.raises(err, match="hole_margin"):
        run(N["CLIPassoSplitLayers"], image=astronaut, mask=matte, hole_margin=-5)
    with pytest.raises(err, match="mask"):
        run(N["CLIPassoSplitLayers"], image=astronaut, mask=None)


# --------------------------------------------------------------------------- the layers, node by node


def _layer(N, target, region, strokes, seeds=2, iterations=4, **opt):
    start = run(
        N["CLIPassoInitStrokes"],
        image=target,
        saliency=region,
        mask=region,
        strokes=strokes,
        seeds=seeds,
        seed=0,
        temperature=0.3,
        segments=1,
        width=1.5,
        use_edges=True,
        canvas=128,
    ).args[0]
    kw = dict(preset="fast", iterations=iterations, learning_rate=1.0, geometric_weight=1.0, semantic_weight=0.1)
    kw.update(augmentations=1, loss="trace")
    kw.update(opt)
    best, _ = run(N["CLIPassoOptimize"], image=target, strokes=start, **kw).args
    return start, best


def test_split_layers_sketched_and_combined_save_one_svg_group_per_layer(N, split):
    import folder_paths
    from clipasso.output.svg import read_svg

    fg, bg, fg_region, bg_region = split
    fg_start, fg_best = _layer(N, fg, fg_region, strokes=5)
    bg_start, bg_best = _layer(N, bg, bg_region, strokes=7)
    # strokes start in their layer's region, framed onto the canvas as the picture is (white margin = outside)
    from clipasso.prepare.target import prepare_target

    for start, region in ((fg_start, fg_region), (bg_start, bg_region)):
        outside = (1 - region[0]).expand(3, -1, -1)
        framed = 1 - prepare_target(outside, canvas=128, background_removal=False, framing="pad")[0][0]
        near = torch.nn.functional.max_pool2d(framed[None, None], 3, stride=1, padding=1)[0, 0] > 0.5
        xy = start.points[:, :, 0].clamp(0, 127).long()
        assert bool(near[xy[..., 1], xy[..., 0]].all())

    layered, image = run(N["CLIPassoCombineLayers"], background=bg_best, foreground=fg_best).args
    assert layered.num_candidates == 1 and layered.num_strokes == 12 and layered.canvas == (128, 128)
    assert layered.layers == ("background",) * 7 + ("foreground",) * 5
    # each layer kept its lowest-loss candidate
    for name, best in (("background", bg_best), ("foreground", fg_best)):
        win = int(torch.argmin(best.losses))
        assert torch.equal(layered.layer(name).points[0], best.points[win])
    assert image.shape == (1, 128, 128, 3) and float(image.min()) < 0.5

    saved = run(N["CLIPassoSaveSVG"], strokes=layered, filename_prefix="clipasso/scene_test")
    (entry,) = saved.ui.as_dict()["images"]
    path = os.path.join(folder_paths.get_output_directory(), entry["subfolder"], entry["filename"])
    with open(path, encoding="utf-8") as f:
        text = f.read()
    root = ET.fromstring(text)
    groups = {g.get("id"): g for g in root.iter(SVG_NS + "g") if g.get("id")}
    assert set(groups) == {"background", "foreground"}
    assert len(groups["background"].findall(SVG_NS + "path")) == 7
    assert len(groups["foreground"].findall(SVG_NS + "path")) == 5
    back = read_svg(text)
    assert back.layers == layered.layers and torch.allclose(back.points, layered.points, atol=1e-2)

    # Load SVG gives the layers back, and one layer can be combined with an already layered sketch
    loaded = run(N["CLIPassoLoadSVG"], svg_text=text).args[0]
    assert loaded.layers == layered.layers


def test_combine_refuses_what_it_cannot_join(N, split):
    from clipasso.strokes import Strokes

    err = node_error(N)
    combine = N["CLIPassoCombineLayers"]
    with pytest.raises(err, match="connect the background"):
        run(combine)
    pts = torch.tensor([[[[2.0, 2.0], [5.0, 5.0], [8.0, 8.0], [10.0, 10.0]]]]).repeat(2, 1, 1, 1)
    no_losses = Strokes.from_points(pts, (32, 32))
    with pytest.raises(err, match="2 candidates per picture and no losses"):
        run(combine, background=no_losses, foreground=no_losses.select([0]))
    other_canvas = Strokes.from_points(pts[:1] * 2, (64, 64))
    with pytest.raises(err, match="canvas"):
        run(combine, background=no_losses.select([0]), foreground=other_canvas)
    two_pictures = Strokes.concat([no_losses.select([0]), no_losses.select([1])]).replace(pictures=(0, 1))
    with pytest.raises(err, match="different numbers of pictures"):
        run(combine, background=two_pictures, foreground=no_losses.select([0]))
    with pytest.raises(err, match="SKETCH_STROKES"):
        run(combine, background="not strokes")
    # one layer alone is a one-layer sketch
    alone, _ = run(combine, background=no_losses.select([0])).args
    assert alone.layers == ("background",)


# --------------------------------------------------------------------------- Optimize Sketch's vit_block


def test_optimize_sketch_puts_the_geometric_loss_on_one_vit_block(N, models, split):
    import sys

    loop_config = sys.modules[N["CLIPassoOptimize"].__module__].loop_config  # the pack as ComfyUI loaded it

    assert models.loss.is_vit and len(models.loss.visual.transformer.resblocks) == 3  # the tiny ViT-B-32
    _, _, config = loop_config(models, "fast", vit_block="1")
    assert config.layer_weights == {"block1": 1.0}
    _, _, config = loop_config(models, "fast", vit_block="literal")  # literal = block 2
    assert config.layer_weights == {"block2": 1.0}
    _, _, default = loop_config(models, "fast", vit_block="default")
    assert default.layer_weights is None  # the encoder's own layers, as before

    _, bg, _, bg_region = split
    start, best = _layer(N, bg, bg_region, strokes=4, seeds=1, iterations=3, loss="clip", models=models, vit_block="1")
    _, other = _layer(N, bg, bg_region, strokes=4, seeds=1, iterations=3, loss="clip", models=models, vit_block="2")
    assert torch.isfinite(best.losses).all() and not torch.equal(best.points, start.points)
    assert not torch.allclose(best.losses, other.losses)  # a different block is a different loss

    err = node_error(N)
    with pytest.raises(err, match="has blocks 0-2"):
        _layer(N, bg, bg_region, strokes=2, seeds=1, iterations=1, loss="clip", models=models, vit_block="balanced")
    rn = run(
        N["CLIPassoLoadModels"],
        loss_model="RN101",
        saliency_model="ViT-B-32",
        pretrained="openai",
        device="cpu",
        precision="fp32",
        allow_download=False,
    )[0]
    with pytest.raises(err, match="needs a ViT loss model"):
        _layer(N, bg, bg_region, strokes=2, seeds=1, iterations=1, loss="clip", models=rn, vit_block="8")
    # the trace loss has no CLIP layers: the input is not used
    _layer(N, bg, bg_region, strokes=2, seeds=1, iterations=1, vit_block="8")


# --------------------------------------------------------------------------- the one-box node


def one_box(N, image, **kw):
    base = dict(
        image=image,
        preset="fast",
        strokes=3,
        seeds=1,
        seed=0,
        iterations=3,
        remove_background=True,
        loss_model="RN101",
        saliency_model="ViT-B-32",
        allow_download=False,
        loss="trace",
        saliency="mask",
        scene=True,
        background_strokes=5,
    )
    base.update(kw)
    return run(N["CLIPassoSketch"], **base).args


@pytest.fixture
def progress_events():
    import comfy.utils

    events = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: events.append((value, total)))
    yield events
    comfy.utils.set_progress_bar_global_hook(None)


def test_one_box_node_sketches_a_scene_in_layers_without_weights(N, astronaut, progress_events):
    from clipasso.output.svg import to_svg

    strokes, image, loss = one_box(N, astronaut, scene_fidelity="8")
    assert strokes.num_candidates == 1 and strokes.num_strokes == 8
    assert strokes.layers == ("background",) * 5 + ("foreground",) * 3
    assert image.shape[0] == 1 and float(image.min()) < 0.5 and loss == pytest.approx(float(strokes.losses[0]))
    # the progress bar counts both layers' runs (the joint pass of 3 iterations rounds to none)
    assert progress_events[-1] == (6, 6)
    svg = to_svg(strokes)
    assert '<g id="background"' in svg and '<g id="foreground"' in svg
    # scene off (the default) is today's sketch: no layers
    plain = one_box(N, astronaut, scene=False)[0]
    assert plain.layers is None and plain.num_strokes == 3


def test_one_box_scene_with_the_tiny_clip_models(N, astronaut):
    strokes, _, loss = one_box(
        N, astronaut, loss="clip", saliency="clip-attention", scene_fidelity="literal", iterations=2
    )
    assert strokes.layer_names == ("background", "foreground") and torch.isfinite(torch.tensor(loss))
    with pytest.raises(ValueError, match="blocks 0-2"):  # the tiny ViT has 3 blocks; balanced is block 8
        one_box(N, astronaut, loss="clip", saliency="clip-attention", scene_fidelity="balanced", iterations=1)


def test_one_box_scene_inputs_refuse_bad_values(N, astronaut):
    err = node_error(N)
    with pytest.raises(err, match="scene_fidelity"):
        one_box(N, astronaut, scene_fidelity="very loose")
    with pytest.raises(err, match="background strokes x seeds"):
        one_box(N, astronaut, background_strokes=1024, seeds=64)
