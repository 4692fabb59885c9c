"""The real ComfyUI frontend (comfyui-frontend-package) in Debian's headless Chromium, driven by
Playwright: every example workflow loads without missing nodes or widget errors and converts to
exactly our API copy; the one-node workflow is queued from the UI and a screenshot is saved."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from .conftest import TIMINGS
from .workflow_builder import API_DIR, GRAPHS, REPO, WORKFLOWS

# an untracked copy by default; CLIPASSO_SCREENSHOT=docs/comfyui_workflow.png refreshes the README's picture
SCREENSHOT = Path(os.environ.get("CLIPASSO_SCREENSHOT") or REPO / "tests" / "e2e" / "output" / "comfyui_workflow.png")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def chromium_path():
    for name in (os.environ.get("CLIPASSO_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if name and os.path.exists(name):
            return name
    return None


def _need(what, msg):
    if what:
        return what
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def page(comfy_server):
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
    _need(sync_api, "the Python package playwright is needed for the browser test (pip install playwright; "
                    "no browser download: Debian's chromium is used)")
    exe = _need(chromium_path(), "Debian's chromium is needed for the browser test: apt-get install -y chromium")
    t0 = time.monotonic()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.goto(comfy_server.url, wait_until="domcontentloaded", timeout=120_000)
        page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120_000)
        page.wait_for_function(
            "() => Object.keys(window.LiteGraph.registered_node_types).some(t => t.startsWith('CLIPasso'))",
            timeout=60_000)
        TIMINGS["browser: frontend ready"] = time.monotonic() - t0
        yield page
        browser.close()


LOAD_AND_CHECK = """
async (wf) => {
  await window.app.loadGraphData(wf, true, false, 'test');
  const registered = window.LiteGraph.registered_node_types;
  const nodes = window.app.graph._nodes || window.app.graph.nodes;
  const missing = nodes.filter(n => !registered[n.type]).map(n => n.type);
  const widgetProblems = [];
  for (const n of nodes) {
    const saved = wf.nodes.find(s => s.id === n.id);
    const values = (n.widgets || []).map(w => w.value);
    if (saved && JSON.stringify(values) !== JSON.stringify(saved.widgets_values)) {
      widgetProblems.push({id: n.id, type: n.type, ui: values, saved: saved.widgets_values});
    }
  }
  const dialogs = Array.from(document.querySelectorAll('.p-dialog')).map(d => d.innerText.slice(0, 300));
  const p = await window.app.graphToPrompt();
  return {count: nodes.length, missing, widgetProblems, dialogs, output: p.output};
}
"""


def _same_inputs(ui_prompt, api_prompt):
    problems = []
    for node_id, api_node in api_prompt.items():
        got = ui_prompt.get(node_id)
        if got is None or got["class_type"] != api_node["class_type"]:
            problems.append((node_id, "missing or other class"))
            continue
        for name, value in api_node["inputs"].items():
            if got["inputs"].get(name) != value:
                problems.append((node_id, name, got["inputs"].get(name), value))
        extra = set(got["inputs"]) - set(api_node["inputs"])
        if extra:
            problems.append((node_id, "extra inputs", sorted(extra)))
    return problems


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_workflow_loads_in_the_real_frontend(page, name):
    wf = json.loads((WORKFLOWS / f"{name}.json").read_text())
    api = json.loads((API_DIR / f"{name}.json").read_text())
    result = page.evaluate(LOAD_AND_CHECK, wf)
    _close_dialogs(page)
    assert result["count"] == len(wf["nodes"])
    assert result["missing"] == [], result
    assert result["widgetProblems"] == [], result["widgetProblems"]
    dialogs = [d for d in result["dialogs"] if "missing" in d.lower()]
    assert not [d for d in dialogs if "missing models" not in d.lower()], dialogs  # no missing node
    models = [m for n in wf["nodes"] for m in n.get("properties", {}).get("models", [])]
    if models:  # the models a user must fetch are offered for download, with their folder
        (text,) = [d for d in dialogs if "missing models" in d.lower()]
        for m in models:
            assert f"{m['directory']} / {m['name']}" in text and "Download" in text, text
    else:
        assert not dialogs, dialogs
    assert _same_inputs(result["output"], api) == []
    assert not page.errors, page.errors
    if os.environ.get("CLIPASSO_WRITE_THUMBNAILS"):  # maintenance: refresh example_workflows/<name>.jpg
        _thumbnail(page, WORKFLOWS / f"{name}.jpg")


def _close_dialogs(page) -> None:
    """Close the dialogs a graph load opened (the missing-models dialog), so the next test starts clean."""
    for _ in range(10):
        if not page.query_selector(".p-dialog"):
            return
        page.keyboard.press("Escape")
        page.wait_for_timeout(200)


NODE_BOXES = """
async (wf) => {
  await window.app.loadGraphData(wf, true, false, 'test');
  await new Promise(r => setTimeout(r, 300));
  const title = window.LiteGraph.NODE_TITLE_HEIGHT || 30;
  const nodes = window.app.graph._nodes || window.app.graph.nodes;
  return {title, boxes: nodes.map(n => ({id: n.id, type: n.type, x: n.pos[0], y: n.pos[1] - title,
                                         w: n.size[0], h: n.size[1] + title}))};
}
"""


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_no_node_covers_another_in_the_real_frontend(page, name):
    """Every shipped workflow, as the frontend lays it out (its own node sizes, title bars included):
    no two nodes overlap, so no widget hides under another node."""
    wf = json.loads((WORKFLOWS / f"{name}.json").read_text())
    boxes = page.evaluate(NODE_BOXES, wf)["boxes"]
    _close_dialogs(page)
    assert len(boxes) == len(wf["nodes"])
    covered = [(a["type"], b["type"]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
               if a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
               and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]]
    assert covered == [], covered


def test_loaders_name_the_models_a_user_must_download():
    """The checkpoint and ControlNet loaders carry their model's name, URL and folder (the frontend's
    missing-models dialog offers the download)."""
    seen = set()
    for path in WORKFLOWS.glob("*.json"):
        for node in json.loads(path.read_text())["nodes"]:
            if node["type"] in ("CheckpointLoaderSimple", "ControlNetLoader"):
                (model,) = node["properties"]["models"]
                assert model["name"] == node["widgets_values"][0] and model["url"].startswith("https://")
                assert model["url"].endswith("/" + model["name"])
                assert model["directory"] == {"CheckpointLoaderSimple": "checkpoints",
                                              "ControlNetLoader": "controlnet"}[node["type"]]
                seen.add(node["type"])
    assert seen == {"CheckpointLoaderSimple", "ControlNetLoader"}


OLD_WORKFLOWS = REPO / "tests" / "data" / "workflows_0.1"


@pytest.mark.parametrize("name", sorted(p.stem for p in OLD_WORKFLOWS.glob("*.json")))
def test_release_0_1_workflow_loads_with_its_values(page, name):
    """A workflow saved with release 0.1 (before the node inputs were generated from the settings) loads
    in the real frontend with every saved value in its widget; widgets added since show their defaults."""
    wf = json.loads((OLD_WORKFLOWS / f"{name}.json").read_text())
    api = json.loads((OLD_WORKFLOWS / "api" / f"{name}.json").read_text())
    result = page.evaluate(LOAD_AND_CHECK, wf)
    _close_dialogs(page)
    assert result["missing"] == [], result
    for problem in result["widgetProblems"]:
        assert problem["ui"][:len(problem["saved"])] == problem["saved"], problem
    assert not [d for d in result["dialogs"] if "missing" in d.lower()], result["dialogs"]
    got = result["output"]
    for node_id, node in api.items():
        for key, value in node["inputs"].items():
            assert got[node_id]["inputs"].get(key) == value, (name, node_id, key)
    assert not page.errors, page.errors


FIT_VIEW = """
() => {
  const c = window.app.canvas;
  const nodes = window.app.graph._nodes || window.app.graph.nodes;
  let x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
  for (const n of nodes) {
    x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - 40);
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  const W = c.canvas.clientWidth - 80, H = c.canvas.clientHeight - 120;
  const s = Math.min(1.0, W / (x1 - x0 + 40), H / (y1 - y0 + 40));
  c.ds.scale = s;
  c.ds.offset = [-x0 + 70 / s, -y0 + 100 / s];
  c.setDirty(true, true);
}
"""
# the canvas without the top bar and the left side bar
CANVAS_CLIP = {"x": 48, "y": 76, "width": 1552, "height": 824}


def _thumbnail(page, path):
    import io

    from PIL import Image

    page.evaluate(FIT_VIEW)
    page.wait_for_timeout(800)
    shot = Image.open(io.BytesIO(page.screenshot(type="png", clip=CANVAS_CLIP))).convert("RGB")
    shot.thumbnail((800, 450))
    shot.save(path, quality=85)


def test_templates_of_the_pack_are_listed(comfy):
    templates = comfy.get("/api/workflow_templates").json()
    assert sorted(templates.get("comfyui-clipasso", [])) == sorted(GRAPHS)


QUEUE_SMALL = """
async (wf) => {
  await window.app.loadGraphData(wf, true, false, 'clipasso_one_node');
  const nodes = window.app.graph._nodes || window.app.graph.nodes;
  const sketch = nodes.find(n => n.type === 'CLIPassoSketch');
  const set = (name, v) => { sketch.widgets.find(w => w.name === name).value = v; };
  set('strokes', 8); set('seeds', 2); set('iterations', 6);
  window.app.graph.setDirtyCanvas(true, true);
  await window.app.queuePrompt(0, 1);
  return true;
}
"""


def test_queue_small_workflow_from_the_ui_and_screenshot(page, comfy, matting_weights):
    wf = json.loads((WORKFLOWS / "clipasso_one_node.json").read_text())
    before = set(comfy.get("/history").json())
    t0 = time.monotonic()
    page.evaluate(QUEUE_SMALL, wf)
    entry = None
    while time.monotonic() - t0 < 300:
        new = {k: v for k, v in comfy.get("/history").json().items() if k not in before}
        done = [v for v in new.values() if v.get("status", {}).get("completed") is not None
                and v["status"].get("status_str") in ("success", "error")]
        if done:
            entry = done[0]
            break
        time.sleep(1)
    TIMINGS["browser: queued one-node workflow"] = time.monotonic() - t0
    assert entry is not None, "the workflow queued from the UI did not finish"
    assert entry["status"]["status_str"] == "success", entry["status"]
    prompt = entry["prompt"][2]
    (sketch,) = [v for v in prompt.values() if v["class_type"] == "CLIPassoSketch"]
    assert sketch["inputs"]["strokes"] == 8 and sketch["inputs"]["iterations"] == 6
    # the SVG preview shows in the Save SVG node (an <img> served by /view)
    page.wait_for_function(
        "() => Array.from(document.images).some(i => i.src.includes('.svg') && i.complete)"
        " || (window.app.graph._nodes || window.app.graph.nodes).some(n => n.imgs && n.imgs.length)",
        timeout=60_000)
    page.evaluate(FIT_VIEW)
    page.wait_for_timeout(1500)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), clip=CANVAS_CLIP)
    assert SCREENSHOT.stat().st_size > 20_000
    assert not page.errors, page.errors
