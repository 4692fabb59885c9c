"""End to end in a real ComfyUI 0.3.75 server: registration, the example workflows (API format) run
through /prompt, results fetched through /view, Cancel through /interrupt, and our error messages."""

from __future__ import annotations

import copy
import io
import json
import re
import time

import pytest

from .client import PromptRejected
from .conftest import TIMINGS
from .workflow_builder import API_DIR, WORKFLOWS

OUR_NODES = {
    "CLIPassoLoadModels": ([], ["CLIPASSO_MODELS"]),
    "CLIPassoRemoveBackground": (["IMAGE"], ["IMAGE", "MASK"]),
    "CLIPassoSaliency": (["CLIPASSO_MODELS", "IMAGE", "MASK"], ["MASK", "IMAGE"]),
    "CLIPassoInitStrokes": (["IMAGE", "MASK", "MASK"], ["SKETCH_STROKES"]),
    "CLIPassoOptimize": (["IMAGE", "SKETCH_STROKES", "CLIPASSO_MODELS"], ["SKETCH_STROKES", "IMAGE"]),
    "CLIPassoRasterize": (["SKETCH_STROKES"], ["IMAGE", "MASK"]),
    "CLIPassoSelectBest": (["SKETCH_STROKES"], ["SKETCH_STROKES", "IMAGE", "INT", "FLOAT"]),
    "CLIPassoSaveSVG": (["SKETCH_STROKES"], ["SVG"]),
    "CLIPassoLoadSVG": ([], ["SKETCH_STROKES", "IMAGE"]),
    "CLIPassoSketch": (["IMAGE"], ["SKETCH_STROKES", "IMAGE", "FLOAT"]),
    "CLIPassoSketchVideo": (["IMAGE", "MASK"], ["IMAGE", "SKETCH_STROKES", "FLOAT"]),
    "CLIPassoBatch": ([], ["STRING", "INT"]),
    "CLIPassoSplitLayers": (["IMAGE", "MASK"], ["IMAGE", "IMAGE", "MASK", "MASK"]),
    "CLIPassoCombineLayers": (["SKETCH_STROKES", "SKETCH_STROKES"], ["SKETCH_STROKES", "IMAGE"]),
    # models is optional (loss 'trace' needs none): listed after the required inputs
    "CLIPassoAutoAbstraction": (
        ["IMAGE", "SKETCH_STROKES", "CLIPASSO_MODELS"],
        ["SKETCH_STROKES", "IMAGE", "INT", "IMAGE", "STRING"],
    ),
    "CLIPassoDrawingOrder": (
        ["IMAGE", "SKETCH_STROKES", "CLIPASSO_MODELS"],
        ["SKETCH_STROKES", "IMAGE", "IMAGE", "STRING", "STRING"],
    ),
}
SOCKETS = {"IMAGE", "MASK", "SKETCH_STROKES", "CLIPASSO_MODELS"}


def load_api(name):
    return json.loads((API_DIR / f"{name}.json").read_text())


def load_ui(name):
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def by_class(prompt, class_type):
    return [k for k, v in prompt.items() if v["class_type"] == class_type]


def small_pipeline(iterations=6):
    """The step-by-step example, made quick for the tiny random models on a CPU."""
    prompt = load_api("clipasso_pipeline")
    (init,) = by_class(prompt, "CLIPassoInitStrokes")
    prompt[init]["inputs"].update(strokes=6, seeds=2)
    (opt,) = by_class(prompt, "CLIPassoOptimize")
    prompt[opt]["inputs"].update(iterations=iterations, augmentations=1)
    return prompt


def test_object_info_lists_our_nodes_with_their_types(comfy, comfy_server):
    info = comfy.object_info()
    ours = {k: v for k, v in info.items() if k.startswith("CLIPasso")}
    assert set(ours) == set(OUR_NODES), comfy_server.log_tail()
    for node_id, (socket_inputs, outputs) in OUR_NODES.items():
        entry = ours[node_id]
        assert entry["category"] == "CLIPasso"
        assert entry["output"] == outputs, node_id
        assert all(entry["output_tooltips"]), node_id
        inputs = {**entry["input"].get("required", {}), **entry["input"].get("optional", {})}
        sockets = [spec[0] for spec in inputs.values() if isinstance(spec[0], str) and spec[0] in SOCKETS]
        assert sockets == socket_inputs, node_id
        assert all(spec[1].get("tooltip") for spec in inputs.values()), node_id
    assert ours["CLIPassoSaveSVG"]["output_node"] is True
    log = comfy_server.log_text().splitlines()
    assert not [
        line for line in log if "clipasso" in line.lower() and ("IMPORT FAILED" in line or "comfy_entrypoint" in line)
    ], comfy_server.log_tail()


def test_step_by_step_workflow_writes_svg_and_png(comfy, matting_weights):
    prompt = small_pipeline()
    workflow = load_ui("clipasso_pipeline")
    t0 = time.monotonic()
    run = comfy.run(prompt, timeout=600, workflow=workflow)
    TIMINGS["step-by-step workflow"] = time.monotonic() - t0
    assert run.status == "success", run.error
    history = comfy.history(run.prompt_id)
    assert history["status"]["status_str"] == "success"
    outputs = history["outputs"]

    (opt,) = by_class(prompt, "CLIPassoOptimize")
    steps = [p for p in run.progress if p["node"] == opt]
    assert steps and steps[-1]["value"] == steps[-1]["max"] == 6
    assert run.previews, "the optimizer sent no live preview"
    from PIL import Image

    assert Image.open(io.BytesIO(run.previews[-1])).size[0] > 0

    (save_svg,) = by_class(prompt, "CLIPassoSaveSVG")
    files = outputs[save_svg]["images"]
    assert len(files) == 1 and files[0]["filename"].endswith(".svg") and files[0]["type"] == "output"
    svg_text = comfy.view(**files[0]).decode("utf-8")
    from clipasso.output.svg import read_svg

    strokes = read_svg(svg_text)
    assert strokes.num_strokes == 6 and strokes.canvas == (224, 224)
    meta = re.search(r"<metadata><!\[CDATA\[(.*?)\]\]></metadata>", svg_text, re.S)
    assert meta, "the workflow is not embedded in the SVG"
    embedded = json.loads(meta.group(1))
    assert embedded["workflow"]["nodes"] and embedded["prompt"][save_svg]["class_type"] == "CLIPassoSaveSVG"

    (save_png,) = by_class(prompt, "SaveImage")
    (png,) = outputs[save_png]["images"]
    img = Image.open(io.BytesIO(comfy.view(**png))).convert("L")
    assert img.size == (512, 512)
    lo, hi = img.getextrema()
    assert lo < 100 and hi > 240  # dark strokes on white
    (preview,) = by_class(prompt, "PreviewImage")
    assert outputs[preview]["images"][0]["type"] == "temp"


def test_one_node_workflow(comfy, matting_weights):
    prompt = load_api("clipasso_one_node")
    (node,) = by_class(prompt, "CLIPassoSketch")
    prompt[node]["inputs"].update(strokes=5, seeds=2, iterations=3)
    t0 = time.monotonic()
    run = comfy.run(prompt, timeout=600)
    TIMINGS["one-node workflow"] = time.monotonic() - t0
    assert run.status == "success", run.error
    outputs = comfy.history(run.prompt_id)["outputs"]
    (save,) = by_class(prompt, "CLIPassoSaveSVG")
    (svg,) = outputs[save]["images"]
    from clipasso.output.svg import read_svg

    assert read_svg(comfy.view(**svg).decode()).num_strokes == 5


def test_no_weights_workflow(comfy, matting_weights):
    """The shipped weights-free example: CLIPasso Sketch with loss trace and saliency mask, downloads off."""
    prompt = load_api("clipasso_no_weights")
    (node,) = by_class(prompt, "CLIPassoSketch")
    assert prompt[node]["inputs"]["loss"] == "trace" and prompt[node]["inputs"]["saliency"] == "mask"
    prompt[node]["inputs"].update(strokes=5, seeds=2, iterations=3, allow_download=False)
    run = comfy.run(prompt, timeout=600)
    assert run.status == "success", run.error
    outputs = comfy.history(run.prompt_id)["outputs"]
    (save,) = by_class(prompt, "CLIPassoSaveSVG")
    (svg,) = outputs[save]["images"]
    from clipasso.output.svg import read_svg

    assert read_svg(comfy.view(**svg).decode()).num_strokes == 5


def _svg_layers(svg_text):
    """Layer group id -> number of paths in it."""
    import xml.etree.ElementTree as ET

    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svg_text)
    return {g.get("id"): len(g.findall(ns + "path")) for g in root.iter(ns + "g") if g.get("id")}


def test_scene_workflow_writes_a_layered_svg_and_a_png(comfy, matting_weights):
    """The shipped scene example (CLIPasso Sketch with scene on, weights-free) on the example photo."""
    prompt = load_api("clipasso_scene")
    (node,) = by_class(prompt, "CLIPassoSketch")
    inputs = prompt[node]["inputs"]
    assert inputs["scene"] is True and inputs["loss"] == "trace" and inputs["saliency"] == "mask"
    inputs.update(strokes=4, background_strokes=6, seeds=1, iterations=3, allow_download=False)
    t0 = time.monotonic()
    run = comfy.run(prompt, timeout=600)
    TIMINGS["scene workflow"] = time.monotonic() - t0
    assert run.status == "success", run.error
    outputs = comfy.history(run.prompt_id)["outputs"]
    (save,) = by_class(prompt, "CLIPassoSaveSVG")
    (svg,) = outputs[save]["images"]
    text = comfy.view(**svg).decode()
    assert _svg_layers(text) == {"background": 6, "foreground": 4}
    from clipasso.output.svg import read_svg

    assert read_svg(text).layer_names == ("background", "foreground")
    (save_png,) = by_class(prompt, "SaveImage")
    (png,) = outputs[save_png]["images"]
    from PIL import Image

    img = Image.open(io.BytesIO(comfy.view(**png))).convert("L")
    assert img.size[0] == 512 and img.getextrema()[0] < 100


def test_scene_layers_node_by_node(comfy, matting_weights):
    """Split Scene Layers -> per layer Initialize Strokes + Optimize Sketch (trace loss) -> Combine Sketch Layers
    -> Save SVG, in the real server: one SVG with a group per layer."""
    from .test_node_paths_server import node_defaults
    from .workflow_builder import EXAMPLE_INPUT

    def with_defaults(node_id, **given):
        return {"class_type": node_id, "inputs": {**node_defaults(comfy, node_id), **given}}

    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": EXAMPLE_INPUT}},
        "2": with_defaults("CLIPassoRemoveBackground", image=["1", 0], allow_download=False),
        "3": with_defaults("CLIPassoSplitLayers", image=["1", 0], mask=["2", 1]),
    }
    # foreground: targets/regions 0 and 2 of the split; background: 1 and 3
    for target, region, init, opt, count in ((0, 2, "4", "5", 3), (1, 3, "6", "7", 5)):
        prompt[init] = with_defaults(
            "CLIPassoInitStrokes",
            image=["3", target],
            mask=["3", region],
            saliency=["3", region],
            strokes=count,
            seeds=2,
            canvas=128,
        )
        prompt[opt] = with_defaults(
            "CLIPassoOptimize", image=["3", target], strokes=[init, 0], loss="trace", iterations=3, augmentations=1
        )
    prompt["8"] = with_defaults("CLIPassoCombineLayers", background=["7", 0], foreground=["5", 0])
    prompt["9"] = with_defaults("CLIPassoSaveSVG", strokes=["8", 0], filename_prefix="clipasso/scene_layers")
    prompt["10"] = {"class_type": "PreviewImage", "inputs": {"images": ["3", 1]}}
    run = comfy.run(prompt, timeout=600)
    assert run.status == "success", run.error
    outputs = comfy.history(run.prompt_id)["outputs"]
    (svg,) = outputs["9"]["images"]
    assert _svg_layers(comfy.view(**svg).decode()) == {"background": 5, "foreground": 3}
    assert outputs["10"]["images"]  # the inpainted background target, previewed


def test_saved_svg_loads_back_and_rerenders(comfy):
    from clipasso.strokes import Strokes
    from clipasso.output.svg import to_svg
    import torch

    pts = torch.tensor([[[[10.0, 10.0], [40.0, 10.0], [60.0, 50.0], [90.0, 90.0]]]])
    svg = to_svg(Strokes.from_points(pts, (100, 100)))
    up = comfy.upload("clipasso_roundtrip.svg", svg.encode(), "image/svg+xml")
    name = up["name"] if not up.get("subfolder") else f"{up['subfolder']}/{up['name']}"
    prompt = {
        "1": {"class_type": "CLIPassoLoadSVG", "inputs": {"svg_file": name, "svg_text": ""}},
        "2": {
            "class_type": "CLIPassoRasterize",
            "inputs": {
                "strokes": ["1", 0],
                "width": 200,
                "height": 0,
                "stroke_color": "",
                "thickness": 1.0,
                "background": "#ffffff",
            },
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "clipasso/roundtrip"}},
    }
    run = comfy.run(prompt, timeout=120)
    assert run.status == "success", run.error
    from PIL import Image

    (png,) = comfy.history(run.prompt_id)["outputs"]["3"]["images"]
    img = Image.open(io.BytesIO(comfy.view(**png))).convert("L")
    assert img.size == (200, 200)
    assert img.getpixel((20, 20)) < 80 and img.getpixel((180, 20)) > 240  # the stroke, scaled x2; paper


def test_core_svg_chain_both_ways(comfy):
    """Our Save SVG hands core's SVG type to core's own Save SVG node, and Load SVG takes core's SVG type
    back (through the socket, not a file), in one prompt of the real server."""
    from clipasso.output.svg import read_svg, to_svg
    from clipasso.strokes import Strokes
    import torch

    pts = torch.tensor(
        [
            [
                [[10.0, 10.0], [40.0, 10.0], [60.0, 50.0], [90.0, 90.0]],
                [[10.0, 90.0], [30.0, 70.0], [60.0, 40.0], [90.0, 10.0]],
            ]
        ]
    )
    source = to_svg(Strokes.from_points(pts, (100, 100)))
    prompt = {
        "1": {"class_type": "CLIPassoLoadSVG", "inputs": {"svg_file": "(none)", "svg_text": source}},
        "2": {"class_type": "CLIPassoSaveSVG", "inputs": {"strokes": ["1", 0], "filename_prefix": "clipasso/ours"}},
        "3": {"class_type": "SaveSVGNode", "inputs": {"svg": ["2", 0], "filename_prefix": "clipasso/by_core"}},
        "4": {"class_type": "CLIPassoLoadSVG", "inputs": {"svg_file": "(none)", "svg_text": "", "svg": ["2", 0]}},
        "5": {
            "class_type": "CLIPassoRasterize",
            "inputs": {
                "strokes": ["4", 0],
                "width": 200,
                "height": 0,
                "stroke_color": "",
                "thickness": 1.0,
                "background": "#ffffff",
            },
        },
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "clipasso/core_svg"}},
    }
    run = comfy.run(prompt, timeout=120)
    assert run.status == "success", run.error
    outputs = comfy.history(run.prompt_id)["outputs"]
    (by_core,) = outputs["3"]["images"]
    assert by_core["filename"].endswith(".svg")
    written = read_svg(comfy.view(**by_core).decode())
    assert written.num_strokes == 2 and torch.allclose(written.points, pts, atol=1e-2)
    from PIL import Image

    (png,) = outputs["6"]["images"]
    img = Image.open(io.BytesIO(comfy.view(**png))).convert("L")
    assert img.size == (200, 200) and img.getpixel((100, 100)) < 80 and img.getpixel((100, 20)) > 240


def test_cancel_stops_a_running_optimization_within_seconds(comfy, matting_weights):
    prompt = small_pipeline(iterations=20000)
    (opt,) = by_class(prompt, "CLIPassoOptimize")
    state = {}

    def press_cancel(run, kind, data):
        if kind == "progress" and data.get("node") == opt and "at" not in state:
            state["at"] = time.monotonic()
            state["previews"] = len(run.previews)
            comfy.interrupt()

    run = comfy.run(prompt, timeout=600, on_event=press_cancel)
    assert "at" in state, f"the optimizer never reported progress: {run.status} {run.error}"
    stopped_after = time.monotonic() - state["at"]
    TIMINGS["cancel -> stopped"] = stopped_after
    assert run.status == "interrupted", (run.status, run.error)
    assert stopped_after < 10
    steps = [p["value"] for p in run.progress if p["node"] == opt]
    assert max(steps) < 20000
    # as the node's description says: the run is discarded (no outputs, nothing saved) ...
    downstream, grew = {opt}, True
    while grew:  # every node fed (directly or not) by Optimize Sketch
        fed = {
            n
            for n, node in prompt.items()
            if any(isinstance(v, list) and v and v[0] in downstream for v in node["inputs"].values())
        }
        grew = not fed <= downstream
        downstream |= fed
    outputs = comfy.history(run.prompt_id).get("outputs", {})
    assert not set(outputs) & downstream, outputs
    # ... and the best sketch reached is shown as the last preview, a decodable image
    assert len(run.previews) > state["previews"], "no preview of the best state after Cancel"
    from PIL import Image

    Image.open(io.BytesIO(run.previews[-1])).load()
    # the server stays usable: the same workflow, short, runs to the end right after
    again = comfy.run(small_pipeline(iterations=2), timeout=300)
    assert again.status == "success", again.error


def test_errors_are_ours_and_clear(comfy):
    # validation: Load SVG without a file is refused before anything runs
    with pytest.raises(PromptRejected) as rejected:
        comfy.queue(
            {
                "1": {"class_type": "CLIPassoLoadSVG", "inputs": {"svg_file": "(none)", "svg_text": ""}},
                "2": {"class_type": "CLIPassoSaveSVG", "inputs": {"strokes": ["1", 0], "filename_prefix": "x"}},
            }
        )
    text = json.dumps(rejected.value.body)
    assert "Load SVG needs an .svg file" in text

    # execution: a bad colour names the input and the accepted forms
    prompt = {
        "1": {
            "class_type": "CLIPassoLoadSVG",
            "inputs": {
                "svg_file": "(none)",
                "svg_text": (
                    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 50 50" width="50" height="50">'
                    '<path d="M 5 5 C 10 10 20 20 45 45" fill="none" stroke="black" stroke-width="3"/></svg>'
                ),
            },
        },
        "2": {
            "class_type": "CLIPassoRasterize",
            "inputs": {
                "strokes": ["1", 0],
                "width": 0,
                "height": 0,
                "stroke_color": "",
                "thickness": 1.0,
                "background": "mauve-ish",
            },
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    run = comfy.run(prompt, timeout=120)
    assert run.status == "error"
    assert run.error["node_type"] == "CLIPassoRasterize"
    assert "'background' must be a colour like #000000" in run.error["exception_message"]

    # a wrong connection is caught by ComfyUI's type check, naming our socket type
    broken = copy.deepcopy(prompt)
    broken["2"]["inputs"]["strokes"] = ["3", 0]
    broken["4"] = {"class_type": "LoadImage", "inputs": {"image": "clipasso_example.jpg"}}
    broken["2"]["inputs"]["strokes"] = ["4", 0]
    with pytest.raises(PromptRejected) as wrong:
        comfy.queue(broken)
    assert "SKETCH_STROKES" in json.dumps(wrong.value.body)

    # a workflow with a required input left unconnected is refused before anything runs, naming it
    missing = copy.deepcopy(prompt)
    del missing["2"]["inputs"]["strokes"]
    with pytest.raises(PromptRejected) as unconnected:
        comfy.queue(missing)
    body = json.dumps(unconnected.value.body)
    assert "strokes" in body and "CLIPassoRasterize" in body and "missing" in body.lower()


def test_every_node_has_a_help_page(comfy):
    for node_id in OUR_NODES:
        text = comfy.get(f"/extensions/comfyui-clipasso/docs/{node_id}/en.md").text
        assert text.startswith("# "), node_id
