"""Fixed-seed sketches whose outputs are stored in tests/data/reference (the refactor guard).

A change that is meant to change results regenerates them, in the same commit, with

    python -m tests.reference_runs --write

and says so; any other change must reproduce them exactly (tests/engine/test_reference_outputs.py). Float
rounding depends on the CPU and on torch, so each machine kind keeps its own set, under
tests/data/reference/machines/<key> (`machine_key`: CPU model, instruction sets, torch version); the
set directly in tests/data/reference is the first one, made before the settings-first refactor on a
CPU with AMX (release 0.2's CI machine).
Every run uses the bundled example picture and the bundled u2netp matting model; the CLIP runs use the
tiny randomly initialised test models (`clipasso.testing.tiny_models`), written with fixed seeds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "reference"

# fp32 and no seed trial or plateau stop: the optimiser of release 0.2's fast preset, on every CPU (issue 14
# made bf16 the CPU default where it is native and turned the trial and the plateau stop on in "fast")
BASE = dict(
    preset="fast",
    strokes=6,
    seeds=2,
    iterations=30,
    saliency="mask",
    device="cpu",
    allow_download=False,
    mixed_precision="off",
    compile="off",  # the eager path, bit for bit (a compiled step differs in the last bits)
    seed_trial=0.0,
    plateau=0.0,
)

RUNS = {
    # the weights-free trace loss, best of 2
    "trace": dict(loss="trace"),
    # trace, then pruning to a fidelity and the greedy drawing order
    "trace_prune_order": dict(loss="trace", auto_strokes=0.8, max_strokes=8, prune_iterations=3, drawing_order=True),
    # trace, growing from 2 strokes
    "trace_grow": dict(
        loss="trace", auto_strokes=0.9, abstraction_method="grow", start_strokes=2, max_strokes=5, grow_iterations=3
    ),
    # the CLIP loss with the tiny ResNet, text guidance and styled strokes, stretched framing
    "clip_text_styled": dict(
        loss="clip",
        clip_model="clipasso-tiny-rn",
        text="a cat",
        iterations=12,
        optimize_width=True,
        color_from_image=True,
        framing="stretch",
    ),
    # clip + trace with the tiny ResNet, pruned
    "clip_trace_prune": dict(
        loss="clip+trace",
        clip_model="clipasso-tiny-rn",
        iterations=10,
        auto_strokes=0.9,
        max_strokes=7,
        prune_iterations=2,
    ),
}


def run(name: str, models_dir) -> dict:
    import clipasso

    torch.set_num_threads(min(2, torch.get_num_threads()))
    settings = dict(BASE, **RUNS[name])
    result = clipasso.sketch(None, models_dir=models_dir, **settings)
    c = result.candidates
    out = {
        "svg": result.svg(),
        "points": result.strokes.points.clone(),
        "widths": result.strokes.widths.clone(),
        "colors": result.strokes.colors.clone(),
        "candidate_points": c.points.clone(),
        "candidate_losses": c.losses.clone(),
        "loss": torch.tensor(result.loss),
    }
    if result.drawing_order is not None:
        out["prefix_losses"] = result.drawing_order.prefix_losses.clone()
    if result.abstraction is not None:
        out["abstraction_losses"] = torch.tensor(result.abstraction.losses, dtype=torch.float64)
    return out


def machine() -> dict:
    """What decides the float rounding of a run: the CPU (model and instruction sets, which pick oneDNN's
    kernels) and torch. The same run on another CPU differs in the last bits, and those differences grow
    over the steps (e.g. the tiny-CLIP run ends 0.1-0.8 % apart and may pick the other seed)."""
    import platform

    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = sorted(
                        x for x in line.split(":", 1)[1].split() if x.startswith(("avx", "amx", "fma", "sse4", "f16c"))
                    )
                    break
    except OSError:
        pass
    return {"cpu": model, "flags": flags, "torch": torch.__version__.split("+")[0]}


def machine_key(info=None) -> str:
    import hashlib
    import json

    return hashlib.sha1(json.dumps(info or machine(), sort_keys=True).encode()).hexdigest()[:12]


def reference_dir(info=None) -> Path:
    """This machine's own reference set (tests/data/reference/machines/<key>), which may not exist."""
    return REFERENCE_DIR / "machines" / machine_key(info)


def main() -> None:
    import json

    from clipasso.testing.tiny_models import write_tiny_models

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--write",
        action="store_true",
        help="store the outputs as this machine's reference (tests/data/reference/machines/<key>)",
    )
    args = parser.parse_args()
    target = reference_dir()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_tiny_models(tmp)["folder"]
        for name in RUNS:
            out = run(name, folder)
            if args.write:
                target.mkdir(parents=True, exist_ok=True)
                torch.save(out, target / f"{name}.pt")
                (target / f"{name}.svg").write_text(out["svg"])
            print(name, float(out["loss"]))
    if args.write:
        (target / "machine.json").write_text(json.dumps(machine(), indent=1) + "\n")
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
