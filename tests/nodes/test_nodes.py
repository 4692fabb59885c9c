"""Node tests: every CLIPasso node called directly, as ComfyUI calls it (inside torch.inference_mode),
with small tensors, inside the real ComfyUI 0.3.75 core (fetched by the e2e harness; no stubs)."""

from __future__ import annotations

import asyncio
import os

import pytest
import torch

from clipasso.testing.external import on_ci

from e2e.comfy_env import comfyui_or_skip, import_core, load_pack
from e2e.server import find_u2netp

WEB_DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "web", "docs")


@pytest.fixture(scope="session")
def core(tmp_path_factory):
    folder_paths = import_core(comfyui_or_skip())
    base = tmp_path_factory.mktemp("comfy_dirs")
    for sub in ("output", "input", "temp"):
        (base / sub).mkdir()
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_input_directory(str(base / "input"))
    folder_paths.set_temp_directory(str(base / "temp"))
    return folder_paths


@pytest.fixture(scope="session")
def pack(core):
    return load_pack()


@pytest.fixture(scope="session")
def N(pack):
    """Node classes by id, from the pack's real entry point."""
    ext = asyncio.run(pack.comfy_entrypoint())
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(ext.get_node_list())}


@pytest.fixture(scope="session")
def models_folder(core, tiny_models_dir):
    core.add_model_folder_path("clipasso", str(tiny_models_dir), is_default=True)
    return tiny_models_dir


def run(node, hidden=None, **inputs):
    """Execute a node the way ComfyUI does: inference mode on, hidden inputs on a class clone."""
    cls = node.PREPARE_CLASS_CLONE(hidden or {})
    with torch.inference_mode():
        return cls.execute(**inputs)


def disk(size=64, r=0.3, batch=1):
    """A dark disk on white, IMAGE [B,H,W,3]."""
    yy, xx = torch.meshgrid(torch.linspace(-0.5, 0.5, size), torch.linspace(-0.5, 0.5, size), indexing="ij")
    inside = ((xx**2 + yy**2) < r * r).float()
    img = (1 - 0.8 * inside).unsqueeze(-1).expand(size, size, 3)
    return img.unsqueeze(0).repeat(batch, 1, 1, 1).contiguous()


def line_strokes(canvas=(32, 32), candidates=1, losses=None, seeds=None):
    from clipasso.strokes import Strokes

    h, w = canvas
    pts = torch.tensor([[[2.0, h / 2], [w / 3, h / 2], [2 * w / 3, h / 2], [w - 2.0, h / 2]]])
    pts = pts.unsqueeze(0).repeat(candidates, 1, 1, 1)
    return Strokes.from_points(pts, canvas, width=1.5, losses=losses, seeds=seeds)


# --------------------------------------------------------------------------- schema

EXPECTED = {
    "CLIPassoLoadModels",
    "CLIPassoRemoveBackground",
    "CLIPassoSaliency",
    "CLIPassoInitStrokes",
    "CLIPassoOptimize",
    "CLIPassoRasterize",
    "CLIPassoSelectBest",
    "CLIPassoSaveSVG",
    "CLIPassoLoadSVG",
    "CLIPassoSketch",
    "CLIPassoAutoAbstraction",
    "CLIPassoDrawingOrder",
    "CLIPassoBatch",
    "CLIPassoSplitLayers",
    "CLIPassoCombineLayers",
    "CLIPassoSketchVideo",
}


def test_entry_point_registers_every_node_with_tooltips(N):
    assert set(N) == EXPECTED
    for node_id, cls in N.items():
        schema = cls.GET_SCHEMA()
        assert schema.category == "CLIPasso"
        assert schema.description, node_id
        for item in list(schema.inputs or []) + list(schema.outputs or []):
            assert item.tooltip, f"{node_id}.{item.id} has no tooltip"
        info = cls.GET_NODE_INFO_V1()  # what /object_info serves; must not raise
        assert info["name"] == node_id
        # the frontend asks for docs/<node>/<locale>.md first, then falls back to docs/<node>.md
        help_page = os.path.join(WEB_DOCS, node_id, "en.md")
        assert os.path.isfile(help_page), f"{node_id} has no help page (web/docs/{node_id}/en.md)"


def test_help_pages_are_in_the_frontends_locale_layout():
    """web/docs holds one folder per node with its en.md (what the frontend asks for first:
    docs/<node>/<locale>.md), plus web/docs/<node>.md, the frontend's fallback for every other language,
    which must be an exact copy of en.md (edit en.md, then copy it over)."""
    docs = WEB_DOCS
    entries = sorted(os.listdir(docs))
    folders = {e for e in entries if os.path.isdir(os.path.join(docs, e))}
    assert folders == EXPECTED
    assert set(entries) - folders == {f"{node_id}.md" for node_id in EXPECTED}
    for node_id in folders:
        with open(os.path.join(docs, node_id, "en.md"), encoding="utf-8") as f:
            page = f.read()
        assert page.startswith("# "), node_id
        with open(os.path.join(docs, f"{node_id}.md"), encoding="utf-8") as f:
            assert f.read() == page, f"web/docs/{node_id}.md differs from {node_id}/en.md: copy en.md over it"


def test_pack_import_and_registration_stay_light(core):
    """Loading the pack and listing its nodes (what ComfyUI does at start-up) imports no model or
    matting library: those load when a node runs."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parents[1]  # tests/, where the e2e package is
    code = (
        "import asyncio, sys\n"
        f"sys.path.insert(0, {str(here)!r})\n"
        "from e2e.comfy_env import import_core, load_pack, ensure_comfyui\n"
        "import_core(ensure_comfyui())\n"
        "pack = load_pack()\n"
        "ext = asyncio.run(pack.comfy_entrypoint())\n"
        "nodes = asyncio.run(ext.get_node_list())\n"
        "[n.GET_NODE_INFO_V1() for n in nodes]\n"
        "heavy = [m for m in ('open_clip', 'rembg', 'onnxruntime', 'timm') if m in sys.modules]\n"
        "print('HEAVY', heavy, len(nodes))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY [] " in out.stdout, out.stdout


# --------------------------------------------------------------------------- rasterize


def test_rasterize_any_size_keeps_aspect_and_draws_ink(N):
    strokes = line_strokes((32, 32), candidates=2)
    image, mask = run(
        N["CLIPassoRasterize"],
        strokes=strokes,
        width=96,
        height=0,
        stroke_color="",
        thickness=1.0,
        background="#ffffff",
    )
    assert image.shape == (2, 96, 96, 3) and mask.shape == (2, 96, 96)
    assert not image.is_inference() or True
    row = mask[0, 48]
    assert float(row[10:86].min()) > 0.9  # the line is drawn across
    assert float(mask[0, :30].max()) < 0.05  # nothing far from it
    assert float(image[0, 48, 48].max()) < 0.1 and float(image[0, 5, 5].min()) > 0.99


def test_rasterize_transparent_colour_and_thickness(N):
    strokes = line_strokes((32, 32))
    img, mask = run(
        N["CLIPassoRasterize"],
        strokes=strokes,
        width=0,
        height=0,
        stroke_color="#ff0000",
        thickness=2.0,
        background="transparent",
    )
    assert img.shape == (1, 32, 32, 4)
    assert torch.allclose(img[..., 3], mask)
    assert float(img[0, 16, 16, 0]) > 0.95 and float(img[0, 16, 16, 1]) < 0.05
    thin = run(
        N["CLIPassoRasterize"], strokes=strokes, width=0, height=0, stroke_color="", thickness=1.0, background="white"
    )[1]
    assert float(mask.sum()) > 1.6 * float(thin.sum())  # twice as thick, about twice the ink


def test_rasterize_rejects_bad_colour_with_clear_message(N):
    with pytest.raises(ValueError, match="background"):
        run(
            N["CLIPassoRasterize"],
            strokes=line_strokes(),
            width=0,
            height=0,
            stroke_color="",
            thickness=1.0,
            background="not-a-colour",
        )
    with pytest.raises(ValueError, match="SKETCH_STROKES"):
        run(
            N["CLIPassoRasterize"],
            strokes=torch.zeros(3),
            width=0,
            height=0,
            stroke_color="",
            thickness=1.0,
            background="#fff",
        )


# --------------------------------------------------------------------------- models, saliency, init


@pytest.fixture(scope="session")
def models(N, models_folder):
    out = run(
        N["CLIPassoLoadModels"],
        loss_model="RN101",
        saliency_model="ViT-B-32",
        pretrained="openai",
        device="auto",
        precision="auto",
        allow_download=False,
    )
    return out[0]


def test_load_models_finds_weights_in_models_folder(models, models_folder):
    assert models.loss.name == "RN101" and not models.loss.is_vit
    assert models.saliency.is_vit
    assert models.loss.source.startswith(str(models_folder))
    from clipasso.device import cpu_bf16_native

    # the CPU runs bf16 where it computes bf16 natively, else fp32 (the engine's rule)
    assert models.device.type == "cpu" and models.autocast_dtype is (torch.bfloat16 if cpu_bf16_native() else None)
    assert ("precision=bf16" if cpu_bf16_native() else "precision=fp32") in repr(models)
    assert not any(p.is_inference() for p in models.loss.model.parameters())
    assert "RN101" in repr(models)


def test_load_models_precision_on_the_cpu(N):
    import sys

    autocast_dtype = sys.modules[N["CLIPassoLoadModels"].__module__].autocast_dtype

    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("fp16", cpu) is None  # fp16 kernels on a CPU are emulated, many times slower: fp32
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    from clipasso.device import amp_dtype

    assert autocast_dtype("auto", cpu) is amp_dtype("auto", cpu)
    assert autocast_dtype("auto", torch.device("cuda")) is torch.float16


def test_load_models_precision_widget_says_the_settings_words(N):
    """The node's 'precision' widget (its name kept for saved workflows) offers the settings' words, and
    what the node hands the optimiser comes back as the same word in its settings."""
    from clipasso.device import PRECISIONS
    from clipasso.settings import field_option

    inputs = {i.id: i for i in N["CLIPassoLoadModels"].GET_SCHEMA().inputs}
    assert "precision" in inputs and "mixed_precision" not in inputs
    assert list(inputs["precision"].options) == list(field_option("mixed_precision").choices) == list(PRECISIONS)
    assert inputs["precision"].default == "auto"
    import sys

    node_models = sys.modules[N["CLIPassoLoadModels"].__module__]
    loop_config = sys.modules[node_models.__name__.rsplit(".", 1)[0] + ".inputs"].loop_config
    for dtype, word in ((None, "fp32"), (torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        models = node_models.ClipassoModels(object(), object(), torch.device("cpu"), dtype)
        _, _, config = loop_config(models)
        assert config.mixed_precision == word


def test_load_models_compile_input_reaches_the_optimiser(N):
    """'compile' is the node's last input (saved workflows keep their widget order), offers the settings'
    words, is checked, and what the node hands on comes back in the optimiser's settings."""
    import sys

    from clipasso.device import COMPILE_MODES

    schema = N["CLIPassoLoadModels"].GET_SCHEMA()
    last = schema.inputs[-1]
    assert last.id == "compile" and list(last.options) == list(COMPILE_MODES) and last.default == "auto"
    node_models = sys.modules[N["CLIPassoLoadModels"].__module__]
    loop_config = sys.modules[node_models.__name__.rsplit(".", 1)[0] + ".inputs"].loop_config
    for word in COMPILE_MODES:
        models = node_models.ClipassoModels(object(), object(), torch.device("cpu"), None, word)
        assert loop_config(models)[2].compile == word
    assert loop_config(None, loss="trace")[2].compile == "auto"  # no models: the default
    with pytest.raises(Exception, match="compile must be one of auto, on, off"):
        run(N["CLIPassoLoadModels"], loss_model="RN50", compile="sometimes")


def test_load_models_missing_weights_names_the_folder(N, models_folder):
    from clipasso.models import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError) as err:
        run(
            N["CLIPassoLoadModels"],
            loss_model="RN50",
            saliency_model="ViT-B-32",
            pretrained="openai",
            device="cpu",
            precision="fp32",
            allow_download=False,
        )
    assert "RN50" in str(err.value) and str(models_folder) in str(err.value)


def test_saliency_map_and_preview_respect_mask(N, models):
    image = disk(64, batch=2)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    sal, preview = run(N["CLIPassoSaliency"], models=models, image=image, mask=mask, method="clip-attention", text="")
    assert sal.shape == (2, 64, 64) and preview.shape == (2, 64, 64, 3)
    assert float(sal.min()) >= 0 and float(sal.max()) <= 1 and float(sal.max()) > 0.5
    assert float(sal[:, :16].abs().max()) == 0 and float(sal[:, 48:].abs().max()) == 0
    free, _ = run(N["CLIPassoSaliency"], models=models, image=image, mask=None, method="clip-attention", text="")
    assert float(free[:, :16].max()) > 0  # without a mask the map covers the picture


def test_saliency_relevancy_runs_with_gradients_under_inference_mode(N, models):
    sal, _ = run(N["CLIPassoSaliency"], models=models, image=disk(48), mask=None, method="clip-relevancy", text="")
    assert sal.shape == (1, 48, 48) and torch.isfinite(sal).all() and float(sal.max()) > 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_image_or_mask_inputs_are_refused(N, bad):
    kw = dict(
        image=disk(32),
        saliency=None,
        mask=None,
        strokes=3,
        seeds=1,
        seed=0,
        temperature=0.3,
        segments=1,
        width=1.5,
        use_edges=False,
        canvas=64,
    )
    mask = torch.ones(1, 32, 32)
    mask[0, 3, 3] = bad
    with pytest.raises(Exception, match="NaN or infinite"):
        run(N["CLIPassoInitStrokes"], **dict(kw, mask=mask))
    image = disk(32).clone()
    image[0, 5, 5, 1] = bad
    with pytest.raises(Exception, match="NaN or infinite"):
        run(N["CLIPassoInitStrokes"], **dict(kw, image=image))


def test_init_strokes_batch_of_pictures_times_seeds(N):
    image = disk(64, batch=2)
    sal = torch.zeros(2, 64, 64)
    sal[:, 20:44, 20:44] = 1
    kw = dict(
        image=image,
        saliency=sal,
        mask=None,
        strokes=5,
        seeds=3,
        seed=7,
        temperature=0.3,
        segments=2,
        width=1.5,
        use_edges=False,
        canvas=96,
    )
    (s,) = run(N["CLIPassoInitStrokes"], **kw).args
    assert s.points.shape == (6, 5, 7, 2) and s.canvas == (96, 96)
    assert s.seeds == (7, 1007, 2007, 7, 1007, 2007)  # seed + 1000 k, as the CLI and the original
    assert s.device.type == "cpu" and not s.points.is_inference()
    # starts lie where the saliency is (the square maps to about pixels 31..65 of the 96 canvas)
    starts = s.points[:, :, 0]
    assert float(starts.min()) > 30 - 1 and float(starts.max()) < 66 + 1
    again = run(N["CLIPassoInitStrokes"], **kw).args[0]
    assert torch.equal(again.points, s.points)  # deterministic per seed
    assert not torch.equal(s.points[0], s.points[1])  # seeds differ
    assert torch.equal(s.points[0], s.points[3])  # same seed, same (identical) picture


@pytest.fixture(scope="session")
def u2netp_folder(core, tmp_path_factory):
    import shutil

    src = find_u2netp()
    if src is None:
        msg = "rembg's u2netp.onnx is needed: clipasso/data/u2netp.onnx is missing (a broken checkout?), set U2NET_HOME"
        if on_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    folder = tmp_path_factory.mktemp("matting_models")
    shutil.copy(src, folder / "u2netp.onnx")
    core.add_model_folder_path("clipasso", str(folder))
    return folder


def test_remove_background_puts_object_on_white(N, u2netp_folder):
    image = disk(96, r=0.25, batch=2)
    image[1] = image[1] * torch.tensor([0.2, 0.6, 1.0])  # a second, different picture in the batch
    matted, mask = run(
        N["CLIPassoRemoveBackground"], image=image, model="u2netp", threshold=0.5, soft_mask=False, allow_download=False
    )
    assert matted.shape == (2, 96, 96, 3) and mask.shape == (2, 96, 96)
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    assert float(mask[0, 48, 48]) == 1.0  # the disk is the object
    outside = mask[0] == 0
    assert bool(outside.any()) and float(matted[0][outside].min()) > 0.99  # background became white


# --------------------------------------------------------------------------- optimize, select, one box


@pytest.fixture
def progress_events():
    """Install a ComfyUI progress hook (as the server does) that records (value, total, preview)."""
    import comfy.utils

    events = []
    comfy.utils.set_progress_bar_global_hook(
        lambda value, total, preview, node_id=None: events.append((value, total, preview))
    )
    yield events
    comfy.utils.set_progress_bar_global_hook(None)


def init_for(N, image, seeds=2, strokes=4, canvas=96):
    return run(
        N["CLIPassoInitStrokes"],
        image=image,
        saliency=None,
        mask=None,
        strokes=strokes,
        seeds=seeds,
        seed=0,
        temperature=0.3,
        segments=1,
        width=1.5,
        use_edges=True,
        canvas=canvas,
    ).args[0]


def optimize_kw(**kw):
    base = dict(
        preset="fast", iterations=12, learning_rate=1.0, geometric_weight=1.0, semantic_weight=0.1, augmentations=1
    )
    base.update(kw)
    return base


def test_optimize_under_inference_mode_moves_points_reports_and_previews(N, models, progress_events):
    image = disk(64)
    start = init_for(N, image)
    best, renders = run(N["CLIPassoOptimize"], models=models, image=image, strokes=start, **optimize_kw()).args
    assert best.points.shape == start.points.shape and best.canvas == start.canvas
    assert best.losses is not None and torch.isfinite(best.losses).all()
    assert best.seeds == start.seeds
    assert renders.shape == (2, 96, 96, 3)
    assert not torch.equal(best.points, start.points)  # the optimiser moved the strokes
    # the input value was not modified in place (ComfyUI caches and shares outputs)
    assert torch.equal(start.points, init_for(N, image).points)
    assert progress_events and progress_events[-1][0] == progress_events[-1][1] == 12
    previews = [p for _, _, p in progress_events if p is not None]
    assert previews and previews[0][0] == "JPEG" and previews[0][1].size == (96, 96)


def test_optimize_with_trace_loss_needs_no_models(N, progress_events):
    image = disk(64)
    start = init_for(N, image)
    schema = {i.id: i for i in N["CLIPassoOptimize"].GET_SCHEMA().inputs}
    assert schema["loss"].default == "clip" and schema["models"].optional  # old workflows stay valid
    best, renders = run(N["CLIPassoOptimize"], image=image, strokes=start, loss="trace", **optimize_kw()).args
    assert renders.shape == (2, 96, 96, 3) and torch.isfinite(best.losses).all()
    assert not torch.equal(best.points, start.points)
    with pytest.raises(Exception, match="needs a CLIP model"):
        run(N["CLIPassoOptimize"], image=image, strokes=start, **optimize_kw())


def test_optimize_stops_on_cancel(N, models, progress_events):
    import comfy.model_management as mm

    image = disk(64)
    start = init_for(N, image)

    def cancel_after_first_update(value, total, preview, node_id=None):
        progress_events.append(value)
        mm.interrupt_current_processing(True)

    import comfy.utils

    comfy.utils.set_progress_bar_global_hook(cancel_after_first_update)
    with pytest.raises(mm.InterruptProcessingException):
        run(N["CLIPassoOptimize"], models=models, image=image, strokes=start, **optimize_kw(iterations=400))
    mm.interrupt_current_processing(False)
    assert progress_events and progress_events[0] < 400  # stopped long before the end


def test_batch_of_pictures_optimizes_each_and_selects_one_winner_per_picture(N, models):
    image = torch.cat([disk(64, r=0.3), disk(64, r=0.15)])
    start = init_for(N, image, seeds=2)
    assert start.num_candidates == 4
    best, renders = run(
        N["CLIPassoOptimize"], models=models, image=image, strokes=start, **optimize_kw(iterations=4)
    ).args
    assert best.num_candidates == 4 and renders.shape[0] == 4
    winners, img, index, loss = run(N["CLIPassoSelectBest"], strokes=best).args
    assert winners.num_candidates == 2 and img.shape == (2, 96, 96, 3)
    l0 = best.losses[:2]
    assert index == int(torch.argmin(l0)) and loss == pytest.approx(float(l0.min()))
    assert float(winners.losses[1]) == pytest.approx(float(best.losses[2:].min()))


def test_select_best_needs_losses(N):
    with pytest.raises(ValueError, match="Optimize Sketch"):
        run(N["CLIPassoSelectBest"], strokes=line_strokes(candidates=2))


def test_one_box_sketch_node(N, models_folder, u2netp_folder, progress_events):
    image = disk(80, r=0.25)
    strokes, sketch_image, loss = run(
        N["CLIPassoSketch"],
        image=image,
        preset="fast",
        strokes=4,
        seeds=2,
        seed=3,
        iterations=3,
        remove_background=True,
        loss_model="RN101",
        saliency_model="ViT-B-32",
        allow_download=False,
    ).args
    assert strokes.num_candidates == 1 and strokes.num_strokes == 4
    assert strokes.seeds[0] in (3, 1003)
    assert sketch_image.shape == (1, 224, 224, 3) and float(sketch_image.min()) < 0.5
    assert loss == pytest.approx(float(strokes.losses[0]))
    assert progress_events[-1][0] == progress_events[-1][1] == 3


def test_one_box_sketch_node_framing(N, models_folder):
    """framing stretch (paper's, as the original) brings the sketch back in the picture's 3:2 shape; the
    input's default 'preset' keeps the fast preset's padded square."""
    schema = N["CLIPassoSketch"].GET_SCHEMA()
    framing = next(i for i in schema.inputs if i.id == "framing")
    assert framing.default == "preset" and set(framing.options) == {"preset", "stretch", "fix-scale", "pad"}
    image = disk(90, r=0.25)[:, 15:75]  # 60 x 90
    common = dict(
        image=image,
        strokes=3,
        seeds=1,
        seed=0,
        iterations=2,
        remove_background=False,
        loss_model="RN101",
        saliency_model="ViT-B-32",
        allow_download=False,
    )
    strokes, sketch_image, _ = run(N["CLIPassoSketch"], preset="fast", framing="stretch", **common).args
    assert strokes.canvas == (149, 224) and sketch_image.shape == (1, 149, 224, 3)
    strokes, sketch_image, _ = run(N["CLIPassoSketch"], preset="fast", **common).args
    assert strokes.canvas == (224, 224) and sketch_image.shape == (1, 224, 224, 3)


# --------------------------------------------------------------------------- SVG


def test_save_svg_writes_each_candidate_with_workflow_metadata(N, core):
    import re

    from clipasso.output.svg import read_svg

    strokes = line_strokes((40, 60), candidates=2)
    hidden = {
        "PROMPT": {"1": {"class_type": "CLIPassoSaveSVG", "inputs": {}}},
        "EXTRA_PNGINFO": {"workflow": {"nodes": [{"id": 1}], "note": "a ]]> inside"}},
    }
    out = run(N["CLIPassoSaveSVG"], hidden=hidden, strokes=strokes, filename_prefix="tests/sketch")
    results = out.ui.as_dict()["images"]
    assert len(results) == 2
    for i, item in enumerate(results):
        assert item["type"] == "output" and item["subfolder"] == "tests" and item["filename"].endswith(".svg")
        path = os.path.join(core.get_output_directory(), item["subfolder"], item["filename"])
        text = open(path, encoding="utf-8").read()
        back = read_svg(text)
        assert back.canvas == (40, 60)
        assert torch.allclose(back.points[0], strokes.points[i], atol=1e-3)
        meta = re.search(r"<metadata><!\[CDATA\[(.*)\]\]></metadata>", text, re.S).group(1)
        import json

        data = json.loads(meta.replace("]]]]><![CDATA[>", "]]>"))
        assert data["prompt"]["1"]["class_type"] == "CLIPassoSaveSVG"
        assert data["workflow"]["note"] == "a ]]> inside"
    # core's SVG type comes out too, one document per candidate
    (svg,) = out.args
    assert len(svg.data) == 2 and svg.data[0].getvalue().startswith(b"<")


def test_core_svg_type_goes_both_ways(N, core):
    """Save SVG's output is core's own SVG value (the class core's Save SVG node takes), and Load SVG takes
    one: a value built with core's class from another producer's documents (as a vectorize node makes)."""
    from io import BytesIO

    from comfy_extras.nodes_images import SVG as CoreSVG  # core 0.3.75's class of the SVG type

    strokes = line_strokes((40, 60), candidates=2)
    (svg,) = run(N["CLIPassoSaveSVG"], strokes=strokes, filename_prefix="tests/core_svg").args
    assert isinstance(svg, CoreSVG) and len(svg.data) == 2
    schema = N["CLIPassoLoadSVG"].GET_SCHEMA()
    assert [i.id for i in schema.inputs] == [
        "svg_file",
        "svg_text",
        "svg",
        "fill_shapes",
        "outline_segments",
        "max_outlines",
        "outline_color",
    ]
    back, image = run(N["CLIPassoLoadSVG"], svg_file="(none)", svg_text="", svg=svg).args
    assert back.num_candidates == 2 and torch.allclose(back.points, strokes.points, atol=1e-3)
    assert image.shape == (2, 40, 60, 3)
    foreign = CoreSVG(
        [
            BytesIO(
                b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="80">'
                b'<path d="M 10 10 C 30 10 50 40 90 70" fill="none" stroke="#000"/></svg>'
            )
        ]
    )
    (one, _) = run(N["CLIPassoLoadSVG"], svg=foreign).args
    assert one.canvas == (80, 100) and one.num_strokes == 1
    load = N["CLIPassoLoadSVG"]
    assert load.validate_inputs(svg_file="(none)", svg_text="", svg=None) is True  # a link, before it runs
    assert load.fingerprint_inputs(svg=foreign) != load.fingerprint_inputs(svg=svg)
    with pytest.raises(ValueError, match="cannot be one batch"):
        run(load, svg=CoreSVG(foreign.data + [svg.data[0]]))


def test_load_svg_from_input_folder_or_text(N, core):
    from clipasso.output.svg import to_svg

    strokes = line_strokes((50, 50))
    path = os.path.join(core.get_input_directory(), "sketches", "line.svg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(to_svg(strokes))
    load = N["CLIPassoLoadSVG"]
    options = load.GET_SCHEMA().inputs[0].options
    assert "sketches/line.svg" in options
    back, image = run(load, svg_file="sketches/line.svg", svg_text="").args
    assert torch.allclose(back.points, strokes.points, atol=1e-3) and image.shape == (1, 50, 50, 3)
    assert float(image[0, 25, 25].max()) < 0.2
    from_text = run(load, svg_file="(none)", svg_text=to_svg(strokes)).args[0]
    assert torch.allclose(from_text.points, strokes.points, atol=1e-3)
    before = load.fingerprint_inputs(svg_file="sketches/line.svg", svg_text="")
    with open(path, "w") as f:
        f.write(to_svg(line_strokes((60, 60))))
    os.utime(path, ns=(1, 10**18))
    assert load.fingerprint_inputs(svg_file="sketches/line.svg", svg_text="") != before  # re-runs on change
    assert "needs an .svg file" in load.validate_inputs(svg_file="(none)", svg_text="")


def test_load_svg_reads_a_tracers_filled_shapes_as_outlines_when_asked(N, core):
    """vtracer's output (what ComfyUI-ToSVG writes): refused as before with fill_shapes off, naming the input;
    with it on, outlines with the asked segments, cap and colour, drawn on the picture's shape."""
    import io as _io

    import numpy as np
    from PIL import Image

    vtracer = pytest.importorskip("vtracer")
    disk_png = _io.BytesIO()
    Image.fromarray((disk(64, r=0.3)[0].numpy() * 255).astype(np.uint8)).save(disk_png, "PNG")
    text = vtracer.convert_raw_image_to_svg(disk_png.getvalue(), img_format="png")
    load = N["CLIPassoLoadSVG"]
    with pytest.raises(ValueError, match="fill_shapes"):
        run(load, svg_file="(none)", svg_text=text)
    strokes, image = run(
        load,
        svg_file="(none)",
        svg_text=text,
        fill_shapes=True,
        outline_segments=6,
        max_outlines=1,
        outline_color="black",
    ).args
    assert strokes.num_strokes == 1 and strokes.num_segments == 6 and strokes.canvas == (64, 64)
    assert torch.equal(strokes.colors[0, 0], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    # the outline runs round the disk (radius 0.3 of the side: 19 px from the centre), not through it
    radius = (strokes.points[0, 0] - 31.5).norm(dim=-1)
    assert float((radius - 19.2).abs().max()) < 2.5
    assert float(image[0, 32, 32].min()) > 0.9 and float(image[0, 32, 13:16].min()) < 0.3


def test_one_box_node_runs_without_any_clip_weights(tmp_path):
    """loss 'trace' with saliency 'mask' in CLIPasso Sketch, inside the real core, with no weights anywhere
    (empty HOME and models folder, downloads off): the sketch is made and open_clip is never imported."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parents[1]  # tests/, where the e2e package is
    code = (
        "import asyncio, sys, torch\n"
        f"sys.path.insert(0, {str(here)!r})\n"
        "from e2e.comfy_env import import_core, load_pack, ensure_comfyui\n"
        "folder_paths = import_core(ensure_comfyui())\n"
        f"folder_paths.set_output_directory({str(tmp_path)!r})\n"
        "pack = load_pack()\n"
        "nodes = {n.GET_SCHEMA().node_id: n for n in asyncio.run(asyncio.run(pack.comfy_entrypoint()).get_node_list())}\n"
        "image = torch.ones(1, 96, 128, 3)\n"
        "image[0, 30:70, 40:90] = torch.tensor([0.8, 0.2, 0.1])\n"
        "node = nodes['CLIPassoSketch'].PREPARE_CLASS_CLONE({})\n"
        "with torch.inference_mode():\n"
        "    out = node.execute(image=image, preset='fast', strokes=4, seeds=1, seed=0, iterations=3,\n"
        "                       remove_background=True, loss_model='RN101', saliency_model='ViT-B-32',\n"
        "                       allow_download=False, loss='trace', saliency='mask')\n"
        "strokes = out.args[0]\n"
        "print('STROKES', strokes.num_strokes, 'OPEN_CLIP', 'open_clip' in sys.modules)\n"
    )
    env = dict(os.environ, HOME=str(tmp_path), CLIPASSO_MODELS_DIR=str(tmp_path / "none"))
    env.pop("HF_HOME", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "STROKES 4 OPEN_CLIP False" in out.stdout, out.stdout + out.stderr[-2000:]


def test_load_models_downloads_missing_weights_with_the_node_progress_bar(
    N, models_folder, monkeypatch, tmp_path, progress_events
):
    """Missing weights with downloads allowed: fetched once (a real HTTP download, from 127.0.0.1) into the
    first models/clipasso folder, the node's progress bar following the bytes, then loaded; a second run
    finds the file. A failed download says first what to do."""
    from pathlib import Path

    from clipasso import models as engine_models
    from clipasso.testing.openai_format import (
        TINY_RN,
        LocalDownloads,
        build_openai_model,
        registry_entry_at,
        save_openai_archive,
    )

    models_folder = Path(models_folder)
    data = Path(save_openai_archive(build_openai_model(TINY_RN, 1), tmp_path / "RN50.pt")).read_bytes()
    downloads = LocalDownloads(tmp_path / "www")
    url = downloads.publish("RN50.pt", data)  # open_clip's registry entry for RN50, pointed at it
    monkeypatch.setattr(
        engine_models.search, "pretrained_cfg", registry_entry_at(engine_models.search.pretrained_cfg, "RN50", url)
    )
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CLIPASSO_OFFLINE", raising=False)
    target = models_folder / "RN50.pt"
    try:
        (loaded,) = run(
            N["CLIPassoLoadModels"],
            loss_model="RN50",
            saliency_model="ViT-B-32",
            pretrained="openai",
            device="cpu",
            precision="fp32",
            allow_download=True,
        ).args
        assert target.read_bytes() == data and loaded.loss.name == "RN50"
        assert progress_events and progress_events[-1][:2] == (100, 100)
        (again,) = run(
            N["CLIPassoLoadModels"],
            loss_model="RN50",
            saliency_model="ViT-B-32",
            pretrained="openai",
            device="cpu",
            precision="fp32",
            allow_download=True,
        ).args
        assert again.loss.source == str(target)
        target.unlink()
        engine_models.forget(target)
        downloads.close()  # the next download fails: the message still starts with the action
        with pytest.raises(engine_models.WeightsNotFoundError) as err:
            run(
                N["CLIPassoLoadModels"],
                loss_model="RN50",
                saliency_model="ViT-B-32",
                pretrained="openai",
                device="cpu",
                precision="fp32",
                allow_download=True,
            )
        first, rest = str(err.value).split("\n", 1)
        assert first.startswith("Put RN50.pt") and str(models_folder) in first and "did not work" in rest
    finally:
        downloads.close()
        if target.exists():
            target.unlink()
        engine_models.forget(target)


def test_load_models_offers_the_models_found_in_the_models_folder(N, core, tmp_path):
    """A weights file a user put into models/clipasso (here OpenAI's ViT-L/14@336 name) is offered in the
    lists, next to the usual names."""
    folder = tmp_path / "more_models"
    folder.mkdir()
    (folder / "ViT-L-14-336px.pt").write_bytes(b"")
    core.add_model_folder_path("clipasso", str(folder))
    inputs = {i.id: i for i in N["CLIPassoLoadModels"].GET_SCHEMA().inputs}
    assert "ViT-L-14-336" in inputs["loss_model"].options and "ViT-L-14-336" in inputs["saliency_model"].options
    assert inputs["loss_model"].options[0] == "RN101" and inputs["loss_model"].default == "RN101"


def test_batch_node_sketches_a_folder_and_resumes(N, core, tmp_path):
    """CLIPasso Batch over a folder of the input directory (one broken picture), weights-free settings:
    sketches, manifest, report; queued again it skips what is done."""
    import json

    from PIL import Image

    folder = os.path.join(core.get_input_directory(), "batch_pictures")
    os.makedirs(os.path.join(folder, "more"), exist_ok=True)
    pic = (disk(64)[0].numpy() * 255).astype("uint8")
    Image.fromarray(pic).save(os.path.join(folder, "one.png"))
    Image.fromarray(pic[::-1].copy()).save(os.path.join(folder, "more", "two.jpg"))
    with open(os.path.join(folder, "broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
    kw = dict(
        folder="batch_pictures",
        recursive=True,
        output_folder="tests/batch",
        png=True,
        force=False,
        preset="fast",
        strokes=4,
        seeds=1,
        seed=0,
        iterations=5,
        remove_background=True,
        loss_model="RN101",
        saliency_model="ViT-B-32",
        allow_download=False,
        loss="trace",
        saliency="mask",
    )
    out = run(N["CLIPassoBatch"], **kw)
    report, sketched = out.args
    data = json.loads(report)
    assert sketched == 2 and data["failed"] == 1 and "broken" in data["errors"]
    target = os.path.join(core.get_output_directory(), "tests", "batch")
    for name in ("one", os.path.join("more", "two")):
        assert os.path.isfile(os.path.join(target, name + ".svg")) and os.path.isfile(
            os.path.join(target, name + ".png")
        )
    assert data["manifest"] == os.path.join(os.path.realpath(target), "manifest.jsonl")
    assert "2 sketched" in out.ui.as_dict()["text"][0]
    again = json.loads(run(N["CLIPassoBatch"], **kw).args[0])
    assert again["skipped"] == 2 and again["sketched"] == 0
    with pytest.raises(ValueError, match="inside ComfyUI's output folder"):
        run(N["CLIPassoBatch"], **dict(kw, output_folder="../../elsewhere"))
    with pytest.raises(ValueError, match="input not found"):
        run(N["CLIPassoBatch"], **dict(kw, folder="no_such_folder"))
