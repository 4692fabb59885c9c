"""CLIPasso Sketch Video and Save SVG's animate_frames, called as ComfyUI calls them (inside
torch.inference_mode), inside the real ComfyUI 0.3.75 core, on a tiny clip of a dark square moving on
white, with the weights-free trace loss and the clip's own masks (no model runs at all)."""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

from e2e.comfy_env import comfyui_or_skip, import_core, load_pack

SVG_NS = "{http://www.w3.org/2000/svg}"
FRAMES, SIDE = 3, 64


@pytest.fixture(scope="module")
def N(tmp_path_factory, tiny_models_dir):
    folder_paths = import_core(comfyui_or_skip())
    base = tmp_path_factory.mktemp("comfy_dirs_video")
    for sub in ("output", "input", "temp"):
        (base / sub).mkdir()
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_temp_directory(str(base / "temp"))
    folder_paths.add_model_folder_path("clipasso", str(tiny_models_dir), is_default=True)
    pack = load_pack()
    ext = asyncio.run(pack.comfy_entrypoint())
    nodes = {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(ext.get_node_list())}
    nodes["output_dir"] = base / "output"
    return nodes


def run(node, **inputs):
    cls = node.PREPARE_CLASS_CLONE({})
    with torch.inference_mode():
        return cls.execute(**inputs)


def node_error(N):
    return sys.modules[N["CLIPassoSketchVideo"].__module__].NodeInputError


def moving_square(frames=FRAMES, side=SIDE):
    """(IMAGE [F,side,side,3], MASK [F,side,side]): a dark square moving right by 3 px a frame."""
    images = torch.ones(frames, side, side, 3)
    masks = torch.zeros(frames, side, side)
    for f in range(frames):
        x = 16 + 3 * f
        images[f, 20:44, x : x + 24] = 0.1
        masks[f, 20:44, x : x + 24] = 1.0
    return images, masks


def sketch(N, frames, **kw):
    base = dict(
        frames=frames,
        preset="fast",
        strokes=4,
        seeds=1,
        seed=0,
        iterations=4,
        remove_background=False,
        loss_model="RN101",
        saliency_model="ViT-B-32",
        allow_download=False,
        loss="trace",
        saliency="mask",
        canvas=64,
        frame_iterations=2,
        temporal_weight=1.0,
        flow="ilk",
        fps=12.0,
    )
    base.update(kw)
    return run(N["CLIPassoSketchVideo"], **base).args


@pytest.fixture(scope="module")
def clip():
    return moving_square()


@pytest.fixture(scope="module")
def sketched(N, clip):
    images, masks = clip
    return sketch(N, images, mask=masks)


def test_the_node_is_registered_with_its_sockets(N):
    info = N["CLIPassoSketchVideo"].GET_NODE_INFO_V1()
    assert info["category"] == "CLIPasso"
    assert info["output"] == ["IMAGE", "SKETCH_STROKES", "FLOAT"]
    assert info["input"]["required"]["frames"][0] == "IMAGE" and info["input"]["optional"]["mask"][0] == "MASK"
    for name in ("frame_iterations", "temporal_weight", "flow", "fps", "loss", "saliency", "strokes", "seed"):
        assert name in info["input"]["required"] or name in info["input"]["optional"], name
    every = {**info["input"]["required"], **info["input"]["optional"]}
    assert all(spec[1].get("tooltip") for spec in every.values())


def test_a_clip_becomes_a_stroke_sequence_and_frames(N, clip, sketched):
    images, masks = clip
    frames, strokes, fps = sketched
    assert frames.shape == (FRAMES, SIDE, SIDE, 3)
    assert float(frames.min()) < 0.5 and float(frames.max()) == pytest.approx(1.0)  # ink on white
    assert strokes.num_candidates == FRAMES and strokes.num_strokes == 4
    assert strokes.pictures == tuple(range(FRAMES)) and strokes.losses.shape == (FRAMES,)
    assert fps == 12.0
    # the same strokes, moved: the sketch follows the square to the right
    centre = strokes.points.mean(dim=(1, 2))[:, 0]
    assert float(centre[-1]) > float(centre[0])
    # progress over the whole clip (key frame 4 steps, then 2 a frame) with a preview of the frame
    events = []
    import comfy.utils

    comfy.utils.set_progress_bar_global_hook(
        lambda value, total, preview, node_id=None: events.append((value, total, preview is not None))
    )
    try:
        sketch(N, images, mask=masks[:1])  # one mask for every frame
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert events and events[-1][:2] == (4 + 2 * (FRAMES - 1), 4 + 2 * (FRAMES - 1))
    assert any(e[2] for e in events)


def test_save_svg_writes_the_sequence_as_one_animated_svg(N, sketched):
    from clipasso.output.animation import read_video_svg

    _, strokes, _ = sketched
    out = run(N["CLIPassoSaveSVG"], strokes=strokes, filename_prefix="clipasso/video", animate_frames=True, fps=12.0)
    (saved,) = out.ui.as_dict()["images"]
    text = (N["output_dir"] / saved["subfolder"] / saved["filename"]).read_text()
    root = ET.fromstring(text)
    paths = list(root.iter(SVG_NS + "path"))
    assert len(paths) == 4
    for p in paths:
        (anim,) = [a for a in p.iter(SVG_NS + "animate") if a.get("attributeName") == "d"]
        assert len(anim.get("values").split(";")) == FRAMES
    back = read_video_svg(text)
    assert len(back) == FRAMES and back[0].num_strokes == 4
    # off (the default): one static file per candidate, as before
    out = run(N["CLIPassoSaveSVG"], strokes=strokes, filename_prefix="clipasso/video_frames")
    files = out.ui.as_dict()["images"]
    assert len(files) == FRAMES
    text = (N["output_dir"] / files[0]["subfolder"] / files[0]["filename"]).read_text()
    assert "<animate" not in text


def test_bad_inputs_give_clear_errors(N, clip):
    images, masks = clip
    err = node_error(N)
    with pytest.raises(err, match="at least one picture"):
        sketch(N, images[:0])
    with pytest.raises(err, match="2 masks for a clip of 3 frames"):
        sketch(N, images, mask=masks[:2])
    bad = images.clone()
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(err, match="NaN or infinite"):
        sketch(N, bad)
    with pytest.raises(err, match="fps"):
        sketch(N, images, mask=masks, fps=float("nan"))
