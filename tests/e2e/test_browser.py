"""The real ComfyUI frontend (comfyui-frontend-package) in Debian's headless Chromium, driven by
Playwright: every example workflow loads without missing nodes or widget errors and converts to
exactly our API copy, opens readable in a 1400x850 window (zoom, no title under the frontend's toolbars);
a node's help page opens without a 404; the one-node workflow is queued from the UI and a screenshot is saved."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from clipasso.testing.external import on_ci

from .conftest import TIMINGS
from .workflow_builder import API_DIR, GRAPHS, REPO, WORKFLOWS

# an untracked copy by default; CLIPASSO_SCREENSHOT=docs/comfyui_workflow.png refreshes the README's picture
SCREENSHOT = Path(os.environ.get("CLIPASSO_SCREENSHOT") or REPO / "tests" / "e2e" / "output" / "comfyui_workflow.png")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def chromium_path():
    for name in (
        os.environ.get("CLIPASSO_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if name and os.path.exists(name):
            return name
    return None


def _need(what, msg):
    if what:
        return what
    if on_ci():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def page(comfy_server):
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
    _need(
        sync_api,
        "the Python package playwright is needed for the browser test (pip install playwright; "
        "no browser download: Debian's chromium is used)",
    )
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
            timeout=60_000,
        )
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
    covered = [
        (a["type"], b["type"])
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    ]
    assert covered == [], covered


OUTPUT = REPO / "tests" / "e2e" / "output"  # gitignored: screenshots to look at

# what a user does in the templates browser: the frontend fetches the pack's template and loads it with
# restore_view on, so the workflow opens at its saved zoom and offset
OPEN_AS_TEMPLATE = """
async (name) => {
  const wf = await (await fetch(`api/workflow_templates/comfyui-clipasso/${name}.json`)).json();
  await window.app.loadGraphData(wf, true, true, name, {openSource: 'template'});
  return wf.nodes.length;
}
"""

# the opened view, read after the canvas has drawn it: zoom, the low-detail state, every node's title bar and
# box in screen pixels, the free canvas panel, the rectangles of the frontend's chrome, and which element a
# click on each title bar would reach (the canvas, unless something covers it)
OPENED_VIEW = """
() => {
  const c = window.app.canvas;
  const title = window.LiteGraph.NODE_TITLE_HEIGHT || 30;
  const rect = c.canvas.getBoundingClientRect();
  const toScreen = (x, y) => [rect.left + (x + c.ds.offset[0]) * c.ds.scale,
                              rect.top + (y + c.ds.offset[1]) * c.ds.scale];
  const box = (x0, y0, x1, y1) => { const a = toScreen(x0, y0), b = toScreen(x1, y1);
                                    return {x0: a[0], y0: a[1], x1: b[0], y1: b[1]}; };
  const dom = (e) => { const r = e.getBoundingClientRect();
                       return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom}; };
  const chrome = {};
  for (const [name, sel] of [['tab bar', '.workflow-tabs-container'], ['graph toolbar', '.subgraph-breadcrumb'],
                             ['run toolbar', '.actionbar-container'], ['side bar', '.side-tool-bar-container']]) {
    const e = document.querySelector(sel);
    if (e && e.getBoundingClientRect().height > 0) chrome[name] = dom(e);
  }
  const zoom = document.querySelector('[data-testid="zoom-controls-button"]');
  if (zoom) chrome['zoom toolbar'] = dom(zoom.closest('.p-buttongroup') || zoom);
  const panel = document.querySelector('.graph-canvas-panel');
  const nodes = (window.app.graph._nodes || window.app.graph.nodes).map(n => {
    const t = box(n.pos[0], n.pos[1] - title, n.pos[0] + n.size[0], n.pos[1]);
    const blocked = [];
    for (let i = 0; i <= 8; i++) {
      for (const f of [0.25, 0.75]) {
        const x = t.x0 + 4 + (t.x1 - t.x0 - 8) * i / 8, y = t.y0 + (t.y1 - t.y0) * f;
        const e = document.elementFromPoint(x, y);
        if (e !== c.canvas) blocked.push([Math.round(x), Math.round(y), e ? e.tagName + '.' + e.className : 'nothing']);
      }
    }
    return {id: n.id, title: n.title, titleBar: t, box: box(n.pos[0], n.pos[1] - title, n.pos[0] + n.size[0],
                                                            n.pos[1] + n.size[1]), blocked: blocked.slice(0, 3)};
  });
  return {scale: c.ds.scale, lowQuality: c.low_quality, threshold: c._lowQualityZoomThreshold ?? null,
          panel: panel ? dom(panel) : null, chrome, nodes, window: [window.innerWidth, window.innerHeight]};
}
"""


def _inside(inner, outer):
    return (
        inner["x0"] >= outer["x0"]
        and inner["y0"] >= outer["y0"]
        and inner["x1"] <= outer["x1"]
        and inner["y1"] <= outer["y1"]
    )


def _meet(a, b):
    return a["x0"] < b["x1"] and b["x0"] < a["x1"] and a["y0"] < b["y1"] and b["y0"] < a["y1"]


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_example_opens_readable_in_a_1400x850_window(page, name):
    """Opened from the templates browser in a 1400x850 window, each example is drawn at a zoom of at least
    0.8, above the frontend's low-detail threshold (below it titles and widgets are blank bars), and every
    node, title bar included, lies in the free canvas: no title under the tab bar, the floating graph and Run
    toolbars, the side bar or the zoom toolbar, none cut off at an edge. A screenshot of each is saved in
    tests/e2e/output/ to look at."""
    size = page.viewport_size
    page.set_viewport_size({"width": 1400, "height": 850})
    try:
        page.wait_for_timeout(300)
        count = page.evaluate(OPEN_AS_TEMPLATE, name)
        page.wait_for_timeout(500)
        _close_dialogs(page)  # the missing-models dialog of the Stable Diffusion examples
        page.wait_for_timeout(300)
        view = page.evaluate(OPENED_VIEW)
        OUTPUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUTPUT / f"opened_{name}.png"))
    finally:
        page.set_viewport_size(size)
    assert view["window"] == [1400, 850]
    assert len(view["nodes"]) == count
    assert view["scale"] >= 0.8, view["scale"]
    assert not view["lowQuality"], f"{name} opens in low-detail mode at zoom {view['scale']}"
    if view["threshold"] is not None:
        assert view["scale"] >= view["threshold"], (view["scale"], view["threshold"])
    # the chrome these checks rely on was found where the frontend draws it
    assert {"tab bar", "graph toolbar", "run toolbar", "side bar"} <= set(view["chrome"]), view["chrome"]
    panel = view["panel"]
    assert panel is not None and panel["x1"] - panel["x0"] > 1000, panel
    problems = []
    for n in view["nodes"]:
        if not _inside(n["box"], panel):
            problems.append((n["title"], "not inside the free canvas", n["box"], panel))
        problems += [(n["title"], "under the " + what) for what, r in view["chrome"].items() if _meet(n["titleBar"], r)]
        if n["blocked"]:
            problems.append((n["title"], "title covered at", n["blocked"]))
    assert problems == [], problems
    assert not page.errors, page.errors
    if os.environ.get("CLIPASSO_WRITE_THUMBNAILS"):  # maintenance: refresh example_workflows/<name>.jpg
        _thumbnail(OUTPUT / f"opened_{name}.png", view, WORKFLOWS / f"{name}.jpg")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_example_is_saved_to_open_at_a_readable_zoom(name):
    """Without a browser: the saved view of each example is at least 0.8 and puts every node, title bar
    included, inside the free canvas of a 1400x850 window as the builder measured it."""
    from .workflow_builder import MIN_SCALE, TITLE_HEIGHT, VIEW_BOTTOM, VIEW_LEFT, VIEW_RIGHT, VIEW_TOP

    wf = json.loads((WORKFLOWS / f"{name}.json").read_text())
    ds = wf["extra"]["ds"]
    assert ds["scale"] >= MIN_SCALE, ds
    for n in wf["nodes"]:
        (x0, y0), (w, h) = n["pos"], n["size"]
        left, top = (x0 + ds["offset"][0]) * ds["scale"], (y0 - TITLE_HEIGHT + ds["offset"][1]) * ds["scale"]
        right, bottom = (x0 + w + ds["offset"][0]) * ds["scale"], (y0 + h + ds["offset"][1]) * ds["scale"]
        assert VIEW_LEFT - 1 <= left and right <= VIEW_RIGHT + 1, (n["type"], left, right)
        assert VIEW_TOP - 1 <= top and bottom <= VIEW_BOTTOM + 1, (n["type"], top, bottom)


HELP_NODE = "CLIPassoSketch"


def test_help_page_opens_without_a_404(page):
    """Selecting a node and pressing the selection toolbox's info button opens the node's help page; the
    frontend finds it at its first try (docs/<node>/<locale>.md), so the browser's network log has no 404
    for any docs/ address."""
    responses = []

    def record(response):
        if "/docs/" in response.url:
            responses.append((response.status, response.url))

    size = page.viewport_size
    page.set_viewport_size({"width": 1400, "height": 850})
    page.on("response", record)
    try:
        page.evaluate(OPEN_AS_TEMPLATE, "clipasso_one_node")
        page.wait_for_timeout(500)
        _close_dialogs(page)
        # scroll the graph down a little (the selection toolbox opens above the selected node and must not land
        # under the floating toolbars), then click the node's title bar, as a user selects it
        x, y = page.evaluate(
            """(type) => {
          const c = window.app.canvas, r = c.canvas.getBoundingClientRect();
          c.ds.offset[1] += 120 / c.ds.scale;
          c.setDirty(true, true);
          const n = (window.app.graph._nodes || window.app.graph.nodes).find(n => n.type === type);
          const t = window.LiteGraph.NODE_TITLE_HEIGHT || 30;
          return [r.left + (n.pos[0] + 80 + c.ds.offset[0]) * c.ds.scale,
                  r.top + (n.pos[1] - t / 2 + c.ds.offset[1]) * c.ds.scale];
        }""",
            HELP_NODE,
        )
        page.wait_for_timeout(300)
        page.mouse.click(x, y)
        page.click('[data-testid="info-button"]', timeout=15_000)
        heading = (REPO / "web" / "docs" / HELP_NODE / "en.md").read_text(encoding="utf-8").splitlines()[0]
        page.get_by_role("heading", name=heading.lstrip("# ").strip()).first.wait_for(timeout=15_000)
        page.wait_for_timeout(500)
        OUTPUT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUTPUT / "help_page.png"))
        # close the help panel again (the info button toggles it), leaving the page as the next test expects
        page.click('[data-testid="info-button"]', timeout=5_000)
    finally:
        page.remove_listener("response", record)
        page.set_viewport_size(size)
    assert responses, "the help page was not fetched"
    assert [r for r in responses if r[0] >= 400] == [], responses
    assert (200, responses[0][1]) == responses[0] and responses[0][1].endswith(f"/docs/{HELP_NODE}/en.md"), responses
    assert not page.errors, page.errors


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
                assert (
                    model["directory"]
                    == {"CheckpointLoaderSimple": "checkpoints", "ControlNetLoader": "controlnet"}[node["type"]]
                )
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
        assert problem["ui"][: len(problem["saved"])] == problem["saved"], problem
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


def _thumbnail(screenshot, view, path):
    """The templates browser's picture of an example: the free canvas of the example as it opens (below the
    toolbars, right of the side bar, above the zoom toolbar)."""
    from PIL import Image

    panel = view["panel"]
    bottom = view["chrome"].get("zoom toolbar", panel)["y0"]
    shot = (
        Image.open(screenshot)
        .convert("RGB")
        .crop((round(panel["x0"]), round(panel["y0"]), round(panel["x1"]), round(bottom)))
    )
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
        done = [
            v
            for v in new.values()
            if v.get("status", {}).get("completed") is not None
            and v["status"].get("status_str") in ("success", "error")
        ]
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
        timeout=60_000,
    )
    page.evaluate(FIT_VIEW)
    page.wait_for_timeout(1500)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), clip=CANVAS_CLIP)
    assert SCREENSHOT.stat().st_size > 20_000
    assert not page.errors, page.errors
