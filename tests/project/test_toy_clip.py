"""clipasso/testing/toy_clip.py (the toy CLIP that text guidance is measured with) and the study that uses it,
bench/studies/text_guidance.py (run as a program)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from clipasso.testing import toy_clip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shape_drawings_trace_their_outline():
    from clipasso.report.metrics import dilate, ink_map

    g = torch.Generator().manual_seed(0)
    clean = toy_clip.draw_batch(list(range(len(toy_clip.SHAPES))), g, clean=True)
    ink = ink_map(clean)
    assert ink.shape == (len(toy_clip.SHAPES), 224, 224)
    assert all(int(m.sum()) > 300 for m in ink)  # every outline is drawn, closed, of some length
    # clean square: all ink within 2 px of the square's outline (side 0.8 * 2 * 0.33 * 224, centred)
    half = 0.8 * 0.33 * 224
    outline = torch.zeros(224, 224, dtype=torch.bool)
    lo, hi = round(112 - half), round(112 + half)
    outline[lo : hi + 1, lo] = outline[lo : hi + 1, hi] = outline[lo, lo : hi + 1] = outline[hi, lo : hi + 1] = True
    sq = ink[toy_clip.SHAPES.index("square")]
    assert bool((sq & ~dilate(outline[None], 2.5)[0]).sum() == 0)
    assert float((dilate(sq[None], 2.5)[0] & outline).sum() / outline.sum()) > 0.97
    # shapes differ from each other; the sketchy drawings are jittered, broken and varied
    flat = ink.flatten(1).float()
    inter = flat @ flat.T
    iou = inter / (flat.sum(1, keepdim=True) + flat.sum(1) - inter)
    assert float((iou - torch.eye(len(flat))).max()) < 0.6
    a = toy_clip.draw_batch([0, 0], torch.Generator().manual_seed(1))
    assert float((a[0] - a[1]).abs().mean()) > 0.005


def test_trained_toy_model_round_trips_through_the_real_loader(tmp_path):
    from clipasso.models import load_clip

    out = toy_clip.train(steps=3, seed=0, batch=6, log_every=1)
    assert len(out["history"]) == 3 and all(h["loss"] > 0 for h in out["history"])
    files = toy_clip.save(out["model"], tmp_path, "toy-test")
    enc = load_clip("toy-test", models_dir=str(tmp_path), allow_download=False)
    assert enc.image_size == toy_clip.INPUT and not enc.is_vit
    images = toy_clip.draw_batch([0, 1, 2], torch.Generator().manual_seed(3))
    a = toy_clip.class_probabilities(out["model"], images)
    b = toy_clip.class_probabilities(enc.model, images)
    assert a.shape == (3, len(toy_clip.SHAPES))
    assert torch.allclose(a.sum(1), torch.ones(3), atol=1e-5)
    assert torch.allclose(a, b, atol=1e-5)
    assert json.loads(open(files["config"]).read()) == toy_clip.TOY_CONFIG


def test_text_guidance_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "tg.json"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bench", "studies", "text_guidance.py"),
            "--models",
            str(tmp_path / "models"),
            "--train-steps",
            "2",
            "--train-batch",
            "6",
            "--held-out",
            "12",
            "--prompts",
            "square",
            "--weights",
            "0,1",
            "--strokes",
            "3",
            "--iterations",
            "2",
            "--seeds",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, CLIPASSO_OFFLINE="1"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [(r["prompt"], r["text_weight"]) for r in rows] == [("-", 0.0), ("square", 1.0)]
    assert rows[0]["judge_p_prompt"] is None and 0 <= rows[1]["judge_p_prompt"] <= 1
    assert all(0 <= r["edge_f"] <= 1 and len(r["judge_top1"]) == 1 for r in rows)
    assert "judge P(prompt)" in proc.stdout
    assert set(data["toy_models"]) == {"toy-shapes", "toy-shapes-judge"}
