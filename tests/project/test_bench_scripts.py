"""bench/ scripts, run as programs (tests import nothing from bench/): recognition says plainly when it has
no real weights, its zero-shot classifier (clipasso.report.recognition) works, and the speed benchmark's
original-style baseline computes the same loss as the engine (so its timing is fair)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from clipasso.report.recognition import RecognitionError, classify, text_embeddings, top_k_hits, zero_shot_probs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CLASSES = ["cat", "horse", "coffee cup", "rocket"]


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    """A tiny CLIP whose text tower takes open_clip's real tokenizer (full vocabulary), saved as config +
    safetensors and loaded through the real loader."""
    import open_clip
    from safetensors.torch import save_file

    from clipasso.models import load_clip

    folder = tmp_path_factory.mktemp("judge")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    (folder / "bench-judge.json").write_text(json.dumps(cfg))
    save_file(
        {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()},
        str(folder / "bench-judge.safetensors"),
    )
    return load_clip("bench-judge", models_dir=str(folder), allow_download=False)


def _run_recognition(tmp_path, *extra):
    empty = tmp_path / "nothing"
    empty.mkdir()
    env = dict(
        os.environ,
        HOME=str(empty),
        HF_HOME=str(empty),
        CLIPASSO_MODELS_DIR=str(empty),
        HF_HUB_OFFLINE="1",
        CLIPASSO_OFFLINE="1",
        XDG_CACHE_HOME=str(empty),
    )
    out = tmp_path / "rec.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "recognition.py"), "--output", str(out), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return proc, out


def test_recognition_without_weights_says_so_and_prints_no_numbers(tmp_path):
    proc, out = _run_recognition(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "NO REAL CLIP WEIGHTS AVAILABLE" in proc.stdout
    assert "no numbers are reported" in proc.stdout
    assert "%" not in proc.stdout and "top-1" not in proc.stdout
    assert not out.exists()


def test_recognition_with_a_missing_weights_file_is_an_error(tmp_path):
    proc, out = _run_recognition(tmp_path, "--sketch-weights", str(tmp_path / "missing.pt"))
    assert proc.returncode == 2
    assert "missing.pt" in proc.stderr and "not found" in proc.stderr
    assert not out.exists()


def test_zero_shot_gives_a_distribution_over_the_classes(judge):
    images = torch.cat(
        [
            torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)),
            torch.ones(1, 3, 224, 224),
            torch.zeros(1, 3, 224, 224),
        ]
    )
    probs = classify(judge, images, CLASSES)
    assert probs.shape == (4, len(CLASSES))
    assert bool((probs >= 0).all())
    assert torch.allclose(probs.sum(-1), torch.ones(4), atol=1e-5)
    assert torch.equal(probs, classify(judge, images, CLASSES))  # deterministic
    # the order of the columns follows the class list
    rev = classify(judge, images, CLASSES[::-1])
    assert torch.allclose(rev, probs.flip(-1), atol=1e-6)
    # other sizes are resized to the judge's input
    other = classify(judge, torch.ones(1, 3, 300, 200), CLASSES)
    assert other.shape == (1, len(CLASSES)) and abs(float(other.sum()) - 1) < 1e-5


def test_an_image_embedding_equal_to_a_class_prompt_is_that_class(judge):
    txt = text_embeddings(judge, CLASSES)
    assert txt.shape[0] == len(CLASSES)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(len(CLASSES)), atol=1e-5)
    probs = zero_shot_probs(txt[[2, 0, 3]] * 5.0, txt, logit_scale=100.0)  # scale does not matter
    assert probs.argmax(-1).tolist() == [2, 0, 3]
    assert top_k_hits(probs, CLASSES, [("coffee cup",), ("horse",), ("rocket", "cat")], 1) == [True, False, True]
    assert top_k_hits(probs, CLASSES, [("horse",)] * 3, 4) == [True, True, True]


def test_zero_shot_rejects_an_empty_or_repeated_class_list(judge):
    image = torch.ones(1, 3, 224, 224)
    with pytest.raises(RecognitionError, match="empty"):
        classify(judge, image, [])
    with pytest.raises(RecognitionError, match="distinct"):
        classify(judge, image, ["cat", "cat"])
    with pytest.raises(RecognitionError, match="at least one class"):
        zero_shot_probs(torch.ones(1, 32), torch.zeros(0, 32))


def test_original_style_baseline_computes_the_engines_loss():
    """The timing baseline is only a fair comparison if it does the same work: `--check` builds the tiny
    random ResNet, and its clean-view loss must equal the engine's eval loss, its weights must really take
    gradients (as the original's did) while the engine's copy stays frozen, and a sequential run times
    every seed."""
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "original_baseline.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, CLIPASSO_OFFLINE="1"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 5 and all(row.rstrip(" |").endswith("True") for row in rows), proc.stdout
    rel = float(rows[0].split("|")[2])
    assert rel < 1e-4
    assert "fair" in proc.stdout


def test_scene_benchmark_quick_measures_both_modes(tmp_path):
    """bench/scene.py --quick (tiny models): the object and the scene sketch are both timed, the scene has its
    two layers and a joint pass that never ends higher than it started, and with the trace loss only the
    scene sketch reaches the background's edges (an object sketch is drawn on the cut-out object)."""
    out = tmp_path / "scene.json"
    script = os.path.join(ROOT, "bench", "scene.py")
    env = dict(os.environ, CLIPASSO_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--iterations", "4", "--trace-iterations", "30", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rep = json.loads(out.read_text())
    modes = {r["mode"]: r for r in rep["cost"]}
    assert set(modes) == {"object", "scene"}
    assert modes["object"]["strokes"] == modes["scene"]["strokes"] == 80
    assert modes["scene"]["layers"] == {"background": 64, "foreground": 16}
    assert set(modes["scene"]["phases"]) == {"background", "foreground", "joint"}
    joint = modes["scene"]["joint"]
    assert joint["iterations"] == 3 and joint["loss_after"] <= joint["loss_before"]
    assert all(r["peak_rss_mib"] > 0 and r["wall_s"] > 0 for r in rep["cost"])
    summary = rep["cost_summary"][0]
    assert summary["extrapolated_scene_s"] > summary["measured_scene_s"] and summary["ratio"] > 0
    rows = {r["run"]: r for r in rep["trace"][0]["rows"]}
    assert all(0.0 <= r["f"] <= 1.0 for r in rows.values())
    assert rows["scene 16 + 64"]["recall_background"] > 2 * rows["object 80"]["recall_background"]
    assert "| astronaut | scene |" in proc.stdout and "Mean F" in proc.stdout
    again = subprocess.run(
        [sys.executable, script, "--table-only", "--output", str(out)], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and again.stdout.strip() == proc.stdout.strip()


def test_scene_benchmark_rejects_an_unknown_photo(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bench", "scene.py"),
            "--photos",
            "nosuchphoto",
            "--output",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "nosuchphoto" in proc.stderr
    assert not (tmp_path / "x.json").exists()
