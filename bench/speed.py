"""Speed and memory of one CLIPasso sketch: per stage, per preset, scaling, and against the original's way.

    python bench/speed.py                 # CPU (+ CUDA when present), real-size RN101/ViT-B-32, ~7 min on 2 cores
    python bench/speed.py --quick         # tiny test encoders, under 3 min: checks the script, not the numbers
    python bench/speed.py --devices cuda --measure 20
    python bench/speed.py --table-only    # reprint the tables of the last saved run

What is measured (every case in its own process, so peak memory is the case's own: Linux peak RSS
from /proc, plus torch.cuda.max_memory_allocated on GPU):

1. Stages of one sketch at the `paper` preset (16 strokes, 3 seeds) on the bundled example:
   load+fit, matting (rembg u2netp, first call with session load, then warm), saliency (CLIP ViT
   attention) and XDoG, stroke init, optimiser setup (target features; the `fast` pool too), one
   optimiser iteration and its parts (render forward+backward, CLIP loss forward+backward,
   clean-view eval), the 448 px render of the winner, best-of-N selection; and the engine's tiled
   rasteriser against the dense all-pixels reference.
2. Total wall time for 1 and 3 seeds at `paper` and `fast`. A 2000-iteration run takes an hour on
   2 CPU cores, so only a few iterations are timed (median of the steady ones; the first is
   warm-up) and the total is EXTRAPOLATED: stages before the loop + setup + iterations x s/it +
   evaluations x eval cost + render + select.
3. Scaling of the time per iteration (paper settings: 1 clean + 4 fresh augmented views) against
   strokes (4..64), seeds (1, 3, 8) and canvas (224, 448; the encoder always sees 224).
4. The original code's way (bench/original_baseline.py: seeds one after another, graph kept for
   the target features, encoder weights requiring grad, target re-encoded every step, the same
   renderer), timed in the same run at the paper settings for 1 and 3 seeds, so the speed-up is a
   measured ratio. 8 seeds of the baseline = 8 x its 1-seed time (sequential runs share nothing).

Encoders: open_clip's RN101 (loss) and ViT-B-32 (saliency) built with RANDOM weights: no
pretrained weights can be downloaded here, and the cost of a pass does not depend on the weight
values. `--quick` uses the tiny randomly initialised test models (clipasso/testing/tiny_models.py) instead.
The machine may be shared: besides wall time, process CPU seconds per iteration are recorded, and
the load average before each case.

Prints tables last; writes bench/results/speed_<device>.json (speed_<device>_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import RESULTS, cpu_name, hms as _hms, machine, timed, u2net_folder, write_results  # noqa: E402,F401
from clipasso.testing.memory import peak_rss_mib  # noqa: E402
from bench.sketch import _config, _target, random_encoder, time_optimize  # noqa: E402

STROKES_AXIS = (4, 8, 16, 32, 64)
SEEDS_AXIS = (1, 3, 8)
CANVAS_AXIS = (224, 448)
BASE = dict(strokes=16, seeds=1, canvas=224)  # the scaling cases vary one of these at a time


def default_u2net_dir() -> str:
    """$U2NET_HOME, else the u2netp.onnx bundled with the package (clipasso/data)."""
    return u2net_folder() or str(ROOT / "clipasso" / "data")


# --------------------------------------------------------------------------- measuring helpers


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory(device) -> dict:
    import torch

    out = dict(peak_rss_mib=peak_rss_mib())
    if device.type == "cuda":
        out["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_cuda_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# --------------------------------------------------------------------------- encoders


def encoders(spec: dict, need_saliency: bool = False):
    """(loss encoder, saliency encoder or None) for a worker: random real-size or tiny test models."""
    import torch

    device = torch.device(spec["device"])
    if spec["quick"]:
        from clipasso.models import load_clip
        from clipasso.testing.tiny_models import TINY_RN, TINY_VIT, write_tiny_models

        folder = write_tiny_models(tempfile.mkdtemp(prefix="clipasso_speed_"))["folder"]
        enc = load_clip(TINY_RN, models_dir=folder, device=device, allow_download=False)
        vit = load_clip(TINY_VIT, models_dir=folder, device=device, allow_download=False) if need_saliency else None
        return enc, vit
    enc = random_encoder(spec["loss_model"], device)
    vit = random_encoder(spec["saliency_model"], device) if need_saliency else None
    return enc, vit


# --------------------------------------------------------------------------- workers


def _amp(device):
    """The autocast dtype the optimiser uses on this device (bf16/fp16 on GPU, None = fp32 on CPU)."""
    from clipasso.device import amp_dtype

    return amp_dtype("auto", device)


def _eval_cost(enc, target, image, device) -> float:
    """Median seconds of one clean-view evaluation of ``image`` [B,3,H,W] (what runs every eval_interval)."""
    import torch

    from clipasso.objective.losses import CLIPassoLoss

    loss = CLIPassoLoss(enc, target.to(device), num_augs=0, aug_pool=0, amp_dtype=_amp(device))
    with torch.no_grad():
        sec, _, _ = timed(lambda: loss.eval_loss(image), device, reps=3, warmup=1)
    return sec


def engine_worker(spec: dict) -> dict:
    """One (preset, seeds, strokes, canvas) case through the engine's optimiser."""
    import torch

    from clipasso.place.init import initialize_strokes
    from clipasso.settings import PRESETS
    from clipasso.render.raster import render

    device = torch.device(spec["device"])
    enc, _ = encoders(spec)
    canvas = spec["canvas"]
    seeds = [1000 * i for i in range(spec["seeds"])]
    # Uniform random starts: the cost does not depend on where strokes start.
    strokes = initialize_strokes((canvas, canvas), spec["strokes"], seeds)
    target = _target(canvas)
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    load0 = _load()
    # +2: the first step holds the iteration-0 evaluation and the second is dropped as warm-up too
    cfg = _config(spec["preset"], iterations=spec["measure"] + 2)
    c0, w0 = time.process_time(), time.perf_counter()
    t = time_optimize(strokes, target, enc, cfg, device)
    timed_cpu, timed_wall = time.process_time() - c0, time.perf_counter() - w0
    res = t["result"]
    image = render(res.final.to(device)).image
    eval_s = _eval_cost(enc, target, image, device)
    mem = memory(device)
    preset = PRESETS[spec["preset"]]
    return dict(
        kind="engine",
        preset=spec["preset"],
        seeds=spec["seeds"],
        strokes=spec["strokes"],
        canvas=canvas,
        iterations=preset["iterations"],
        num_augs=preset["num_augs"],
        aug_pool=preset["aug_pool"],
        eval_interval=preset["eval_interval"],
        measured_iterations=res.iterations_run,
        s_per_it=t["median"],
        fastest_s_per_it=t["fastest"],
        cpu_s_per_it=t["cpu_per_it"],
        first_step_s=t["first_step"],
        setup_s=t["setup"],
        eval_s=eval_s,
        step_times=t["steps"],
        load_before=load0,
        timed_cpu_s=timed_cpu,
        timed_wall_s=timed_wall,
        **mem,
    )


def baseline_worker(spec: dict) -> dict:
    """The original code's way (bench/original_baseline.py) at the paper settings, seeds one after another."""
    import torch

    from bench.original_baseline import run_sequential, trainable_copy
    from clipasso.place.init import initialize_strokes

    device = torch.device(spec["device"])
    enc, _ = encoders(spec)
    model = trainable_copy(enc)
    mean, std = enc.mean, enc.std
    del enc  # only the trainable copy stays, as in the original (one RN101 for the loss)
    from clipasso.models import clear_cache

    clear_cache()
    gc.collect()
    seeds = [1000 * i for i in range(spec["seeds"])]
    strokes = initialize_strokes((224, 224), spec["strokes"], seeds)
    target = _target(224)
    reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    load0 = _load()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    out = run_sequential(strokes, target.to(device), model, mean, std, spec["measure"] + 1, device)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    mem = memory(device)
    n_steps = sum(len(r["steps"]) for r in out["runs"])
    return dict(
        kind="baseline",
        preset="paper",
        seeds=spec["seeds"],
        strokes=spec["strokes"],
        canvas=224,
        iterations=2000,
        eval_interval=10,
        measured_iterations=spec["measure"] + 1,
        s_per_it=out["per_iteration"],
        fastest_s_per_it=out["fastest"],
        cpu_s_per_it=cpu / max(1, n_steps) * spec["seeds"],
        eval_s=out["eval_s"],
        step_times=[r["steps"] for r in out["runs"]],
        load_before=load0,
        wall_s=wall,
        timed_cpu_s=cpu,
        timed_wall_s=wall,
        **mem,
    )


def compare_worker(spec: dict) -> dict:
    """Engine and original-style baseline in ONE process, alternating blocks of iterations, so that both
    see the same machine (a shared CPU only ever adds time, and does so unevenly over minutes)."""
    import torch

    from bench.original_baseline import run_sequential, trainable_copy
    from clipasso.place.init import initialize_strokes
    from clipasso.render.raster import render

    device = torch.device(spec["device"])
    enc, _ = encoders(spec)
    model = trainable_copy(enc)
    seeds = [1000 * i for i in range(spec["seeds"])]
    strokes = initialize_strokes((224, 224), spec["strokes"], seeds)
    target = _target(224)
    load0 = _load()
    eng, base, base_eval = [], [], []
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(spec["rounds"]):
        t = time_optimize(strokes, target, enc, _config("paper", iterations=spec["measure"] + 2), device)
        eng.extend(t["steps"][1:] if len(t["steps"]) > 1 else t["steps"])
        b = run_sequential(strokes, target.to(device), model, enc.mean, enc.std, spec["measure"] + 1, device)
        base.append(b["per_iteration"])
        base_eval.append(b["eval_s"])
    timed_cpu, timed_wall = time.process_time() - c0, time.perf_counter() - w0
    eng_eval = _eval_cost(enc, target, render(strokes.to(device)).image, device)
    e, bl = statistics.median(eng), statistics.median(base)
    return dict(
        kind="compare",
        seeds=spec["seeds"],
        strokes=spec["strokes"],
        rounds=spec["rounds"],
        measured_iterations=spec["measure"],
        engine_s_per_it=e,
        baseline_s_per_it=bl,
        engine_eval_s=eng_eval,
        baseline_eval_s=statistics.median(base_eval),
        speedup_per_iteration=bl / e,
        engine_steps=eng,
        baseline_rounds=base,
        load_before=load0,
        load_after=_load(),
        timed_cpu_s=timed_cpu,
        timed_wall_s=timed_wall,
        peak_rss_mib=peak_rss_mib(),
    )


def stages_worker(spec: dict) -> dict:
    """Every stage of one sketch at the paper preset, timed on its own."""
    import torch

    from clipasso.place.init import initialize_strokes
    from clipasso.objective.losses import CLIPassoLoss
    from clipasso.settings import PRESETS
    from clipasso.pipeline import EXAMPLE_IMAGE, prepare_target
    from clipasso.render.raster import rasterize, render
    from clipasso.place.saliency import saliency_map
    from clipasso.post.select import select_best
    from clipasso.prepare.xdog import xdog_edges

    device = torch.device(spec["device"])
    load0 = _load()
    reset_peak_rss()
    enc, vit = encoders(spec, need_saliency=True)
    canvas = 224
    n_strokes = spec["strokes"]
    seeds = [1000 * i for i in range(spec["seeds"])]
    st = {}
    notes = []

    # load + fit without matting, then with rembg u2netp (first call loads the ONNX session)
    st["load_fit_s"], _, (target, mask) = timed(
        lambda: prepare_target(EXAMPLE_IMAGE, canvas=canvas, background_removal=False), device, 3
    )
    u2 = spec.get("u2net_dir")
    if u2 and os.path.isfile(os.path.join(u2, "u2netp.onnx")):
        t0 = time.perf_counter()
        target, mask = prepare_target(
            EXAMPLE_IMAGE,
            canvas=canvas,
            background_removal=True,
            matting_model="u2netp",
            models_dir=u2,
            allow_download=False,
        )
        st["matting_first_s"] = time.perf_counter() - t0
        st["matting_s"], _, (target, mask) = timed(
            lambda: prepare_target(
                EXAMPLE_IMAGE,
                canvas=canvas,
                background_removal=True,
                matting_model="u2netp",
                models_dir=u2,
                allow_download=False,
            ),
            device,
            3,
        )
    else:
        notes.append(f"matting skipped: u2netp.onnx not found in {u2} (set U2NET_HOME or --u2net-dir)")
    st["saliency_s"], _, sal = timed(
        lambda: saliency_map(target, method="clip-attention", encoder=vit, mask=mask), device, 3, warmup=1
    )
    st["xdog_s"], _, edges = timed(lambda: xdog_edges(target), device, 3)
    st["init_s"], _, initial = timed(
        lambda: initialize_strokes((canvas, canvas), n_strokes, seeds, saliency=sal, edges=edges, mask=mask), device, 3
    )
    tgt = target.to(device)
    p = PRESETS["paper"]
    f = PRESETS["fast"]
    st["setup_paper_s"], _, loss = timed(
        lambda: CLIPassoLoss(enc, tgt, num_augs=p["num_augs"], aug_pool=0, amp_dtype=_amp(device)), device, 3
    )
    st["setup_fast_s"], _, _ = timed(
        lambda: CLIPassoLoss(enc, tgt, num_augs=f["num_augs"], aug_pool=f["aug_pool"], amp_dtype=_amp(device)),
        device,
        2,
    )

    # one iteration through the optimiser, then its parts
    c0, w0 = time.process_time(), time.perf_counter()
    t = time_optimize(initial, target, enc, _config("paper", iterations=spec["measure"] + 2), device)
    timed_cpu, timed_wall = time.process_time() - c0, time.perf_counter() - w0
    res = t["result"]
    st["iteration_s"] = t["median"]
    st["iteration_cpu_s"] = t["cpu_per_it"]
    pts = res.final.points.to(device)
    widths, colors = res.final.widths.to(device), res.final.colors.to(device)

    def raster_fwd():
        with torch.no_grad():
            return rasterize(pts, widths, colors, canvas, canvas)[0]

    def raster_fwd_bwd(backend="torch", b=None):
        q = (pts if b is None else pts[:b]).detach().requires_grad_(True)
        wd, cl = (widths, colors) if b is None else (widths[:b], colors[:b])
        img = rasterize(q, wd, cl, canvas, canvas, backend=backend)[0]
        img.mean().backward()
        return q.grad

    image = raster_fwd()
    gens = [torch.Generator().manual_seed(s) for s in seeds]

    def loss_fwd_bwd():
        x = image.detach().requires_grad_(True)
        loss.train_loss(x, gens)["total"].sum().backward()
        return x.grad

    st["render_fwd_s"], _, _ = timed(raster_fwd, device, 5, warmup=1)
    st["render_fwd_bwd_s"], _, _ = timed(raster_fwd_bwd, device, 5, warmup=1)
    st["loss_fwd_bwd_s"], _, _ = timed(loss_fwd_bwd, device, 3, warmup=1)
    with torch.no_grad():
        st["eval_s"], _, _ = timed(lambda: loss.eval_loss(image), device, 3, warmup=1)
    # renderer: the engine's tiled search against the dense all-pixels x all-pieces reference, 1 candidate
    st["render1_torch_fwd_bwd_s"], _, _ = timed(lambda: raster_fwd_bwd("torch", 1), device, 5, warmup=1)
    st["render1_dense_fwd_bwd_s"], _, _ = timed(lambda: raster_fwd_bwd("dense", 1), device, 2, warmup=1)

    st["select_s"], _, (winner, _) = timed(lambda: select_best(res.strokes), device, 5)
    st["render448_s"], _, _ = timed(lambda: render(winner, size=(448, 448)).image, device, 3, warmup=1)
    mem = memory(device)
    return dict(
        kind="stages",
        preset="paper",
        seeds=spec["seeds"],
        strokes=n_strokes,
        canvas=canvas,
        measured_iterations=res.iterations_run,
        stages=st,
        notes=notes,
        load_before=load0,
        timed_cpu_s=timed_cpu,
        timed_wall_s=timed_wall,
        **mem,
    )


def _whole_models(spec: dict, folder: str):
    """Write the loss and saliency models under their default names into ``folder`` (so `clipasso.sketch`
    loads them like real weights): the tiny test models with --quick, else a real-size RN101 with random
    weights and BatchNorm statistics calibrated on photos (`bench.rn101.build_rn101`: its loss is
    not ~0, so the plateau rule sees a real curve) and a random ViT-B-32 for the saliency map."""
    import torch

    if spec["quick"]:
        from clipasso.testing.tiny_models import write_tiny_models

        write_tiny_models(folder, as_defaults=True)
        return "tiny test models (as RN101 / ViT-B-32)"
    import open_clip

    from bench.rn101 import PICTURES, build_rn101, picture

    rn = build_rn101([picture(n) for n in PICTURES[:6]], seed=0)
    torch.save(rn.model.state_dict(), os.path.join(folder, "RN101-openai.pt"))
    torch.manual_seed(1)
    vit = open_clip.create_model("ViT-B-32", pretrained=None)
    torch.save(vit.state_dict(), os.path.join(folder, "ViT-B-32-openai.pt"))
    return "RN101 random with BatchNorm calibrated on photos; ViT-B-32 random"


def whole_worker(spec: dict) -> dict:
    """Whole sketches of the bundled example at `fast` and `paper`, and what each speed-up buys, in ONE
    process: the fp32 floor (2 seeds x 3 views of RN101 forward + backward, x 500), release 0.2's fast
    (fp32, both seeds all the way), bf16 alone, bf16 + seed trial, and today's fast preset (bf16 where
    native, seed trial, plateau stop) run whole, start to end; paper in fp32 and in the precision
    'auto' picks; the original's loop (bench/original_baseline.py) at paper settings."""
    import torch

    import clipasso
    from bench.original_baseline import run_sequential, trainable_copy
    from clipasso.models import load_clip
    from clipasso.device import amp_dtype
    from clipasso.pipeline import EXAMPLE_IMAGE, prepare_target
    from clipasso.settings import PRESETS

    device = torch.device(spec["device"])
    folder = tempfile.mkdtemp(prefix="clipasso_whole_")
    models = _whole_models(spec, folder)
    common = dict(device=spec["device"], models_dir=folder, allow_download=False)
    if spec["quick"]:
        common["iterations"] = 40  # whole runs of the tiny models, still start to end
    load0 = _load()
    c0, w0 = time.process_time(), time.perf_counter()
    enc = load_clip("RN101", models_dir=folder, device=device, allow_download=False)
    clipasso.sketch(None, preset="fast", **dict(common, iterations=1))  # warm-up: model loads, matting session
    from clipasso.device import precision_label

    out = dict(kind="whole", models=models, precision_auto=precision_label(amp_dtype("auto", device)))

    # the fp32 floor of issue 14: RN101 forward + input-gradient backward of 2 seeds x 3 views
    x0 = torch.rand(6, 3, 224, 224, device=device)

    def fwd_bwd(dtype):
        x = x0.clone().requires_grad_(True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            y = enc.visual(enc.normalize(x))
        y.float().square().sum().backward()

    out["floor_step_s"], _, _ = timed(lambda: fwd_bwd(None), device, 3, warmup=1)
    native = amp_dtype("auto", device)
    out["floor_step_auto_s"], _, _ = (
        timed(lambda: fwd_bwd(native), device, 3, warmup=1) if native else (out["floor_step_s"], None, None)
    )

    # fixed cost of a sketch: everything but the steps (prepare, matting, saliency, init, objective, eval, output)
    t = time.perf_counter()
    clipasso.sketch(None, preset="fast", **dict(common, iterations=0))
    out["fixed_s"] = time.perf_counter() - t

    target, _ = prepare_target(EXAMPLE_IMAGE, canvas=224, background_removal=False)
    from clipasso.place.init import initialize_strokes

    def step(preset, seeds, **over):
        """median steady step and clean-view eval cost of the engine's loop (uniform random starts)."""
        cfg = _config(preset, iterations=spec["measure"] + 2, **over)
        strokes = initialize_strokes((224, 224), 16, [1000 * i for i in range(seeds)])
        r = time_optimize(strokes, target, enc, cfg, device)
        from clipasso.objective import Objective

        obj = Objective.build(cfg, enc, target, device)
        image = obj.draw(r["result"].final.to(device))
        with torch.no_grad():
            ev, _, _ = timed(lambda: obj.eval_loss(image), device, 3, warmup=1)
        return r["median"], ev

    steps = {}
    for key, preset, seeds, over in (
        ("fast2_fp32", "fast", 2, dict(mixed_precision="fp32")),
        ("fast2_auto", "fast", 2, {}),
        ("fast1_auto", "fast", 1, {}),
        ("paper3_fp32", "paper", 3, dict(mixed_precision="fp32")),
        ("paper3_auto", "paper", 3, {}),
    ):
        steps[key] = step(preset, seeds, **over)
    out["steps"] = {k: dict(s_per_it=v[0], eval_s=v[1]) for k, v in steps.items()}

    # the original's loop at paper settings, one seed (seeds run one after another: x3)
    model = trainable_copy(enc)
    strokes = initialize_strokes((224, 224), 16, [0])
    b = run_sequential(strokes, target.to(device), model, enc.mean, enc.std, spec["measure"] + 1, device)
    out["original_step_s"], out["original_eval_s"] = b["per_iteration"], b["eval_s"]
    del model

    # today's fast preset, whole, start to end (bundled example, models already loaded)
    t = time.perf_counter()
    res = clipasso.sketch(None, preset="fast", **common)
    out["fast_whole_s"] = time.perf_counter() - t
    run = res.run
    out["fast_run"] = dict(
        iterations_run=run.iterations_run,
        stop_reason=run.stop_reason,
        survivors=run.survivors,
        trial_iteration=run.trial_iteration,
        candidate_steps=run.candidate_steps,
        loss=res.loss,
        seconds_optimise=run.seconds,
        precision=res.settings["precision"],
    )
    if device.type == "cuda":  # cheap enough on a GPU: paper best-of-3, whole, start to end
        t = time.perf_counter()
        res_p = clipasso.sketch(None, preset="paper", **common)
        out["paper_whole_s"] = time.perf_counter() - t
        out["paper_run"] = dict(
            iterations_run=res_p.run.iterations_run, loss=res_p.loss, precision=res_p.settings["precision"]
        )
    fast, paper = PRESETS["fast"], PRESETS["paper"]
    it_f = common.get("iterations", fast["iterations"])
    it_p = common.get("iterations", paper["iterations"])
    ev_f, ev_p = it_f // fast["eval_interval"], it_p // paper["eval_interval"]
    trial = int(round(fast["seed_trial"] * it_f))
    fixed = out["fixed_s"]
    s = out["steps"]
    out["rows"] = [
        dict(
            name="fp32 floor: 2 seeds x 3 views RN101 fwd+bwd, x iterations",
            total_s=it_f * out["floor_step_s"],
            measured=False,
        ),
        dict(
            name="fast, release 0.2 (fp32, both seeds to the end)",
            measured=False,
            total_s=fixed + it_f * s["fast2_fp32"]["s_per_it"] + ev_f * s["fast2_fp32"]["eval_s"],
        ),
        dict(
            name=f"fast, {out['precision_auto']} (precision auto), both seeds to the end",
            measured=False,
            total_s=fixed + it_f * s["fast2_auto"]["s_per_it"] + ev_f * s["fast2_auto"]["eval_s"],
        ),
        dict(
            name=f"fast, {out['precision_auto']} + seed trial {fast['seed_trial']:g}",
            measured=False,
            total_s=fixed
            + trial * s["fast2_auto"]["s_per_it"]
            + (it_f - trial) * s["fast1_auto"]["s_per_it"]
            + ev_f * s["fast1_auto"]["eval_s"],
        ),
        dict(
            name=f"fast preset today ({out['precision_auto']}, seed trial, plateau {fast['plateau']:g}/"
            f"{fast['plateau_window']}): stopped at {run.iterations_run}",
            measured=True,
            total_s=out["fast_whole_s"],
        ),
        dict(
            name="paper, release 0.2 (fp32, best of 3)",
            measured=False,
            total_s=fixed + it_p * s["paper3_fp32"]["s_per_it"] + ev_p * s["paper3_fp32"]["eval_s"],
        ),
        dict(
            name=f"paper today (precision auto: {out['precision_auto']}, best of 3)",
            measured=False,
            total_s=fixed + it_p * s["paper3_auto"]["s_per_it"] + ev_p * s["paper3_auto"]["eval_s"],
        ),
        dict(
            name="paper, the original's loop (seeds one after another)",
            measured=False,
            total_s=fixed + it_p * 3 * out["original_step_s"] + ev_p * 3 * out["original_eval_s"],
        ),
    ]
    if "paper_whole_s" in out:
        out["rows"].append(
            dict(
                name=f"paper today, run whole ({out['paper_run']['precision']})",
                measured=True,
                total_s=out["paper_whole_s"],
            )
        )
    floor = out["rows"][0]["total_s"]
    for r in out["rows"]:
        r["vs_floor"] = r["total_s"] / floor
    out["iterations_fast"], out["iterations_paper"] = it_f, it_p
    out.update(
        load_before=load0, timed_cpu_s=time.process_time() - c0, timed_wall_s=time.perf_counter() - w0, **memory(device)
    )
    return out


WORKERS = {
    "engine": engine_worker,
    "baseline": baseline_worker,
    "compare": compare_worker,
    "stages": stages_worker,
    "whole": whole_worker,
}


# --------------------------------------------------------------------------- driver


def _utilisation(row: dict) -> float:
    """CPU seconds per wall second per thread over the timed part: about 1 on a quiet machine; far lower
    when other jobs take the cores (and then, on a shared VM, everything is several times slower)."""
    cpu, wall = row.get("timed_cpu_s"), row.get("timed_wall_s")
    if not cpu or not wall:
        return float("nan")
    return cpu / wall / max(1, row.get("threads", 1))


def _run_once(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env, cwd=str(ROOT)
    )
    if out.returncode != 0:
        print(out.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"speed worker failed for {spec}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["threads"] = spec["threads"]
    row["utilisation"] = _utilisation(row)
    return row


def run_case(spec: dict, retries: int = 2) -> dict:
    """Run one case in its own process. On a CPU with >1 thread a run whose cores were visibly taken by
    other jobs (utilisation < 0.8) is repeated up to ``retries`` times; the least disturbed run is kept."""
    label = ", ".join(f"{k}={spec[k]}" for k in ("kind", "preset", "seeds", "strokes", "canvas") if k in spec)
    print(f"speed [{spec['device']}]: {label} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    runs = [_run_once(spec)]
    check = spec["device"] == "cpu" and spec["threads"] > 1 and not spec["quick"]
    while check and runs[-1]["utilisation"] < 0.8 and len(runs) <= retries:
        print(f"  disturbed (CPU utilisation {runs[-1]['utilisation']:.2f}); again", file=sys.stderr, flush=True)
        runs.append(_run_once(spec))
    row = max(runs, key=lambda r: r["utilisation"] if math.isfinite(r["utilisation"]) else -1.0)
    row["attempts"] = len(runs)
    row["utilisation_of_attempts"] = [r["utilisation"] for r in runs]
    row["process_wall_s"] = time.perf_counter() - t0
    speed = row.get("s_per_it", row.get("engine_s_per_it"))
    if speed is not None:
        print(
            f"  {speed:.3f} s/it, peak RSS {row['peak_rss_mib']:.0f} MiB, utilisation {row['utilisation']:.2f} "
            f"({row['process_wall_s']:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return row


def _total(stages: dict, row: dict) -> dict:
    """Extrapolated wall time of a whole sketch for a measured case."""
    st = stages["stages"]
    before = st.get("matting_s", st["load_fit_s"]) + st["saliency_s"] + st["xdog_s"] + st["init_s"]
    after = st["render448_s"] + st["select_s"]
    iters, every = row["iterations"], row["eval_interval"]
    n_evals = iters // every + 1
    if row["kind"] == "engine":
        loop = row["setup_s"] + iters * row["s_per_it"] + n_evals * row["eval_s"]
    else:  # s_per_it and eval_s are already summed over the seeds run one after another
        loop = iters * row["s_per_it"] + n_evals * row["eval_s"]
    return dict(total_s=before + loop + after, optimize_s=loop, other_stages_s=before + after)


def run_device(args, device: str) -> dict:
    import torch

    measure = args.measure or (20 if device == "cuda" else (3 if args.quick else 4))
    base = dict(
        device=device,
        threads=args.threads,
        quick=args.quick,
        measure=measure,
        loss_model=args.loss_model,
        saliency_model=args.saliency_model,
    )
    started = time.perf_counter()
    load_start = _load()
    whole = run_case(dict(base, kind="whole"))
    if args.only_whole:
        return dict(whole=whole)
    stages = run_case(dict(base, kind="stages", strokes=16, seeds=3, u2net_dir=args.u2net_dir))

    engine_specs = {}

    def eng(preset, seeds=1, strokes=16, canvas=224):
        key = (preset, seeds, strokes, canvas)
        if key not in engine_specs:
            engine_specs[key] = dict(base, kind="engine", preset=preset, seeds=seeds, strokes=strokes, canvas=canvas)
        return key

    totals_keys = [eng(p, s) for p in ("paper", "fast") for s in (1, 3)]
    scal_keys = {
        "strokes": [eng("paper", strokes=n) for n in STROKES_AXIS],
        "seeds": [eng("paper", seeds=n) for n in SEEDS_AXIS],
        "canvas": [eng("paper", canvas=n) for n in CANVAS_AXIS],
    }
    engine = {k: run_case(s) for k, s in engine_specs.items()}
    # side by side in one process (the speed-up), and each alone in its own process (its peak memory)
    side = {n: run_case(dict(base, kind="compare", seeds=n, strokes=16, rounds=2)) for n in (1, 3)}
    baseline = {n: run_case(dict(base, kind="baseline", seeds=n, strokes=16, measure=2)) for n in (1, 3)}

    totals = []
    for key in totals_keys:
        row = dict(engine[key])
        row.update(_total(stages, row))
        totals.append(row)

    def as_row(kind, n, s_per_it, eval_s, mem_row):
        row = dict(
            kind=kind,
            seeds=n,
            iterations=2000,
            eval_interval=10,
            s_per_it=s_per_it,
            eval_s=eval_s,
            setup_s=stages["stages"]["setup_paper_s"] if kind == "engine" else 0.0,
            peak_rss_mib=mem_row.get("peak_rss_mib") if mem_row else None,
            peak_cuda_allocated_mib=mem_row.get("peak_cuda_allocated_mib") if mem_row else None,
        )
        row.update(_total(stages, row))
        return row

    compare = []
    for n in SEEDS_AXIS:
        e8 = engine[eng("paper", seeds=n)]
        if n in side:
            c = side[n]
            b = as_row("baseline", n, c["baseline_s_per_it"], c["baseline_eval_s"], baseline[n])
            e = as_row("engine", n, c["engine_s_per_it"], c["engine_eval_s"], e8)
            measured = True
        else:  # sequential seeds share nothing: n x the 1-seed run; the engine from its own process
            c = side[1]
            b = as_row("baseline", n, n * c["baseline_s_per_it"], n * c["baseline_eval_s"], None)
            e = as_row("engine", n, e8["s_per_it"], e8["eval_s"], e8)
            measured = False
        compare.append(
            dict(
                seeds=n,
                baseline=b,
                engine=e,
                side_by_side=measured,
                speedup_per_iteration=b["s_per_it"] / e["s_per_it"],
                speedup_total=b["total_s"] / e["total_s"],
            )
        )
    fast3 = next(r for r in totals if r["preset"] == "fast" and r["seeds"] == 3)
    b3 = next(c["baseline"] for c in compare if c["seeds"] == 3)
    headline = dict(
        baseline_paper3_total_s=b3["total_s"],
        engine_fast3_total_s=fast3["total_s"],
        ratio=b3["total_s"] / fast3["total_s"],
    )
    scaling = {
        axis: [
            dict(
                value=engine[k][axis],
                s_per_it=engine[k]["s_per_it"],
                cpu_s_per_it=engine[k]["cpu_s_per_it"],
                peak_rss_mib=engine[k]["peak_rss_mib"],
                peak_cuda_allocated_mib=engine[k].get("peak_cuda_allocated_mib"),
            )
            for k in keys
        ]
        for axis, keys in scal_keys.items()
    }
    info = dict(
        device=device,
        device_name=(torch.cuda.get_device_name(0) if device == "cuda" else cpu_name()),
        cores=os.cpu_count(),
        threads=args.threads,
        torch=torch.__version__,
        python=platform.python_version(),
        loss_model=("tiny test ResNet (clipasso/testing/tiny_models.py)" if args.quick else args.loss_model),
        saliency_model=("tiny test ViT" if args.quick else args.saliency_model),
        weights="random (cost is weight-independent)",
        quick=args.quick,
        measured_iterations=measure,
        timing="median of the steady iterations (the first is warm-up)",
        time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        run_s=time.perf_counter() - started,
        load_average_start=load_start,
        load_average_end=_load(),
        load_average_max=max(
            [load_start, _load()]
            + [r.get("load_before", 0.0) for r in [stages] + list(engine.values()) + list(side.values())]
        ),
        min_utilisation=min(
            [
                r["utilisation"]
                for r in [stages] + list(engine.values()) + list(side.values()) + list(baseline.values())
                if math.isfinite(r.get("utilisation", math.nan))
            ],
            default=None,
        ),
        retried_cases=sum(
            r.get("attempts", 1) > 1
            for r in [stages] + list(engine.values()) + list(side.values()) + list(baseline.values())
        ),
    )
    try:
        import open_clip

        info["open_clip"] = open_clip.__version__
    except Exception:  # noqa: BLE001
        pass
    return dict(
        info=info,
        whole=whole,
        stages=stages,
        totals=totals,
        compare=compare,
        headline=headline,
        scaling=scaling,
        engine_cases=list(engine.values()),
        baseline_cases=list(baseline.values()),
        side_by_side_cases=list(side.values()),
    )


# --------------------------------------------------------------------------- tables


def _ms(s: float) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def _mib(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def whole_table(w: dict, info: dict) -> str:
    """The whole-sketch section: today's fast preset run start to end, the rest extrapolated from their steps."""
    where = info.get("device_name", "?")
    if info.get("device") != "cuda":
        where = f"CPU {where}, {info.get('threads')} torch threads of {info.get('cores')} cores"
    L = [
        f"Whole sketch of the bundled example on {where}; {w['models']}; torch {info.get('torch')}",
        f"fast: {w['iterations_fast']} iterations max, best of 2; paper: {w['iterations_paper']} iterations, best of 3. "
        f"Measured = run start to end (models already loaded); the others = fixed cost of a sketch "
        f"({w['fixed_s']:.1f} s: matting, saliency, init, target features, output) + iterations x measured step "
        f"+ evaluations",
        f"{'':<72}{'time':>10}{'x floor':>9}",
    ]
    for r in w["rows"]:
        L.append(
            f"{r['name'][:71]:<72}{_hms(r['total_s']):>10}{r['vs_floor']:>8.2f}x"
            + (" measured" if r["measured"] else "")
        )
    s = w["steps"]
    L.append(
        f"steps (s/it): fast 2 seeds fp32 {s['fast2_fp32']['s_per_it']:.3f}, {w['precision_auto']} "
        f"{s['fast2_auto']['s_per_it']:.3f}, 1 seed {s['fast1_auto']['s_per_it']:.3f}; paper 3 seeds fp32 "
        f"{s['paper3_fp32']['s_per_it']:.3f}, {w['precision_auto']} {s['paper3_auto']['s_per_it']:.3f}; "
        f"the original's loop {w['original_step_s']:.3f} per seed; floor step {w['floor_step_s']:.3f} fp32, "
        f"{w['floor_step_auto_s']:.3f} {w['precision_auto']}"
    )
    fr = w["fast_run"]
    L.append(
        f"the measured fast run: {fr['iterations_run']} iterations ({fr['stop_reason']}), seed trial cut at "
        f"{fr['trial_iteration']} keeping candidate(s) {fr['survivors']}, {fr['candidate_steps']} candidate "
        f"steps, encoder in {fr['precision']}, loss {fr['loss']:.4f}"
    )
    return "\n".join(L)


def tables(rep: dict) -> str:
    inf = rep["info"]
    cuda = inf["device"] == "cuda"
    where = (
        f"{inf['device_name']}"
        if cuda
        else f"CPU {inf['device_name']}, {inf['threads']} torch threads of {inf['cores']} cores"
    )
    models = f"{inf['loss_model']} loss / {inf['saliency_model']} saliency, {inf['weights']}"
    L = [
        f"CLIPasso speed on {where}; {models}; torch {inf['torch']}",
        f"{inf['measured_iterations']} iterations timed per case, {inf['timing']}; whole run {_hms(inf['run_s'])}",
    ]
    util = inf.get("min_utilisation")
    if not cuda and util is not None:
        L.append(
            f"CPU utilisation of the timed parts (CPU s / wall s / threads), lowest case: {util:.2f}; "
            f"{inf.get('retried_cases', 0)} case(s) re-run because other jobs took the cores"
        )
        if util < 0.8 and not inf.get("quick"):
            L.append("WARNING: some cases ran while other jobs took the cores: their times are inflated")
    st, sg = rep["stages"]["stages"], rep["stages"]
    if rep.get("whole"):
        L += ["", whole_table(rep["whole"], rep.get("whole_info", inf))]
    L += [
        "",
        f"Stages of one sketch (paper preset: {sg['strokes']} strokes, {sg['seeds']} seeds, 1+4 views each)",
        f"{'stage':<58}{'time':>12}",
    ]
    rows = [("load + fit to 224 (no matting)", st["load_fit_s"])]
    if "matting_s" in st:
        rows += [
            ("matting, rembg u2netp: first call (loads the ONNX session)", st["matting_first_s"]),
            ("matting, rembg u2netp: warm", st["matting_s"]),
        ]
    rows += [
        ("saliency (CLIP ViT attention map)", st["saliency_s"]),
        ("XDoG ink map", st["xdog_s"]),
        ("stroke init (3 seeds)", st["init_s"]),
        ("optimiser setup, paper (clean target features)", st["setup_paper_s"]),
        ("optimiser setup, fast (+ 16-view augmentation pool)", st["setup_fast_s"]),
        ("optimise: one iteration, all 3 seeds", st["iteration_s"]),
        ("  render forward", st["render_fwd_s"]),
        ("  render forward + backward", st["render_fwd_bwd_s"]),
        ("  CLIP loss forward + backward (15 views, 12 target views)", st["loss_fwd_bwd_s"]),
        ("  clean-view eval (every 10 iterations)", st["eval_s"]),
        ("render the winner at 448 px", st["render448_s"]),
        ("select best of 3", st["select_s"]),
    ]
    L += [f"{name:<58}{_ms(v):>12}" for name, v in rows]
    L.append(
        f"renderer, 1 candidate x 16 strokes forward+backward: tiled {_ms(st['render1_torch_fwd_bwd_s'])} vs "
        f"dense reference {_ms(st['render1_dense_fwd_bwd_s'])} "
        f"({st['render1_dense_fwd_bwd_s'] / st['render1_torch_fwd_bwd_s']:.0f}x)"
    )
    for n in sg.get("notes", []):
        L.append(f"note: {n}")

    mem_hdr = f"{'peak RSS':>10}" + (f"{'peak CUDA':>11}" if cuda else "")

    def mem(r):
        return f"{_mib(r['peak_rss_mib']):>10}" + (f"{_mib(r.get('peak_cuda_allocated_mib')):>11}" if cuda else "")

    L += [
        "",
        "Whole sketch (total EXTRAPOLATED from the timed iterations: stages + setup + iterations x s/it + evals)",
        f"{'preset':<8}{'seeds':>6}{'iters':>7}{'views':>8}{'s/it':>9}{'cpu s/it':>10}{'optimise':>10}{'total':>10}"
        + mem_hdr
        + "  MiB",
    ]
    for r in rep["totals"]:
        views = f"1+{r['num_augs']}" + ("p" if r["aug_pool"] else "")
        L.append(
            f"{r['preset']:<8}{r['seeds']:>6}{r['iterations']:>7}{views:>8}{r['s_per_it']:>9.3f}"
            f"{r['cpu_s_per_it']:>10.2f}{_hms(r['optimize_s']):>10}{_hms(r['total_s']):>10}" + mem(r)
        )
    L.append("views 1+2p: 1 clean + 2 augmented views from a pool of 16 whose target features are cached")

    L += [
        "",
        "Against the original's way at the paper settings (seeds one after another, target re-encoded with a "
        "graph, encoder weights requiring grad; same renderer), timed side by side in one process",
        f"{'seeds':<7}{'original s/it':>14}{'engine s/it':>13}{'speed-up':>10}{'original total':>16}"
        f"{'engine total':>14}{'orig. RSS':>11}{'engine RSS':>12}",
    ]
    for c in rep["compare"]:
        b, e = c["baseline"], c["engine"]
        star = "" if c["side_by_side"] else "*"
        L.append(
            f"{c['seeds']:<7}{b['s_per_it']:>13.3f}{star:1}{e['s_per_it']:>13.3f}{c['speedup_per_iteration']:>9.1f}x"
            f"{_hms(b['total_s']):>16}{_hms(e['total_s']):>14}"
            f"{_mib(b['peak_rss_mib']):>11}{_mib(e['peak_rss_mib']):>12}"
        )
    if cuda:
        L.append(
            "peak CUDA MiB, original / engine: "
            + ", ".join(
                f"{c['seeds']} seeds {_mib(c['baseline'].get('peak_cuda_allocated_mib'))}"
                f" / {_mib(c['engine'].get('peak_cuda_allocated_mib'))}"
                for c in rep["compare"]
            )
        )
    L.append(
        "* 8 seeds: the original = 8 x its 1-seed time (sequential runs share nothing), the engine from its own "
        "process. Peak memory: each alone in its own process. Not counted for the original: its diffvg "
        "renderer, a process start and model loads per seed."
    )
    h = rep["headline"]
    L.append(
        f"original best-of-3 at paper settings {_hms(h['baseline_paper3_total_s'])} vs this engine's fast preset, "
        f"best-of-3 {_hms(h['engine_fast3_total_s'])}: {h['ratio']:.0f}x less wall time"
    )

    names = {
        "strokes": "strokes (1 seed, 224 px)",
        "seeds": "seeds (16 strokes, 224 px)",
        "canvas": "canvas px (16 strokes, 1 seed; encoder input stays 224)",
    }
    L += ["", "Scaling of the time per iteration (paper settings: 1 clean + 4 fresh augmented views per seed)"]
    for axis, rows in rep["scaling"].items():
        base = rows[0]["s_per_it"]
        L.append(
            f"  {names[axis]}: "
            + "   ".join(f"{r['value']}: {r['s_per_it']:.3f} s ({r['s_per_it'] / base:.2f}x)" for r in rows)
        )
    return "\n".join(L)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny test encoders, few iterations (under 3 minutes)")
    ap.add_argument("--devices", nargs="+", default=None, help="cpu and/or cuda (default: cpu, plus cuda if present)")
    ap.add_argument(
        "--measure", type=int, default=None, help="iterations timed per case (default 4 CPU, 3 quick, 20 CUDA)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--loss-model", default="RN101", help="open_clip ResNet name built with random weights")
    ap.add_argument("--saliency-model", default="ViT-B-32", help="open_clip ViT name built with random weights")
    ap.add_argument(
        "--u2net-dir",
        default=None,
        help="folder with rembg's u2netp.onnx (default $U2NET_HOME, else the copy bundled in clipasso/data)",
    )
    ap.add_argument("--table-only", action="store_true", help="print the tables of the last saved run")
    ap.add_argument("--results", default=None, help="folder of the JSON results (default bench/results)")
    ap.add_argument(
        "--only-whole",
        action="store_true",
        help="only the whole-sketch section (fast and paper, whole "
        "runs and what each speed-up buys); merged into the "
        "saved results",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        import torch

        torch.set_num_threads(spec["threads"])
        print(json.dumps(WORKERS[spec["kind"]](spec)))
        return 0
    import torch

    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    suffix = "_quick" if args.quick else ""
    if args.table_only:
        for dev in devices:
            path = (Path(args.results) if args.results else RESULTS) / f"speed_{dev}{suffix}.json"
            if path.is_file():
                rep = json.loads(path.read_text())
                print(tables(rep) if "stages" in rep else whole_table(rep["whole"], rep["whole_info"]))
            else:
                print(f"no saved run for {dev}: {path} does not exist")
        return 0
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--devices cuda was asked for but this torch sees no CUDA GPU")
    args.threads = args.threads or os.cpu_count() or 1
    args.u2net_dir = args.u2net_dir or default_u2net_dir()
    reports = []
    results = Path(args.results) if args.results else RESULTS
    for dev in devices:
        rep = run_device(args, dev)
        results.mkdir(parents=True, exist_ok=True)
        path = results / f"speed_{dev}{suffix}.json"
        if args.only_whole:  # keep the other sections of the last full run
            old = json.loads(path.read_text()) if path.is_file() else {}
            info = dict(
                old.get("info", {}),
                device=dev,
                threads=args.threads,
                cores=os.cpu_count(),
                torch=torch.__version__,
                device_name=(torch.cuda.get_device_name(0) if dev == "cuda" else cpu_name()),
            )
            old.update(whole=rep["whole"], whole_info=info)
            rep = old
            print(whole_table(rep["whole"], info))
        write_results(path, rep, machine(args.threads, dev))
        print(f"wrote {path}", file=sys.stderr)
        reports.append(rep)
    if not args.only_whole:
        print("\n\n".join(tables(r) for r in reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
