"""The shipped clipasso_video example in the real ComfyUI 0.3.75 server: core's Load Video -> Get Video
Components -> CLIPasso Sketch Video (weights-free) -> Create Video -> Save Video, and Save SVG writing the
stroke sequence as one animated SVG. The clip is a tiny mp4 written with PyAV into the server's input folder."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
import torch

from .conftest import TIMINGS
from .test_comfyui_server import by_class, load_api
from .workflow_builder import EXAMPLE_VIDEO

SVG_NS = "{http://www.w3.org/2000/svg}"
FRAMES, SIDE, FPS, STROKES = 4, 64, 8, 4


def moving_square_clip():
    """FRAMES frames [3,SIDE,SIDE]: a dark square on white, moving right by 3 px a frame."""
    frames = []
    for f in range(FRAMES):
        img = torch.ones(3, SIDE, SIDE)
        x = 14 + 3 * f
        img[:, 20:44, x : x + 24] = 0.1
        frames.append(img)
    return frames


@pytest.fixture(scope="module")
def example_clip(comfy_base):
    pytest.importorskip("av", reason="PyAV is needed to write and read the test clip (the 'video' extra)")
    from clipasso.video.io import write_video

    path = comfy_base["base"] / "input" / EXAMPLE_VIDEO
    write_video(moving_square_clip(), path, FPS)
    return path


def _video_files(entry):
    return [f for key in ("images", "videos", "gifs") for f in entry.get(key, []) if isinstance(f, dict)]


def test_video_workflow_saves_a_video_and_an_animated_svg(comfy, matting_weights, example_clip, tmp_path):
    import av

    prompt = load_api("clipasso_video")
    (node,) = by_class(prompt, "CLIPassoSketchVideo")
    inputs = prompt[node]["inputs"]
    assert inputs["loss"] == "trace" and inputs["saliency"] == "mask"
    assert inputs["fps"] == [by_class(prompt, "GetVideoComponents")[0], 2]  # the source's frame rate
    inputs.update(
        strokes=STROKES, seeds=1, iterations=4, frame_iterations=2, canvas=64, flow="ilk", allow_download=False
    )
    (loader,) = by_class(prompt, "LoadVideo")
    assert prompt[loader]["inputs"]["file"] == EXAMPLE_VIDEO
    t0 = time.monotonic()
    run = comfy.run(prompt, timeout=600)
    TIMINGS["video workflow"] = time.monotonic() - t0
    assert run.status == "success", run.error
    outputs = comfy.history(run.prompt_id)["outputs"]

    # progress over the whole clip: the key frame's 4 steps, then 2 for each other frame
    steps = [p for p in run.progress if p["node"] == node]
    assert steps and steps[-1]["value"] == steps[-1]["max"] == 4 + 2 * (FRAMES - 1)

    (save_video,) = by_class(prompt, "SaveVideo")
    (saved,) = _video_files(outputs[save_video])
    movie = tmp_path / saved["filename"]
    movie.write_bytes(comfy.view(**saved))
    with av.open(str(movie)) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_ndarray(format="gray") for frame in container.decode(stream)]
        rate = float(stream.average_rate)
    assert len(decoded) == FRAMES
    assert decoded[0].shape == (SIDE, SIDE) and decoded[0].min() < 128  # dark strokes on white
    assert rate == pytest.approx(FPS)

    (save_svg,) = by_class(prompt, "CLIPassoSaveSVG")
    assert prompt[save_svg]["inputs"]["animate_frames"] is True
    (svg,) = outputs[save_svg]["images"]
    root = ET.fromstring(comfy.view(**svg).decode("utf-8"))
    paths = list(root.iter(SVG_NS + "path"))
    assert len(paths) == STROKES
    for path in paths:
        (anim,) = [a for a in path.iter(SVG_NS + "animate") if a.get("attributeName") == "d"]
        assert len(anim.get("values").split(";")) == FRAMES
        assert float(anim.get("dur").rstrip("s")) == pytest.approx(FRAMES / FPS)


def test_video_node_refuses_a_mask_batch_of_the_wrong_size(comfy, example_clip):
    """A clean message, naming the input, comes back as the prompt's error."""
    prompt = load_api("clipasso_video")
    (node,) = by_class(prompt, "CLIPassoSketchVideo")
    prompt["90"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": SIDE, "height": SIDE}}
    prompt["91"] = {"class_type": "MaskToImage", "inputs": {"mask": ["90", 0]}}
    prompt["92"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["91", 0], "amount": 2}}
    prompt["93"] = {"class_type": "ImageToMask", "inputs": {"image": ["92", 0], "channel": "red"}}
    prompt[node]["inputs"].update(mask=["93", 0], strokes=STROKES, seeds=1, iterations=2, allow_download=False)
    run = comfy.run(prompt, timeout=300)
    assert run.status == "error"
    assert run.error["node_type"] == "CLIPassoSketchVideo"
    assert "'mask' has 2 masks for a clip of 4 frames" in run.error["exception_message"]
    assert "Traceback" not in run.error["exception_message"]
