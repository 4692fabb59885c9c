"""The example workflows, described once and written in both ComfyUI formats.

Each graph below lists its nodes with their widget values and links. `to_api` turns one into the
API (prompt) format that /prompt executes; `to_ui` into the editor's save format (schema 0.4) that
example_workflows/*.json holds, using the server's /object_info to put widget values in the order the
frontend expects (widgets in input order, plus the hidden 'control after generate' value after a
seed and the upload button value of LoadImage). Nodes are laid out in columns (each node below the ones
listed before it in its column) and every workflow opens at a zoom of at least 0.8 with the whole graph in
the free canvas of a 1400x850 browser window (`opening_view`); the browser test checks that in the real
frontend and saves a screenshot of each as opened.

Regenerate after changing a node's inputs (needs the e2e ComfyUI, fetched on first use):

    python tests/e2e/workflow_builder.py

The browser test then checks that the real frontend turns each UI file back into exactly the
API copy, so the two cannot drift apart silently.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "example_workflows"
API_DIR = WORKFLOWS / "api"
EXAMPLE_INPUT = "clipasso_example.jpg"  # clipasso/data/example.jpg, copied into ComfyUI's input folder
EXAMPLE_VIDEO = "clipasso_example.mp4"  # a short clip the video e2e test writes into ComfyUI's input folder
SOCKET_TYPES_WITH_WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def node(id, type, col, widgets=None, links=None, title=None, models=None):
    """One node of a graph, placed in column ``col`` below the nodes listed before it in that column;
    ``models``: the files a loader needs ({name, url, directory}), which the frontend's missing-models
    dialog offers to download."""
    return {
        "id": id,
        "type": type,
        "col": col,
        "widgets": widgets or {},
        "links": links or {},
        "title": title,
        "models": models or [],
    }


# The shipped workflows were made when text_weight defaulted to 0.1 and keep that value (their prompt is
# empty, so it changes nothing); saved graphs stay as users have them.
OLD_TEXT_WEIGHT = {"text_weight": 0.1}

SD_CKPT = "v1-5-pruned-emaonly-fp16.safetensors"
SCRIBBLE_CN = "control_v11p_sd15_scribble_fp16.safetensors"
SD_MODEL = {
    "name": SD_CKPT,
    "directory": "checkpoints",
    "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/" + SD_CKPT,
}
SCRIBBLE_MODEL = {
    "name": SCRIBBLE_CN,
    "directory": "controlnet",
    "url": "https://huggingface.co/comfyanonymous/ControlNet-v1-1_fp16_safetensors/resolve/main/" + SCRIBBLE_CN,
}

GRAPHS: Dict[str, dict] = {
    "clipasso_pipeline": {
        "title": "CLIPasso: picture to sketch, step by step",
        "description": "Remove the background, find the salient parts with a CLIP ViT, place strokes, optimise "
        "every seed against CLIP, keep the best, save it as SVG and as a PNG.",
        "nodes": [
            node(1, "LoadImage", 0, {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoLoadModels", 0),
            node(3, "CLIPassoRemoveBackground", 1, links={"image": (1, 0)}),
            node(4, "CLIPassoSaliency", 1, links={"models": (2, 0), "image": (3, 0), "mask": (3, 1)}),
            node(5, "PreviewImage", 2, links={"images": (4, 1)}, title="Saliency"),
            node(
                6, "CLIPassoInitStrokes", 1, {"seeds": 2}, links={"image": (3, 0), "saliency": (4, 0), "mask": (3, 1)}
            ),
            node(
                7,
                "CLIPassoOptimize",
                2,
                dict(OLD_TEXT_WEIGHT),
                links={"models": (2, 0), "image": (3, 0), "strokes": (6, 0)},
            ),
            node(8, "CLIPassoSelectBest", 3, links={"strokes": (7, 0)}),
            node(9, "CLIPassoRasterize", 3, {"width": 512}, links={"strokes": (8, 0)}),
            node(10, "SaveImage", 3, {"filename_prefix": "clipasso/sketch"}, links={"images": (9, 0)}),
            node(11, "CLIPassoSaveSVG", 3, links={"strokes": (8, 0)}),
        ],
    },
    "clipasso_one_node": {
        "title": "CLIPasso: one node",
        "description": "The whole pipeline in a single CLIPasso Sketch node, saved as SVG.",
        "nodes": [
            node(1, "LoadImage", 0, {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoSketch", 1, dict(OLD_TEXT_WEIGHT), links={"image": (1, 0)}),
            node(3, "CLIPassoSaveSVG", 2, links={"strokes": (2, 0)}),
            node(4, "PreviewImage", 2, links={"images": (2, 1)}),
        ],
    },
    "clipasso_no_weights": {
        "title": "CLIPasso: sketch without CLIP weights",
        "description": "The one-box CLIPasso Sketch with the weights-free trace loss and strokes started inside "
        "the object mask: nothing to download, only the bundled u2netp cuts the object out. A "
        "faithful tracing of the outline rather than CLIPasso's semantic abstraction.",
        "nodes": [
            node(1, "LoadImage", 0, {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoSketch", 1, dict(OLD_TEXT_WEIGHT, loss="trace", saliency="mask"), links={"image": (1, 0)}),
            node(3, "CLIPassoSaveSVG", 2, links={"strokes": (2, 0)}),
            node(4, "PreviewImage", 2, links={"images": (2, 1)}),
        ],
    },
    "clipasso_from_diffusion": {
        "title": "CLIPasso: sketch a generated picture",
        "description": "A Stable Diffusion 1.5 checkpoint paints an object on a plain background; CLIPasso "
        f"sketches it. Needs {SD_CKPT} in models/checkpoints.",
        "nodes": [
            node(1, "CheckpointLoaderSimple", 0, {"ckpt_name": SD_CKPT}, models=[SD_MODEL]),
            node(
                2,
                "CLIPTextEncode",
                0,
                {"text": "a photo of a single cat sitting, whole body, plain white background, studio light"},
                links={"clip": (1, 1)},
                title="Positive",
            ),
            node(
                3,
                "CLIPTextEncode",
                0,
                {"text": "cluttered background, several animals, text, watermark, blurry"},
                links={"clip": (1, 1)},
                title="Negative",
            ),
            node(4, "EmptyLatentImage", 0, {"width": 512, "height": 512, "batch_size": 1}),
            node(
                5,
                "KSampler",
                1,
                {"seed": 42, "steps": 25, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0},
                links={"model": (1, 0), "positive": (2, 0), "negative": (3, 0), "latent_image": (4, 0)},
            ),
            node(6, "VAEDecode", 1, links={"samples": (5, 0), "vae": (1, 2)}),
            node(7, "CLIPassoSketch", 2, dict(OLD_TEXT_WEIGHT), links={"image": (6, 0)}),
            node(8, "CLIPassoSaveSVG", 3, links={"strokes": (7, 0)}),
            node(9, "PreviewImage", 3, links={"images": (7, 1)}),
        ],
    },
    "clipasso_scribble_controlnet": {
        "title": "CLIPasso: sketch as ControlNet scribble",
        "description": "The sketch, drawn as white lines on black at 512 px, conditions a scribble ControlNet. "
        f"Needs {SD_CKPT} (checkpoints) and {SCRIBBLE_CN} (controlnet).",
        "nodes": [
            node(1, "LoadImage", 0, {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoSketch", 1, dict(OLD_TEXT_WEIGHT), links={"image": (1, 0)}),
            node(
                3,
                "CLIPassoRasterize",
                2,
                {"width": 512, "height": 512, "stroke_color": "#ffffff", "thickness": 2.0, "background": "#000000"},
                links={"strokes": (2, 0)},
                title="Scribble",
            ),
            node(4, "PreviewImage", 3, links={"images": (3, 0)}),
            node(5, "CheckpointLoaderSimple", 0, {"ckpt_name": SD_CKPT}, models=[SD_MODEL]),
            node(6, "ControlNetLoader", 0, {"control_net_name": SCRIBBLE_CN}, models=[SCRIBBLE_MODEL]),
            node(
                7,
                "CLIPTextEncode",
                2,
                {"text": "a cute cat, watercolour illustration, soft colours"},
                links={"clip": (5, 1)},
                title="Positive",
            ),
            node(8, "CLIPTextEncode", 2, {"text": "text, watermark, blurry"}, links={"clip": (5, 1)}, title="Negative"),
            node(
                9,
                "ControlNetApplyAdvanced",
                3,
                {"strength": 0.9},
                links={"positive": (7, 0), "negative": (8, 0), "control_net": (6, 0), "image": (3, 0), "vae": (5, 2)},
            ),
            node(10, "EmptyLatentImage", 3, {"width": 512, "height": 512, "batch_size": 1}),
            node(
                11,
                "KSampler",
                4,
                {"seed": 7, "steps": 25, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0},
                links={"model": (5, 0), "positive": (9, 0), "negative": (9, 1), "latent_image": (10, 0)},
            ),
            node(12, "VAEDecode", 4, links={"samples": (11, 0), "vae": (5, 2)}),
            node(13, "SaveImage", 4, {"filename_prefix": "clipasso/scribble"}, links={"images": (12, 0)}),
        ],
    },
    "clipasso_abstraction": {
        "title": "CLIPasso: automatic abstraction and drawing order",
        "description": "Sketch with a generous 32 strokes, let Auto Abstraction prune them to the fewest that keep "
        "90% of the sketch's quality (loss-versus-strokes curve shown), then put the strokes in "
        "drawing order and save the drawing being made as an animated WebP and the sketch as SVG.",
        "nodes": [
            node(1, "LoadImage", 0, {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoLoadModels", 0),
            node(3, "CLIPassoRemoveBackground", 1, links={"image": (1, 0)}),
            node(4, "CLIPassoSaliency", 1, links={"models": (2, 0), "image": (3, 0), "mask": (3, 1)}),
            node(
                5,
                "CLIPassoInitStrokes",
                1,
                {"strokes": 32, "seeds": 2},
                links={"image": (3, 0), "saliency": (4, 0), "mask": (3, 1)},
            ),
            node(
                6,
                "CLIPassoOptimize",
                2,
                dict(OLD_TEXT_WEIGHT),
                links={"models": (2, 0), "image": (3, 0), "strokes": (5, 0)},
            ),
            node(
                7,
                "CLIPassoAutoAbstraction",
                3,
                {"fidelity": 0.9},
                links={"models": (2, 0), "image": (3, 0), "strokes": (6, 0)},
            ),
            # under the loaders, and Save SVG under Optimize Sketch: Auto Abstraction's column is the tallest and
            # Drawing Order's has no room left for Save SVG (with its animation inputs) at a readable zoom
            node(8, "PreviewImage", 0, links={"images": (7, 3)}, title="Loss versus strokes"),
            node(
                9,
                "CLIPassoDrawingOrder",
                4,
                {"frame_size": 448},
                links={"models": (2, 0), "image": (3, 0), "strokes": (7, 0)},
            ),
            node(
                10,
                "SaveAnimatedWEBP",
                4,
                {"filename_prefix": "clipasso/drawing", "fps": 4.0, "method": "default"},
                links={"images": (9, 1)},
            ),
            node(11, "CLIPassoSaveSVG", 2, links={"strokes": (9, 0)}),
        ],
    },
    "clipasso_styled_text": {
        "title": "CLIPasso: text guidance, styled strokes, high-resolution output",
        "description": "Sketch with a text prompt nudging the sketch ('a cat, side view'), strokes coloured from the "
        "picture with their width and opacity optimised; the winner is saved as SVG (vector, any "
        "size) and rendered at 1024 px. (A fixed pen: set pen_width on Optimize Sketch.)",
        "nodes": [
            node(1, "LoadImage", 0, {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoLoadModels", 0),
            node(3, "CLIPassoRemoveBackground", 1, links={"image": (1, 0)}),
            node(4, "CLIPassoSaliency", 1, links={"models": (2, 0), "image": (3, 0), "mask": (3, 1)}),
            node(
                5,
                "CLIPassoInitStrokes",
                1,
                {"strokes": 24, "seeds": 2},
                links={"image": (3, 0), "saliency": (4, 0), "mask": (3, 1)},
            ),
            node(
                6,
                "CLIPassoOptimize",
                2,
                {
                    "text": "a cat, side view",
                    "text_weight": 0.3,
                    "optimize_width": True,
                    "optimize_opacity": True,
                    "color_from_image": True,
                },
                links={"models": (2, 0), "image": (3, 0), "strokes": (5, 0)},
            ),
            node(7, "CLIPassoSelectBest", 3, links={"strokes": (6, 0)}),
            node(8, "CLIPassoRasterize", 3, {"width": 1024}, links={"strokes": (7, 0)}, title="Rasterize at 1024 px"),
            node(9, "SaveImage", 3, {"filename_prefix": "clipasso/styled"}, links={"images": (8, 0)}),
            node(10, "CLIPassoSaveSVG", 3, {"filename_prefix": "clipasso/styled"}, links={"strokes": (7, 0)}),
        ],
    },
    "clipasso_scene": {
        "title": "CLIPasso: a whole scene in layers, without CLIP weights",
        "description": "CLIPasso Sketch with scene on: the photo is not cut out but split into two layers, the "
        "object and the background with the object's hole inpainted, each sketched with its own strokes "
        "and start points, then joined; the SVG holds one group per layer, the PNG the whole sketch. "
        "Weights-free (loss trace, saliency mask: only the bundled u2netp runs). With CLIP weights, set "
        "loss to clip and saliency to clip-attention: the background is then drawn with a ViT block "
        "chosen by scene_fidelity.",
        "nodes": [
            node(1, "LoadImage", 0, {"image": EXAMPLE_INPUT}),
            node(2, "CLIPassoSketch", 1, {"loss": "trace", "saliency": "mask", "scene": True}, links={"image": (1, 0)}),
            node(3, "CLIPassoSaveSVG", 2, {"filename_prefix": "clipasso/scene"}, links={"strokes": (2, 0)}),
            node(4, "CLIPassoRasterize", 2, {"width": 512}, links={"strokes": (2, 0)}),
            node(5, "SaveImage", 2, {"filename_prefix": "clipasso/scene"}, links={"images": (4, 0)}),
        ],
    },
    "clipasso_video": {
        "title": "CLIPasso: sketch a video clip, without CLIP weights",
        "description": "Load Video -> Get Video Components gives the frames; CLIPasso Sketch Video draws the first "
        "frame as a whole sketch, then moves the same strokes from frame to frame along the optical flow. The "
        "sketched frames become a video (at the source's fps) and the stroke sequence one animated SVG. "
        "Weights-free (loss trace, saliency mask: only the bundled u2netp runs); with CLIP weights set loss to "
        "clip and saliency to clip-attention.",
        "nodes": [
            node(1, "LoadVideo", 0, {"file": EXAMPLE_VIDEO}),
            node(2, "GetVideoComponents", 0, links={"video": (1, 0)}),
            node(
                3,
                "CLIPassoSketchVideo",
                1,
                {"loss": "trace", "saliency": "mask"},
                links={"frames": (2, 0), "fps": (2, 2)},
            ),
            node(4, "CreateVideo", 2, {"fps": 24.0}, links={"images": (3, 0), "fps": (3, 2)}),
            node(5, "SaveVideo", 2, {"filename_prefix": "clipasso/video"}, links={"video": (4, 0)}),
            node(
                6,
                "CLIPassoSaveSVG",
                2,
                {"filename_prefix": "clipasso/video", "animate_frames": True},
                links={"strokes": (3, 1), "fps": (3, 2)},
            ),
        ],
    },
}

# graphs whose models every user has (ours are random-weight tiny ones in the tests): run by the e2e tests
RUNNABLE = ["clipasso_pipeline", "clipasso_one_node", "clipasso_no_weights", "clipasso_scene", "clipasso_video"]


# --------------------------------------------------------------------------- schema helpers


def _inputs(info: dict) -> List[tuple]:
    """(name, type, options, optional) for every input of a node, in the frontend's order."""
    out = []
    for section in ("required", "optional"):
        spec = info["input"].get(section, {})
        for name in info.get("input_order", {}).get(section, list(spec)):
            entry = spec[name]
            typ = entry[0]
            opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            out.append((name, "COMBO" if isinstance(typ, list) else typ, opts, section == "optional"))
    return out


def _is_widget(typ, opts) -> bool:
    return typ in SOCKET_TYPES_WITH_WIDGETS and not opts.get("forceInput")


def _widget_value(name, typ, opts, given):
    if name in given:
        return given[name]
    if "default" in opts:
        return opts["default"]
    if typ == "COMBO":
        options = opts.get("options")
        return options[0] if options else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(typ)


def _combo_options(info, name):
    for section in ("required", "optional"):
        entry = info["input"].get(section, {}).get(name)
        if entry is not None:
            if isinstance(entry[0], list):
                return entry[0]
            if len(entry) > 1 and isinstance(entry[1], dict):
                return entry[1].get("options")
    return None


# --------------------------------------------------------------------------- formats


def to_api(graph: dict, object_info: dict) -> dict:
    prompt = {}
    for n in graph["nodes"]:
        info = object_info[n["type"]]
        inputs = {}
        for name, typ, opts, optional in _inputs(info):
            if name in n["links"]:
                src, slot = n["links"][name]
                inputs[name] = [str(src), slot]
            elif _is_widget(typ, opts):
                if optional and name not in n["widgets"] and "default" not in opts:
                    continue
                inputs[name] = _widget_value(name, typ, opts, n["widgets"])
        prompt[str(n["id"])] = {
            "class_type": n["type"],
            "inputs": inputs,
            "_meta": {"title": n["title"] or info.get("display_name") or n["type"]},
        }
    return prompt


def to_ui(graph: dict, object_info: dict) -> dict:
    nodes, links = [], []
    link_id = 0
    by_id = {n["id"]: n for n in graph["nodes"]}
    out_links: Dict[tuple, List[int]] = {}
    socket_index: Dict[tuple, int] = {}
    # sockets first, so link target slots are known
    for n in graph["nodes"]:
        # a widget fed by a link is a socket too (the frontend saves it with its widget's name)
        sockets = [
            (name, typ)
            for name, typ, opts, _ in _inputs(object_info[n["type"]])
            if not _is_widget(typ, opts) or name in n["links"]
        ]
        for i, (name, _) in enumerate(sockets):
            socket_index[(n["id"], name)] = i
        n["_sockets"] = sockets
    for n in graph["nodes"]:
        for name, (src, slot) in n["links"].items():
            link_id += 1
            typ = object_info[by_id[src]["type"]]["output"][slot]
            links.append([link_id, src, slot, n["id"], socket_index[(n["id"], name)], typ])
            out_links.setdefault((src, slot), []).append(link_id)
            n.setdefault("_in", {})[name] = link_id
    for order, n in enumerate(graph["nodes"]):
        info = object_info[n["type"]]
        widgets_values = []
        for name, typ, opts, _ in _inputs(info):
            if not _is_widget(typ, opts):
                continue
            widgets_values.append(_widget_value(name, typ, opts, n["widgets"]))
            if opts.get("control_after_generate"):
                widgets_values.append("fixed")
            if opts.get("image_upload") or opts.get("video_upload"):
                widgets_values.append("image")  # the upload button's value, as the frontend saves it
        widget_names = {name for name, typ, opts, _ in _inputs(info) if _is_widget(typ, opts)}
        inputs = [
            {
                "name": name,
                "type": typ,
                **({"widget": {"name": name}} if name in widget_names else {}),
                "link": n.get("_in", {}).get(name),
            }
            for name, typ in n["_sockets"]
        ]
        outputs = []
        for slot, (typ, oname) in enumerate(zip(info["output"], info["output_name"])):
            outputs.append(
                {"name": oname, "type": typ, "links": out_links.get((n["id"], slot), []), "slot_index": slot}
            )
        ui_node = {
            "id": n["id"],
            "type": n["type"],
            "pos": [0, 0],
            "size": [WIDTH, _node_height(info)],
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": inputs,
            "outputs": outputs,
            "properties": {"Node name for S&R": n["type"], **({"models": n["models"]} if n["models"] else {})},
            "widgets_values": widgets_values,
        }
        if n["title"]:
            ui_node["title"] = n["title"]
        nodes.append(ui_node)
    for n in graph["nodes"]:
        n.pop("_sockets", None)
        n.pop("_in", None)
    _place(nodes, [n["col"] for n in graph["nodes"]])
    _no_overlaps(nodes)
    return {
        "last_node_id": max(by_id),
        "last_link_id": link_id,
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {
            "ds": opening_view(nodes, graph["title"]),
            "info": {"title": graph["title"], "description": graph["description"]},
        },
        "version": 0.4,
    }


TITLE_HEIGHT = 30  # the frontend draws a node's title bar above its position
GAP = 30  # between columns, and between a node and the title of the node below it
WIDTH = 300  # every node's width (the widest title, Remove Background (CLIPasso), needs 262)

# An example opens readable in a 1400x850 browser window: at a zoom of at least MIN_SCALE (the frontend
# draws titles and widgets as blank bars below its level-of-detail threshold: 8 px font / 14 px text =
# 0.57 by default, 0.6 in older releases), the whole graph inside the free part of the canvas. That part,
# measured in the real frontend at 1400x850: the side bar ends at x = 59; the "Nodes 2.0" banner, the tab
# bar and the floating breadcrumb/Run toolbar end at y = 130 (y = 90 without the banner); the zoom
# toolbar sits in the bottom right corner from y = 800, the canvas statistics in the bottom left.
WINDOW = (1400, 850)
VIEW_LEFT, VIEW_TOP, VIEW_RIGHT, VIEW_BOTTOM = 80, 160, 1380, 790
MIN_SCALE = 0.8


def _node_height(info: dict) -> int:
    """The height the frontend needs for a node's sockets and widgets (its computeSize, measured in
    frontend 1.28: 6 + 20 per socket row, then 8 + 24 per widget), plus a little room."""
    sockets, widgets = 0, 0
    for _name, typ, opts, _ in _inputs(info):
        if not _is_widget(typ, opts):
            sockets += 1
            continue
        widgets += 100 if typ == "STRING" and opts.get("multiline") else 24
        if opts.get("control_after_generate"):
            widgets += 24
        if opts.get("image_upload") or opts.get("video_upload"):
            widgets += 24 + 240  # the upload button and the picture (or video) under the loader's widgets
    height = 6 + 20 * max(sockets, len(info["output"]), 1) + (8 + widgets if widgets else 0)
    return height + 10


def _place(nodes, columns) -> None:
    """Put each node in its column, below the nodes listed before it in the same column."""
    tops: Dict[int, float] = {}
    for n, col in zip(nodes, columns):
        y = tops.get(col, 0)
        n["pos"] = [col * (WIDTH + GAP), y]
        tops[col] = y + n["size"][1] + GAP + TITLE_HEIGHT


def opening_view(nodes, name="graph") -> dict:
    """The zoom and offset the workflow opens at: as large as fits (at most 1), the whole graph inside
    the free canvas of a 1400x850 window, its top-left title at (VIEW_LEFT, VIEW_TOP). The frontend
    draws canvas point p at (p + offset) * scale."""
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] - TITLE_HEIGHT for n in nodes)
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    scale = min(1.0, (VIEW_RIGHT - VIEW_LEFT) / (x1 - x0), (VIEW_BOTTOM - VIEW_TOP) / (y1 - y0))
    scale = math.floor(scale * 1000) / 1000
    if scale < MIN_SCALE:
        raise ValueError(
            f"{name}: the graph ({x1 - x0:.0f} x {y1 - y0:.0f}) fits a {WINDOW[0]}x{WINDOW[1]} window "
            f"only at zoom {scale}, below {MIN_SCALE}, where it would open hard to read: put its "
            "nodes in more columns, or fewer in the tallest column"
        )
    return {"scale": scale, "offset": [round(VIEW_LEFT / scale - x0, 1), round(VIEW_TOP / scale - y0, 1)]}


def boxes_overlap(a, b, gap=0) -> bool:
    """Whether two UI nodes' boxes (title bar included) come closer than ``gap``."""
    ax, ay = a["pos"]
    bx, by = b["pos"]
    aw, ah = a["size"]
    bw, bh = b["size"]
    return ax < bx + bw and bx < ax + aw and ay - TITLE_HEIGHT < by + bh + gap and by - TITLE_HEIGHT < ay + ah + gap


def _no_overlaps(nodes) -> None:
    """Move nodes down, column by column, until no node covers another."""
    placed = []
    for n in sorted(nodes, key=lambda n: (n["pos"][0], n["pos"][1])):
        moved = True
        while moved:
            moved = False
            for p in placed:
                if boxes_overlap(n, p, GAP):
                    n["pos"] = [n["pos"][0], p["pos"][1] + p["size"][1] + GAP + TITLE_HEIGHT]
                    moved = True
        placed.append(n)


def write_all(object_info: dict, out: Optional[Path] = None) -> List[Path]:
    out = Path(out or WORKFLOWS)
    (out / "api").mkdir(parents=True, exist_ok=True)
    written = []
    for name, graph in GRAPHS.items():
        for path, data in (
            (out / f"{name}.json", to_ui(graph, object_info)),
            (out / "api" / f"{name}.json", to_api(graph, object_info)),
        ):
            path.write_text(json.dumps(data, indent=2) + "\n")
            written.append(path)
    return written


def main():  # pragma: no cover - a maintenance tool
    import tempfile

    sys.path.insert(0, str(REPO / "tests"))
    from e2e.comfy_env import ensure_comfyui
    from e2e.server import ComfyServer, prepare_base
    import requests

    with tempfile.TemporaryDirectory() as tmp:
        prepare_base(Path(tmp))
        server = ComfyServer(ensure_comfyui(), Path(tmp)).start()
        try:
            info = requests.get(server.url + "/object_info", timeout=60).json()
        finally:
            server.stop()
    for p in write_all(info):
        print(p.relative_to(REPO))


if __name__ == "__main__":
    main()
