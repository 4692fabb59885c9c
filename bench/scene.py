"""Scene mode measured: what a layered scene sketch costs against an object sketch, what it draws, and
what its joint pass changes (docs/scenes.md, "Measured").

    python bench/scene.py                            # the full run (about 9 min on 2 quiet cores)
    python bench/scene.py --quick                    # tiny test models, few iterations: checks the script, not the numbers
    python bench/scene.py --table-only               # reprint the tables of the last saved run
    python bench/scene.py --only cost                # re-time the CLIP runs, keep the saved trace-loss runs

Four questions, on scikit-image's astronaut, coffee and chelsea (``--photos``; the timed runs with the
real-size models on ``--cost-photos``, default the same), each case in its own process (so its peak
memory is its own):

1. cost: a scene sketch (``--strokes`` 16 on the object + ``--background-strokes`` 64) against an object
   sketch of the same total strokes (80), both with the `fast` preset and the real architectures with
   random weights (RN101 with BatchNorm calibrated on photos, `bench.rn101`; ViT-B-32 random: a pass
   costs the same whatever the weights). Only ``--iterations`` steps per layer run; every step is timed
   through the progress callback and the whole sketch is extrapolated to the preset's 500 iterations per
   layer (and the default joint pass, a tenth of them): fixed cost (everything outside the steps:
   loading, matting, inpainting, placement, the final evaluations) + per phase, the seed-trial steps x
   their mean step + the rest x theirs. The plateau stop is left out of the extrapolation (it ends
   both kinds of sketch early on a flat curve), so it is an upper bound for both;
2. edges: with the weights-free trace loss (``loss="trace", saliency="mask"``) at the preset's full
   iterations, the edge F-score over the whole picture (`clipasso.report.metrics.fscore`: Canny edges of
   the whole picture, 3 px tolerance, against the ink of the rendered sketch) of an object sketch with
   16 and with 80 strokes and of a scene sketch (16 + 64); recall split into the object's edges and the
   background's;
3. joint pass: from the runs of (1), the loss on the whole picture before and after the joint pass
   (``--joint-iterations`` steps) and each layer's own loss before and after;
4. peak memory: the peak RSS (VmHWM) of each process of (1).

The machine may be shared: every case records the load average and its CPU seconds against its wall
seconds (utilisation 1.0 = both threads busy all along). Results: bench/results/scene_cpu.json
(``--quick``: scene_cpu_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import RESULTS, hms, machine, markdown_table, write_results  # noqa: E402
from clipasso.testing.memory import peak_rss_mib  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea")
FG_STROKES, BG_STROKES = 16, 64


# --------------------------------------------------------------------------- helpers


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def photo(name: str):
    """The scikit-image photo as an HxWx3 uint8 array (what a user would pass to clipasso.sketch)."""
    import skimage.data

    return getattr(skimage.data, name)()


def write_models(folder: str, quick: bool) -> str:
    """Write the loss (RN101) and background/saliency (ViT-B-32) models under their default names into
    ``folder``, so `clipasso.sketch` loads them as it would real weights; returns what they are."""
    import torch

    if quick:
        from clipasso.testing.tiny_models import write_tiny_models

        write_tiny_models(folder, as_defaults=True)
        return "tiny test models as RN101 / ViT-B-32 (3 ViT blocks)"
    import open_clip

    from bench.rn101 import PICTURES, build_rn101, picture

    rn = build_rn101([picture(n) for n in PICTURES[:6]], seed=0)
    torch.save(rn.model.state_dict(), os.path.join(folder, "RN101-openai.pt"))
    torch.manual_seed(1)
    vit = open_clip.create_model("ViT-B-32", pretrained=None)
    torch.save(vit.state_dict(), os.path.join(folder, "ViT-B-32-openai.pt"))
    return "RN101 random with BatchNorm calibrated on photos; ViT-B-32 random"


# --------------------------------------------------------------------------- workers


def cost_worker(spec: dict) -> dict:
    """One sketch (object or scene) of one photo with ``spec['iterations']`` steps per layer, every step
    timed; returns the phases' step times, the fixed cost, the joint pass and the peak RSS."""
    import torch

    import clipasso
    from clipasso.settings import PRESETS

    torch.set_num_threads(spec["threads"])
    img = photo(spec["photo"])
    n = spec["iterations"]
    marks = []  # (global step, wall, cpu) after every step

    def cb(it, losses, render):
        marks.append((int(it), time.perf_counter(), time.process_time()))

    kw = dict(
        preset="fast",
        iterations=n,
        device="cpu",
        models_dir=spec["models"],
        allow_download=False,
        callback_interval=1,
        callback=cb,
    )
    if spec["mode"] == "scene":
        kw.update(scene=True, strokes=FG_STROKES, background_strokes=BG_STROKES, joint_iterations=spec["joint"])
        if spec.get("fidelity") is not None:
            kw["scene_fidelity"] = spec["fidelity"]
    else:
        kw.update(strokes=FG_STROKES + BG_STROKES)
    load0 = load_avg()
    w0, c0 = time.perf_counter(), time.process_time()
    res = clipasso.sketch(img, **kw)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    load1 = load_avg()

    # the phases in the order they ran: each layer n steps (global steps offset by n per layer), the joint pass
    names = list(res.layers) if res.layers else ["object"]
    phases = [(name, i * n + 1, (i + 1) * n) for i, name in enumerate(names)]
    if res.joint is not None and res.joint.iterations:
        phases.append(("joint", len(names) * n + 1, len(names) * n + res.joint.iterations))
    trial = int(round(PRESETS["fast"]["seed_trial"] * n))
    steps = {}
    stepped = stepped_cpu = 0.0
    for name, lo, hi in phases:
        pm = [m for m in marks if lo <= m[0] <= hi]
        # a step's time is the gap since the previous step's mark in the same phase: the first step of a
        # phase (placement, the first evaluation, warm-up) stays in the fixed cost
        d = [(b[0] - lo + 1, b[1] - a[1], b[2] - a[2]) for a, b in zip(pm[:-1], pm[1:]) if b[0] == a[0] + 1]
        stepped += sum(x[1] for x in d)
        stepped_cpu += sum(x[2] for x in d)
        in_trial = [x for x in d if x[0] <= trial] if name != "joint" else []
        rest = [x for x in d if name == "joint" or x[0] > trial]

        def med(xs, i):
            return statistics.median(x[i] for x in xs) if xs else None

        steps[name] = dict(
            steps=len(pm),
            trial_median_s=med(in_trial, 1),
            median_s=med(rest, 1),
            mean_s=statistics.mean(x[1] for x in rest) if rest else None,
            trial_cpu_median_s=med(in_trial, 2),
            cpu_median_s=med(rest, 2),
            step_s=[round(x[1], 4) for x in d],
            step_cpu_s=[round(x[2], 4) for x in d],
        )
    out = dict(
        kind="cost",
        mode=spec["mode"],
        photo=spec["photo"],
        iterations=n,
        trial_steps=trial,
        strokes=int(res.strokes.num_strokes),
        layers={k: int(v.strokes.num_strokes) for k, v in (res.layers or {}).items()},
        wall_s=wall,
        cpu_s=cpu,
        utilisation=cpu / wall / spec["threads"],
        load_before=load0,
        load_after=load1,
        fixed_s=wall - stepped,
        fixed_cpu_s=cpu - stepped_cpu,
        phases=steps,
        peak_rss_mib=peak_rss_mib(),
        precision=res.settings.get("precision"),
    )
    if res.joint is not None:
        out["joint"] = res.joint.to_dict()
    return out


def trace_worker(spec: dict) -> dict:
    """Object sketches (16 and 80 strokes) and a scene sketch (16 + 64) of one photo with the trace loss,
    each scored against the Canny edges of the whole picture."""
    import torch

    import clipasso
    from clipasso.render.raster import render
    from clipasso.report.metrics import dilate, edge_map, fscore, ink_map

    torch.set_num_threads(spec["threads"])
    img = photo(spec["photo"])
    common = dict(
        preset="fast", loss="trace", saliency="mask", device="cpu", allow_download=False, models_dir=spec["models"]
    )
    if spec.get("iterations"):
        common["iterations"] = spec["iterations"]
    runs = {}
    for label, kw in (
        (f"object {FG_STROKES}", dict(strokes=FG_STROKES)),
        (f"object {FG_STROKES + BG_STROKES}", dict(strokes=FG_STROKES + BG_STROKES)),
        (f"scene {FG_STROKES} + {BG_STROKES}", dict(scene=True, strokes=FG_STROKES, background_strokes=BG_STROKES)),
    ):
        t0 = time.perf_counter()
        res = clipasso.sketch(img, **common, **kw)
        runs[label] = (res, time.perf_counter() - t0)
    scene = runs[f"scene {FG_STROKES} + {BG_STROKES}"][0]
    # the whole picture in the optimisation frame (both modes use framing "pad" on the same canvas)
    edges = edge_map(scene.target)
    obj = scene.mask is not None and bool((scene.mask > 0.5).any())
    near_obj = dilate(scene.mask > 0.5, 3.0)[0] if obj else torch.zeros_like(edges)
    rows = []
    for label, (res, secs) in runs.items():
        ink = ink_map(render(res.frame_strokes).image)
        f = fscore(ink, edges[None], size=None)
        reach = dilate(ink, 3.0)[0]
        e_obj, e_bg = edges & near_obj, edges & ~near_obj
        rows.append(
            dict(
                photo=spec["photo"],
                run=label,
                strokes=int(res.strokes.num_strokes),
                precision=float(f["precision"][0]),
                recall=float(f["recall"][0]),
                f=float(f["f"][0]),
                recall_object=float((e_obj & reach).sum() / max(1, int(e_obj.sum()))),
                recall_background=float((e_bg & reach).sum() / max(1, int(e_bg.sum()))),
                iterations_run=int(res.run.iterations_run),
                seconds=secs,
            )
        )
    return dict(kind="trace", photo=spec["photo"], rows=rows, peak_rss_mib=peak_rss_mib())


WORKERS = {"cost": cost_worker, "trace": trace_worker}


# --------------------------------------------------------------------------- driver


def run_case(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    print(f"scene bench: {spec['kind']} {spec.get('mode', '')} {spec['photo']} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env, cwd=str(ROOT)
    )
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"bench/scene.py: the worker failed for {spec}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["process_wall_s"] = time.perf_counter() - t0
    print(f"  done in {row['process_wall_s']:.0f} s", file=sys.stderr, flush=True)
    return row


def extrapolate(row: dict, full: int, joint_full: int, cpu: bool = False) -> float:
    """Whole-sketch seconds (wall, or CPU with ``cpu``) at ``full`` iterations per layer and a
    ``joint_full``-step joint pass: the fixed cost + per phase the median seed-trial step x the trial's
    steps + the median step after it x the rest (medians: on a shared machine other jobs only add time)."""
    trial_full = int(round(row["trial_steps"] / row["iterations"] * full))
    key = "cpu_median_s" if cpu else "median_s"
    total = row["fixed_cpu_s" if cpu else "fixed_s"]
    for name, p in row["phases"].items():
        if name == "joint":
            total += joint_full * (p[key] or 0.0)
        else:
            t = p["trial_" + key] if p["trial_" + key] is not None else p[key]
            total += trial_full * t + (full - trial_full) * p[key]
    return total


def summarise(rep: dict) -> None:
    from clipasso.settings import PRESETS

    full = PRESETS["fast"]["iterations"]
    joint_full = int(round(0.1 * full))
    rep["full_iterations"], rep["joint_full"] = full, joint_full
    by = {(r["photo"], r["mode"]): r for r in rep["cost"]}
    rep["cost_summary"] = []
    for p in rep.get("cost_photos", rep["photos"]):
        o, s = by.get((p, "object")), by.get((p, "scene"))
        if not o or not s:
            continue
        eo, es = extrapolate(o, full, joint_full), extrapolate(s, full, joint_full)
        co, cs = extrapolate(o, full, joint_full, cpu=True), extrapolate(s, full, joint_full, cpu=True)
        rep["cost_summary"].append(
            dict(
                photo=p,
                measured_object_s=o["wall_s"],
                measured_scene_s=s["wall_s"],
                measured_ratio=s["wall_s"] / o["wall_s"],
                extrapolated_object_s=eo,
                extrapolated_scene_s=es,
                ratio=es / eo,
                measured_cpu_ratio=s["cpu_s"] / o["cpu_s"],
                extrapolated_object_cpu_s=co,
                extrapolated_scene_cpu_s=cs,
                cpu_ratio=cs / co,
                peak_object_mib=o["peak_rss_mib"],
                peak_scene_mib=s["peak_rss_mib"],
            )
        )


def _s(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def tables(rep: dict) -> str:
    L = []
    n, full, jf = rep["iterations"], rep["full_iterations"], rep["joint_full"]
    L.append(
        f"Cost ({rep['models']}; fast preset, {n} iterations per layer measured, joint pass "
        f"{rep['joint_iterations']} steps; extrapolated to {full} per layer + joint {jf}; shared "
        f"{rep['machine'].get('cores')}-core CPU):\n"
    )
    rows = []
    for r in rep["cost"]:
        ph = r["phases"]

        def step(name, ph=ph):
            p = ph.get(name)
            return "-" if not p else f"{_s(p['trial_median_s'])} / {_s(p['median_s'])}"

        first = "object" if r["mode"] == "object" else "foreground"
        rows.append(
            [
                r["photo"],
                r["mode"],
                r["strokes"],
                step(first),
                step("background"),
                _s(ph["joint"]["median_s"]) if "joint" in ph else "-",
                f"{r['fixed_s']:.1f}",
                f"{r['wall_s']:.1f}",
                f"{r['cpu_s']:.1f}",
                f"{r['utilisation']:.2f}",
                f"{r['load_before']:.1f}",
            ]
        )
    L.append(
        markdown_table(
            [
                "photo",
                "mode",
                "strokes",
                "object/fg step s (trial / rest, median)",
                "bg step s (trial / rest, median)",
                "joint step s",
                "fixed s",
                f"wall s ({n} it)",
                "CPU s",
                "CPU util.",
                "load",
            ],
            rows,
        )
    )
    L.append("")
    rows = [
        [
            c["photo"],
            f"{c['measured_object_s']:.0f} s",
            f"{c['measured_scene_s']:.0f} s",
            f"{c['measured_ratio']:.2f}x",
            hms(c["extrapolated_object_s"]),
            hms(c["extrapolated_scene_s"]),
            f"{c['ratio']:.2f}x",
            f"{c['measured_cpu_ratio']:.2f}x / {c['cpu_ratio']:.2f}x",
            f"{c['peak_object_mib']:.0f}",
            f"{c['peak_scene_mib']:.0f}",
        ]
        for c in rep["cost_summary"]
    ]
    L.append(
        markdown_table(
            [
                "photo",
                f"object {n} it",
                f"scene {n} it",
                "ratio",
                f"object {full} it",
                f"scene {full} it",
                "ratio",
                f"CPU-s ratio {n} / {full} it",
                "peak RSS object MiB",
                "peak RSS scene MiB",
            ],
            rows,
        )
    )
    L.append("")
    L.append(f"Joint pass ({rep['joint_iterations']} steps; {rep['models']}):\n")
    rows = []
    for r in rep["cost"]:
        j = r.get("joint")
        if not j:
            continue
        lb, la, mv = j["layer_losses_before"], j["layer_losses_after"], j["moved"]
        rows.append(
            [
                r["photo"],
                f"{j['loss_before']:.4g} -> {j['loss_after']:.4g} ({100 * (j['loss_after'] / j['loss_before'] - 1):+.0f} %)"
                if j["loss_before"]
                else f"{j['loss_before']:.4g} -> {j['loss_after']:.4g}",
                " ; ".join(f"{k} {lb[k]:.4g} -> {la[k]:.4g}" for k in lb),
                " / ".join(f"{mv[k]:.1f}" for k in mv),
            ]
        )
    L.append(markdown_table(["photo", "whole picture", "each layer's own", "moved px (bg / fg)"], rows, "llll"))
    L.append("")
    L.append(
        f"Edges, trace loss ({rep['trace_iterations'] or 'preset'} iterations; Canny edges of the whole "
        "picture, 3 px tolerance):\n"
    )
    rows = [
        [
            r["photo"],
            r["run"],
            f"{r['precision']:.3f}",
            f"{r['recall']:.3f}",
            f"**{r['f']:.3f}**",
            f"{r['recall_object']:.3f}",
            f"{r['recall_background']:.3f}",
            f"{r['seconds']:.0f}",
        ]
        for t in rep["trace"]
        for r in t["rows"]
    ]
    L.append(
        markdown_table(
            ["photo", "sketch", "precision", "recall", "F", "recall object", "recall background", "s"],
            rows,
            "llrrrrrr",
        )
    )
    means = {}
    for t in rep["trace"]:
        for r in t["rows"]:
            means.setdefault(r["run"], []).append(r["f"])
    L.append("")
    L.append("Mean F: " + "; ".join(f"{k} {statistics.mean(v):.3f}" for k, v in means.items()))
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny test models, few iterations, one photo (about a minute)")
    ap.add_argument("--photos", default=None, help=f"comma-separated skimage.data names (default {','.join(PHOTOS)})")
    ap.add_argument(
        "--cost-photos", default=None, help="the photos of the timed runs with real-size models (default: --photos)"
    )
    ap.add_argument("--iterations", type=int, default=None, help="steps per layer timed (default 20; quick 6)")
    ap.add_argument(
        "--joint-iterations", type=int, default=None, help="steps of the joint pass measured (default 10; quick 3)"
    )
    ap.add_argument(
        "--trace-iterations", type=int, default=None, help="iterations of the trace-loss runs (default: the preset's)"
    )
    ap.add_argument(
        "--only",
        choices=("cost", "trace"),
        default=None,
        help="measure only the timed runs or only the trace-loss runs; the other part is kept from the saved JSON",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--output", default=None, help="the JSON to write (default bench/results/scene_cpu[_quick].json)")
    ap.add_argument("--table-only", action="store_true", help="print the tables of the last saved run")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(WORKERS[spec["kind"]](spec)))
        return 0
    out = Path(args.output) if args.output else RESULTS / f"scene_cpu{'_quick' if args.quick else ''}.json"
    if args.table_only:
        if not out.is_file():
            print(f"no saved run: {out} does not exist (run bench/scene.py first)", file=sys.stderr)
            return 1
        print(tables(json.loads(out.read_text())))
        return 0
    photos = tuple(args.photos.split(",")) if args.photos else (PHOTOS[:1] if args.quick else PHOTOS)
    import skimage.data

    cost_photos = tuple(args.cost_photos.split(",")) if args.cost_photos else photos
    unknown = [p for p in dict.fromkeys(photos + cost_photos) if not hasattr(skimage.data, p)]
    if unknown:
        raise SystemExit(f"bench/scene.py: unknown scikit-image photo(s) {', '.join(unknown)}; try {', '.join(PHOTOS)}")
    iterations = args.iterations or (6 if args.quick else 20)
    joint = args.joint_iterations if args.joint_iterations is not None else (3 if args.quick else 10)
    trace_iterations = args.trace_iterations or (20 if args.quick else None)
    threads = args.threads or os.cpu_count() or 1
    old = None
    if args.only:
        if not out.is_file():
            raise SystemExit(
                f"bench/scene.py: --only {args.only} keeps the other part from {out}, which does not exist"
            )
        old = json.loads(out.read_text())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="clipasso_scene_bench_") as folder:
        print("scene bench: writing the models ...", file=sys.stderr, flush=True)
        models = write_models(folder, args.quick) if args.only != "trace" else old["models"]
        base = dict(models=folder, threads=threads, quick=args.quick)
        fidelity = 1 if args.quick else None  # the tiny ViT has 3 blocks
        cost = []
        for p in cost_photos if args.only != "trace" else ():
            for mode in ("object", "scene"):
                cost.append(
                    run_case(
                        dict(
                            base, kind="cost", mode=mode, photo=p, iterations=iterations, joint=joint, fidelity=fidelity
                        )
                    )
                )
        trace = [
            run_case(dict(base, kind="trace", photo=p, iterations=trace_iterations))
            for p in (photos if args.only != "cost" else ())
        ]
    rep = dict(
        quick=args.quick,
        models=models,
        photos=list(photos),
        cost_photos=list(cost_photos),
        iterations=iterations,
        joint_iterations=joint,
        trace_iterations=trace_iterations,
        threads=threads,
        strokes=dict(object=FG_STROKES + BG_STROKES, foreground=FG_STROKES, background=BG_STROKES),
        cost=cost,
        trace=trace,
        bench_wall_s=time.perf_counter() - t0,
        machine=machine(threads),
    )
    if args.only == "cost":
        rep.update({k: old[k] for k in ("trace", "trace_iterations", "photos")})
    elif args.only == "trace":
        rep.update({k: old[k] for k in ("cost", "cost_photos", "iterations", "joint_iterations")})
    summarise(rep)
    path = write_results(out, rep)
    print(f"wrote {path}", file=sys.stderr)
    print(tables(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
