"""End to end: the automatic abstraction + drawing order example workflow runs in a real ComfyUI 0.3.75
server, and its files come back through /view. Made quick for the CPU, and measured with the weights-free
trace loss: with the tiny random CLIP test models a sketch is hardly better than an empty canvas, so
there would be nothing to prune."""

from __future__ import annotations

import io

from .test_comfyui_server import by_class, load_api, load_ui


def test_abstraction_workflow_prunes_orders_and_animates(comfy, matting_weights):
    from PIL import Image

    from clipasso.output.svg import read_svg

    prompt = load_api("clipasso_abstraction")
    (init,) = by_class(prompt, "CLIPassoInitStrokes")
    prompt[init]["inputs"].update(strokes=6, seeds=1, use_edges=True)
    (opt,) = by_class(prompt, "CLIPassoOptimize")
    prompt[opt]["inputs"].update(iterations=25, augmentations=1, learning_rate=2.0, loss="trace")
    (auto,) = by_class(prompt, "CLIPassoAutoAbstraction")
    prompt[auto]["inputs"].update(prune_iterations=1, fidelity=0.8, loss="trace")
    (order,) = by_class(prompt, "CLIPassoDrawingOrder")
    prompt[order]["inputs"].update(frame_size=96, loss="trace")
    run = comfy.run(prompt, timeout=900, workflow=load_ui("clipasso_abstraction"))
    assert run.status == "success", run.error
    outputs = comfy.history(run.prompt_id)["outputs"]

    (save_svg,) = by_class(prompt, "CLIPassoSaveSVG")
    (svg_file,) = outputs[save_svg]["images"]
    strokes = read_svg(comfy.view(**svg_file).decode("utf-8"))
    assert 1 <= strokes.num_strokes <= 6

    (webp_node,) = by_class(prompt, "SaveAnimatedWEBP")
    assert webp_node in outputs, {k: list(v) for k, v in outputs.items()}
    (webp,) = outputs[webp_node]["images"]
    with Image.open(io.BytesIO(comfy.view(**webp))) as im:
        assert im.size == (96, 96)
        assert getattr(im, "n_frames", 1) == strokes.num_strokes + 1  # empty canvas, then one stroke at a time

    (curve,) = by_class(prompt, "PreviewImage")
    assert outputs[curve]["images"][0]["type"] == "temp"
