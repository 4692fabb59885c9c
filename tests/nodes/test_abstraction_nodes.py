"""Auto Abstraction and Drawing Order nodes, called as ComfyUI calls them (inside torch.inference_mode),
inside the real ComfyUI 0.3.75 core (fetched by the e2e harness), with the tiny real models."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import pytest
import torch

from e2e.comfy_env import comfyui_or_skip, import_core, load_pack
from tests.engine.post.test_abstraction import t_sketch, t_target
from tests.engine.post.test_order import mixed_sketch

NEW_NODES = ("CLIPassoAutoAbstraction", "CLIPassoDrawingOrder")


@pytest.fixture(scope="module")
def N(tmp_path_factory):
    folder_paths = import_core(comfyui_or_skip())
    base = tmp_path_factory.mktemp("comfy_dirs_abstraction")
    for sub in ("output", "input", "temp"):
        (base / sub).mkdir()
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_temp_directory(str(base / "temp"))
    pack = load_pack()
    ext = asyncio.run(pack.comfy_entrypoint())
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(ext.get_node_list())}


@pytest.fixture(scope="module")
def models(N, tiny_models_dir):
    import folder_paths

    folder_paths.add_model_folder_path("clipasso", str(tiny_models_dir), is_default=True)
    return run(
        N["CLIPassoLoadModels"],
        loss_model="RN101",
        saliency_model="ViT-B-32",
        pretrained="openai",
        device="cpu",
        precision="fp32",
        allow_download=False,
    )[0]


def run(node, **inputs):
    cls = node.PREPARE_CLASS_CLONE({})
    with torch.inference_mode():
        return cls.execute(**inputs)


def picture():
    """The 'T' target as a ComfyUI IMAGE [1,H,W,3]."""
    return t_target().permute(1, 2, 0).unsqueeze(0).contiguous()


def test_nodes_are_registered_with_tooltips(N):
    for node_id in NEW_NODES:
        schema = N[node_id].GET_SCHEMA()
        assert schema.category == "CLIPasso" and schema.description
        for item in list(schema.inputs) + list(schema.outputs):
            assert item.tooltip, f"{node_id}.{item.id} has no tooltip"
        assert N[node_id].GET_NODE_INFO_V1()["name"] == node_id


def test_auto_abstraction_node(N, models):
    from clipasso.strokes import Strokes

    kw = dict(
        models=models,
        image=picture(),
        prune_iterations=0,
        full_curve=True,
        preset="fast",
        learning_rate=1.0,
        semantic_weight=0.1,
    )
    strokes, image, count, chart, text = run(N["CLIPassoAutoAbstraction"], strokes=t_sketch(), fidelity=0.5, **kw).args
    assert isinstance(strokes, Strokes) and strokes.num_strokes == count and 1 <= count < 4
    assert not strokes.points.is_inference() and strokes.device.type == "cpu"
    assert image.shape == (1, 96, 96, 3)
    assert chart.ndim == 4 and chart.shape[0] == 1 and chart.shape[-1] == 3 and float(chart.min()) < 0.5
    data = json.loads(text)
    assert [c["strokes"] for c in data["curve"]] == [4, 3, 2, 1] and data["count"] == count
    strict = run(N["CLIPassoAutoAbstraction"], strokes=t_sketch(), fidelity=1.0, **dict(kw, full_curve=False)).args[2]
    assert strict > count  # a higher fidelity keeps more strokes


def test_drawing_order_node(N, models):
    strokes, frames, chart, svg, text = run(
        N["CLIPassoDrawingOrder"],
        models=models,
        image=picture(),
        strokes=mixed_sketch(),
        frame_size=0,
        include_blank=True,
        stroke_seconds=0.3,
        semantic_weight=0.1,
    ).args
    data = json.loads(text)
    assert sorted(data["order"]) == [0, 1, 2, 3] and data["order"][0] == 2  # the T's bar first
    assert torch.equal(strokes.points[0], mixed_sketch().points[0, data["order"]])
    assert frames.shape == (5, 96, 96, 3) and float(frames[0].min()) == 1.0
    ink = (1 - frames).sum(dim=(1, 2, 3))
    assert bool((ink[1:] > ink[:-1]).all())
    assert len(list(ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}path"))) == 4
    assert chart.shape[0] == 1 and chart.shape[-1] == 3
    small = run(
        N["CLIPassoDrawingOrder"],
        models=models,
        image=picture(),
        strokes=mixed_sketch(),
        frame_size=48,
        include_blank=False,
        stroke_seconds=0.3,
        semantic_weight=0.1,
    ).args[1]
    assert small.shape == (4, 48, 48, 3)


def test_nodes_reject_bad_inputs_clearly(N, models):
    two = torch.cat([picture(), picture()])
    with pytest.raises(ValueError, match="one sketch of one picture"):
        run(
            N["CLIPassoDrawingOrder"],
            models=models,
            image=two,
            strokes=mixed_sketch(),
            frame_size=0,
            include_blank=True,
            stroke_seconds=0.3,
            semantic_weight=0.1,
        )
    with pytest.raises(ValueError, match="SKETCH_STROKES"):
        run(
            N["CLIPassoAutoAbstraction"],
            models=models,
            image=picture(),
            strokes="not strokes",
            fidelity=0.9,
            prune_iterations=0,
            full_curve=False,
            preset="fast",
            learning_rate=1.0,
            semantic_weight=0.1,
        )


def test_nodes_work_with_the_trace_loss_without_models(N):
    """loss 'trace' (weights-free) needs no CLIP model; other losses without models are a clear error."""
    strokes, _, count, _, text = run(
        N["CLIPassoAutoAbstraction"],
        image=picture(),
        strokes=t_sketch(),
        fidelity=0.9,
        prune_iterations=0,
        full_curve=True,
        preset="fast",
        learning_rate=1.0,
        semantic_weight=0.1,
        loss="trace",
    ).args
    data = json.loads(text)
    assert data["blank_loss"] == pytest.approx(1.0)  # the trace loss of an empty canvas
    assert data["curve"][-1]["loss"] > data["curve"][0]["loss"] and strokes.num_strokes == count
    ordered, frames = run(
        N["CLIPassoDrawingOrder"],
        image=picture(),
        strokes=mixed_sketch(),
        frame_size=0,
        include_blank=False,
        stroke_seconds=0.3,
        semantic_weight=0.1,
        loss="trace",
    ).args[:2]
    assert frames.shape == (4, 96, 96, 3) and ordered.num_strokes == 4
    with pytest.raises(ValueError, match="needs a CLIP model"):
        run(
            N["CLIPassoDrawingOrder"],
            image=picture(),
            strokes=mixed_sketch(),
            frame_size=0,
            include_blank=True,
            stroke_seconds=0.3,
            semantic_weight=0.1,
            loss="clip",
        )


def test_auto_abstraction_node_grows(N):
    """method 'grow' starts from the connected strokes and adds strokes; the curve goes up in count."""
    from tests.engine.post.test_grow import corner_start

    kw = dict(
        image=picture(),
        strokes=corner_start(),
        prune_iterations=0,
        full_curve=False,
        preset="fast",
        learning_rate=1.0,
        semantic_weight=0.1,
        loss="trace",
        method="grow",
        start_strokes=0,
        max_strokes=5,
        grow_iterations=1,
        min_gain=0.0,
    )
    strokes, image, count, chart, text = run(N["CLIPassoAutoAbstraction"], fidelity=0.8, **kw).args
    data = json.loads(text)
    assert data["method"] == "grow" and [c["strokes"] for c in data["curve"]] == [1, 2, 3, 4, 5]
    assert data["count"] == count == strokes.num_strokes and 1 <= count <= 5
    assert data["curve"][-1]["loss"] < data["curve"][0]["loss"]
    assert image.shape == (1, 96, 96, 3) and chart.shape[0] == 1
    assert not strokes.points.is_inference()
    with pytest.raises(ValueError, match=r"max_strokes \(1\) must be larger than the 1 strokes"):
        run(N["CLIPassoAutoAbstraction"], fidelity=0.8, **dict(kw, max_strokes=1))
    with pytest.raises(ValueError, match="start_strokes is 3 but the starting sketch has only 1"):
        run(N["CLIPassoAutoAbstraction"], fidelity=0.8, **dict(kw, start_strokes=3))


def test_auto_abstraction_node_inputs_of_older_workflows(N):
    """The grow inputs are optional, and their defaults prune as before."""
    schema = N["CLIPassoAutoAbstraction"].GET_SCHEMA()
    grow = {
        i.id: i
        for i in schema.inputs
        if i.id in ("method", "start_strokes", "max_strokes", "grow_iterations", "min_gain")
    }
    assert len(grow) == 5 and all(i.optional for i in grow.values())
    assert grow["method"].default == "prune"
    ids = [i.id for i in schema.inputs]
    assert ids.index("method") > ids.index("trace_weight")  # appended: older saved widget values keep their places


# Settings under which the loss has every kind of term: geometric (weighted), semantic, text, trace, a pen.
LOSS_WIDGETS = dict(
    preset="fast",
    learning_rate=1.0,
    semantic_weight=0.3,
    geometric_weight=2.0,
    augmentations=1,
    loss="clip+trace",
    trace_weight=0.5,
    text="a letter T",
    text_weight=0.4,
    pen_width=2.0,
)


def test_abstraction_nodes_measure_with_the_loss_optimize_sketch_optimised(N, models):
    """The loss Auto Abstraction and Drawing Order measure a sketch with is the one Optimize Sketch
    optimised it with (its best loss is the loss of the strokes it returns), for the same widgets; and it
    depends on them (without the text term the same strokes measure differently)."""
    image = picture()
    best = run(N["CLIPassoOptimize"], models=models, image=image, strokes=t_sketch(), iterations=3, **LOSS_WIDGETS)[0]
    optimised = float(best.losses[0])

    def measured(**change):
        widgets = dict(LOSS_WIDGETS, **change)
        out = run(
            N["CLIPassoAutoAbstraction"],
            models=models,
            image=image,
            strokes=best,
            fidelity=1.0,
            prune_iterations=0,
            full_curve=False,
            **widgets,
        )
        full = json.loads(out[4])["full_loss"]
        order_widgets = {
            k: v
            for k, v in widgets.items()
            if k in ("semantic_weight", "geometric_weight", "loss", "trace_weight", "text", "text_weight", "pen_width")
        }
        ordered = run(
            N["CLIPassoDrawingOrder"],
            models=models,
            image=image,
            strokes=best,
            frame_size=0,
            include_blank=True,
            stroke_seconds=0.4,
            **order_widgets,
        )
        last = json.loads(ordered[4])["prefix_losses"][-1]
        return full, last

    full, last = measured()
    assert full == pytest.approx(optimised, rel=1e-5, abs=1e-7)
    assert last == pytest.approx(optimised, rel=1e-4, abs=1e-6)  # the strokes in another compositing order
    no_text, no_text_last = measured(text="")
    assert abs(no_text - optimised) > 1e-3 and abs(no_text_last - optimised) > 1e-3
