"""Text guidance, styled strokes, pen and canvas inputs of Optimize Sketch and CLIPasso Sketch, called as
ComfyUI calls them (inside torch.inference_mode), inside the real ComfyUI 0.3.75 core, tiny real models."""

from __future__ import annotations

import asyncio

import pytest
import torch

from e2e.comfy_env import comfyui_or_skip, import_core, load_pack

FEATURE_INPUTS = (
    "text",
    "text_weight",
    "optimize_width",
    "optimize_opacity",
    "color_from_image",
    "optimize_color",
    "pen_width",
)


def run(node, **inputs):
    cls = node.PREPARE_CLASS_CLONE({})
    with torch.inference_mode():
        return cls.execute(**inputs)


@pytest.fixture(scope="module")
def N(tmp_path_factory, tiny_models_dir):
    folder_paths = import_core(comfyui_or_skip())
    base = tmp_path_factory.mktemp("comfy_dirs_features")
    for sub in ("output", "input", "temp"):
        (base / sub).mkdir()
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_temp_directory(str(base / "temp"))
    folder_paths.add_model_folder_path("clipasso", str(tiny_models_dir), is_default=True)
    pack = load_pack()
    ext = asyncio.run(pack.comfy_entrypoint())
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(ext.get_node_list())}


@pytest.fixture(scope="module")
def models(N):
    return run(
        N["CLIPassoLoadModels"],
        loss_model="RN101",
        saliency_model="ViT-B-32",
        pretrained="openai",
        device="cpu",
        precision="fp32",
        allow_download=False,
    )[0]


def _red_disk(size=64):
    yy, xx = torch.meshgrid(torch.linspace(-0.5, 0.5, size), torch.linspace(-0.5, 0.5, size), indexing="ij")
    inside = ((xx**2 + yy**2) < 0.09).float()
    img = torch.ones(size, size, 3)
    img[..., 1] -= 0.8 * inside
    img[..., 2] -= 0.8 * inside
    return img.unsqueeze(0)


def _start(N, image, canvas=96):
    return run(
        N["CLIPassoInitStrokes"],
        image=image,
        saliency=None,
        mask=None,
        strokes=4,
        seeds=1,
        seed=0,
        temperature=0.3,
        segments=1,
        width=1.5,
        use_edges=True,
        canvas=canvas,
    ).args[0]


def test_new_inputs_are_optional_with_defaults_that_keep_old_workflows(N):
    for node_id in ("CLIPassoOptimize", "CLIPassoSketch"):
        inputs = {i.id: i for i in N[node_id].GET_SCHEMA().inputs}
        for name in FEATURE_INPUTS:
            assert inputs[name].optional, (node_id, name)
        assert inputs["text"].default == "" and inputs["pen_width"].default == 0.0
        assert inputs["optimize_width"].default is False and inputs["color_from_image"].default is False
    assert {i.id: i for i in N["CLIPassoSketch"].GET_SCHEMA().inputs}["canvas"].default == 224


def test_optimize_node_with_text_and_styled_strokes(N, models):
    image = _red_disk()
    start = _start(N, image)
    kw = dict(
        models=models,
        image=image,
        strokes=start,
        preset="fast",
        iterations=3,
        learning_rate=1.0,
        geometric_weight=1.0,
        semantic_weight=0.1,
        augmentations=0,
    )
    plain, _ = run(N["CLIPassoOptimize"], **kw).args
    styled, renders = run(
        N["CLIPassoOptimize"],
        text="a red ball",
        text_weight=1.0,
        optimize_width=True,
        optimize_opacity=True,
        color_from_image=True,
        **kw,
    ).args
    assert renders.shape == (1, 96, 96, 3)
    assert torch.all(plain.widths == 1.5) and torch.all(plain.colors[..., :3] == 0)
    # (the output is each candidate's best state, which after 3 steps may be the start: that the widths
    # move is tested on the engine, tests/engine/optimize/test_styled.py)
    assert not torch.allclose(styled.colors, plain.colors)
    assert float(styled.widths.min()) >= 0.5 and float(styled.widths.max()) <= 4.0
    assert float(styled.colors[..., 3].min()) >= 0.05
    # strokes on the red disk are red-ish: more red than green
    assert bool((styled.colors[..., 0] >= styled.colors[..., 1]).all())
    # the pen draws every output stroke with one width
    penned, _ = run(N["CLIPassoOptimize"], optimize_width=True, pen_width=4.0, **kw).args
    assert torch.all(penned.widths == 2.0)


def test_one_box_node_with_text_pen_and_a_larger_canvas(N):
    strokes, image, loss = run(
        N["CLIPassoSketch"],
        image=_red_disk(),
        preset="fast",
        strokes=3,
        seeds=1,
        seed=0,
        iterations=1,
        remove_background=False,
        loss_model="RN101",
        saliency_model="ViT-B-32",
        allow_download=False,
        text="a red ball",
        pen_width=2.0,
        canvas=256,
    ).args
    assert strokes.canvas == (256, 256) and image.shape == (1, 256, 256, 3)
    assert torch.all(strokes.widths == 1.0)


def test_bad_feature_inputs_say_what_to_change(N, models):
    image = _red_disk()
    with pytest.raises(Exception, match="pen_width must be a finite number"):
        run(
            N["CLIPassoOptimize"],
            models=models,
            image=image,
            strokes=_start(N, image),
            iterations=1,
            pen_width=float("nan"),
        )
