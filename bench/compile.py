"""What compiling the CLIP encoder's training step buys (issue 27): `compile` off / on / auto.

    python bench/compile.py                   # CPU: real-size RN101 with random weights, ~1 h on 2 cores
                                              # (bf16 cases only where the CPU has native bf16)
    python bench/compile.py --quick           # tiny test encoders: checks the script, not the numbers
    python bench/compile.py --skip-whole      # the step table only (~10 min)

Every case runs in its own process with its own compile cache folder, so "cold" is a real first compile
(inductor's on-disk caches empty) and "warm" a second process that finds them filled -- what the next
run on the same machine sees.

1. The training step (`CLIPassoLoss.train_loss` + backward to the rendered views, as the optimiser runs
   it), eager and compiled, fp32 and bf16 autocast, at the batch shapes the presets use: `fast` 2 seeds x
   3 views (6), after its seed trial 1 x 3 (3), `paper` 3 x 5 (15, fp32 only): median of the steady steps;
   the cold compile (first call) and the warm start (first call of a second process).
2. Whole `fast` sketches of the bundled example, start to end, in one process per case: eager
   (compile off), compiled on a cold cache, compiled on the warm cache, and `auto` on that warm cache;
   against the fp32 floor (2 seeds x 3 views of RN101 forward + backward, x 500 iterations); the preset
   stops on a plateau, which the last bits of the arithmetic move, so eager and compiled (warm) also run
   all 500 steps ("all steps"), the comparison at equal work.
3. `paper` best of 3, extrapolated from the measured steps (2000 iterations x the 15-view step + the
   evaluations): eager and compiled.

Prints a table last; writes bench/results/compile_<device>.json (compile_<device>_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import RESULTS, cpu_name, hms, machine, markdown_table, write_results  # noqa: E402

SHAPES = {
    "fast (2 seeds x 3 views)": (2, 2),
    "trial (fast after its seed trial, 1 x 3)": (1, 2),
    "paper (3 x 5)": (3, 4),
}


def _encoder(spec):
    if spec["quick"]:
        from clipasso.models import load_clip
        from clipasso.testing.tiny_models import write_tiny_models

        d = write_tiny_models(tempfile.mkdtemp(prefix="clipasso_tiny_"), as_defaults=True)
        return load_clip("RN101", models_dir=d["folder"], allow_download=False)
    from bench.sketch import random_encoder

    return random_encoder(spec.get("model", "RN101"), spec["device"])


def step_worker(spec: dict) -> dict:
    """Eager and compiled step times of one (precision, candidates, views) case; the cache is whatever
    $CLIPASSO_COMPILE_CACHE holds (cold: empty; warm: filled by an earlier process)."""
    import torch

    from bench.sketch import _target
    from clipasso.objective.losses import CLIPassoLoss

    enc = _encoder(spec)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[spec["precision"]]
    device = torch.device(spec["device"])

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    b, augs = spec["candidates"], spec["augs"]
    loss = CLIPassoLoss(enc, _target(), num_augs=augs, aug_pool=16, amp_dtype=dtype)
    g = torch.Generator().manual_seed(0)
    sketch0 = (0.5 + 0.5 * torch.rand(b, 3, 224, 224, generator=g)).to(device)

    def step():
        x = sketch0.clone().requires_grad_(True)
        gens = [torch.Generator().manual_seed(i) for i in range(b)]
        loss.train_loss(x, gens)["total"].sum().backward()

    def steady(n):
        times = []
        for _ in range(n):
            sync()
            t = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    out = dict(precision=spec["precision"], candidates=b, views=1 + augs)
    if spec["eager"]:
        step()
        out["eager_s"] = steady(spec["reps"])
    compiled = loss.compiled()
    compiled.mode = spec.get("mode")
    out["compile_problem"] = compiled.problem()
    if compiled.enable():
        sync()
        t = time.perf_counter()
        try:
            step()
            sync()
            out["first_call_s"] = time.perf_counter() - t
            step()  # not timed: CUDA graphs (mode reduce-overhead) record on the second call
        except Exception as exc:  # a mode that does not work here is a result, not a crash
            out["compile_problem"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            return out
        out["compiled_s"] = steady(spec["reps"])
        out["compile_failed"] = compiled.failed
    return out


def whole_worker(spec: dict) -> dict:
    """One whole fast sketch with compile=spec['mode'] (models written by bench.speed._whole_models)."""
    import torch

    import clipasso
    from bench.harness import timed

    common = dict(device="cpu", models_dir=spec["models"], allow_download=False, compile=spec["mode"])
    if spec["quick"]:
        common["iterations"] = 60
    if spec.get("all_steps"):
        common["plateau"] = 0.0  # every iteration: the cases compare at equal work
    clipasso.sketch(None, preset="fast", **dict(common, iterations=0, compile="off"))  # model loads, matting
    out = {}
    if spec.get("floor"):
        from clipasso.models import load_clip

        enc = load_clip("RN101", models_dir=spec["models"], allow_download=False)
        x0 = torch.rand(6, 3, 224, 224)

        def fwd_bwd():
            x = x0.clone().requires_grad_(True)
            enc.visual(enc.normalize(x)).float().square().sum().backward()

        out["floor_step_s"], _, _ = timed(fwd_bwd, "cpu", 3, warmup=1)
    t = time.perf_counter()
    res = clipasso.sketch(None, preset="fast", **common)
    out["whole_s"] = time.perf_counter() - t
    run = res.run
    out.update(
        iterations_run=run.iterations_run,
        stop_reason=run.stop_reason,
        loss=res.loss,
        precision=res.settings["precision"],
        compile=run.compile,
        seconds_optimise=run.seconds,
    )
    return out


WORKERS = {"step": step_worker, "whole": whole_worker}


def _run(spec: dict, cache: Path) -> dict:
    env = dict(os.environ, CLIPASSO_COMPILE_CACHE=str(cache), OMP_NUM_THREADS=str(spec["threads"]))
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    label = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("models", "quick", "threads", "reps"))
    print(f"compile bench: {label} ...", file=sys.stderr, flush=True)
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env, cwd=str(ROOT)
    )
    if out.returncode != 0:
        print(out.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"compile bench worker failed for {spec}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process_s"] = time.perf_counter() - t
    print(f"  {json.dumps(row)[:400]}", file=sys.stderr, flush=True)
    return row


def _step_case(rep, name, spec, cache, mode) -> None:
    """One step case: a cold process (eager, then the first compile) and a warm one (the cache filled)."""
    cold = _run(dict(spec, eager=True), cache)
    warm = _run(dict(spec, eager=False), cache)
    rep["steps"].append(
        dict(
            case=name,
            precision=spec["precision"],
            mode=mode,
            views=cold["views"] * spec["candidates"],
            eager_s=cold["eager_s"],
            compiled_s=cold.get("compiled_s"),
            warm_compiled_s=warm.get("compiled_s"),
            cold_compile_s=cold.get("first_call_s"),
            warm_start_s=warm.get("first_call_s"),
            problem=cold.get("compile_problem"),
        )
    )


def run_all(args) -> dict:
    threads = args.threads or os.cpu_count() or 1
    base = dict(device=args.device, quick=args.quick, threads=threads, reps=3 if args.quick else 5)
    if args.device == "cuda":
        base["reps"] = 20
    work = Path(tempfile.mkdtemp(prefix="clipasso_compile_bench_"))
    rep = dict(steps=[], whole={}, device=args.device)
    import torch

    from clipasso.device import amp_dtype, cpu_bf16_native, precision_label

    rep["auto_precision"] = precision_label(amp_dtype("auto", torch.device(args.device)))

    # bf16 on a CPU without native bf16 is emulated: 76 s a step on this project's CPU, never chosen by auto
    low = "fp16" if args.device == "cuda" else ("bf16" if cpu_bf16_native() else None)
    precisions = args.precisions or (["fp32"] if args.fp32_only or low is None else ["fp32", low])
    shapes = {k: v for k, v in SHAPES.items() if not args.shapes or k.split()[0] in args.shapes}
    for mode in args.modes if not args.skip_steps else ():
        for precision in precisions:
            cache = work / f"steps_{precision}_{mode}"
            for name, (b, augs) in shapes.items():
                if precision == "bf16" and b == 3 and args.device == "cpu" and not cpu_bf16_native():
                    continue  # emulated bf16: minutes a step
                spec = dict(base, kind="step", precision=precision, candidates=b, augs=augs)
                if mode != "default":
                    spec["mode"] = mode
                _step_case(rep, name, spec, cache, mode)
    if not args.skip_whole:
        from bench.speed import _whole_models

        models = work / "models"
        models.mkdir()
        rep["models"] = _whole_models(dict(quick=args.quick), str(models))
        cache = work / "whole"
        spec = dict(base, kind="whole", models=str(models))
        # The preset stops on a plateau, which the last bits of the arithmetic move (a compiled run may stop
        # at another step than an eager one): the "all steps" cases compare eager and compiled at equal work.
        cases = (
            ("eager", "off", cache, True, False),
            ("compiled, cold cache", "on", cache, False, False),
            ("compiled, warm cache", "on", cache, False, False),
            ("auto, warm cache", "auto", cache, False, False),
            ("auto, cold cache", "auto", work / "whole_auto_cold", False, False),
            ("eager, all steps", "off", cache, False, True),
            ("compiled, warm cache, all steps", "on", cache, False, True),
        )
        for name, mode, folder, floor, all_steps in cases:
            if args.whole_cases and name.split(",")[0] not in args.whole_cases and name not in args.whole_cases:
                continue
            rep["whole"][name] = _run(dict(spec, mode=mode, floor=floor, all_steps=all_steps), folder)
    shutil.rmtree(work, ignore_errors=True)
    return rep


def _s(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.0f}")


def tables(rep: dict) -> str:
    rows = []
    for r in rep["steps"]:
        ratio = r["eager_s"] / r["compiled_s"] if r.get("compiled_s") else None
        rows.append(
            [
                r["case"],
                r["precision"],
                r.get("mode", "default"),
                r["views"],
                _s(r["eager_s"]),
                _s(r.get("compiled_s")),
                "-" if ratio is None else f"{ratio:.2f}x",
                _s(r.get("cold_compile_s")),
                _s(r.get("warm_start_s")),
            ]
        )
    out = [
        "Training step (loss + backward to the views), seconds, median of steady steps:",
        markdown_table(
            [
                "batch",
                "precision",
                "mode",
                "views",
                "eager s",
                "compiled s",
                "speed-up",
                "cold compile s",
                "warm start s",
            ],
            rows,
        ),
    ]
    w = rep.get("whole") or {}
    if w:
        floor_step = next((r["floor_step_s"] for r in w.values() if r.get("floor_step_s")), float("nan"))
        floor = floor_step * 500
        wrows = []
        for name, r in w.items():
            c = r.get("compile") or {}
            wrows.append(
                [
                    name,
                    hms(r["whole_s"]),
                    f"{r['whole_s'] / floor:.2f}x",
                    f"{r['iterations_run']} ({r['stop_reason']})",
                    f"{r['whole_s'] / max(1, r['iterations_run']):.3f}",
                    f"{r['loss']:.4f}",
                    (c.get("decision") or "-")[:70],
                ]
            )
        out += [
            "",
            f"Whole fast sketch of the bundled example ({rep.get('models', '')}); fp32 floor = 500 x "
            f"{floor_step:.3f} s = {hms(floor) if floor == floor else '-'}:",
            markdown_table(
                ["case", "wall", "vs fp32 floor", "iterations", "s per iteration", "loss", "compile decision"], wrows
            ),
        ]
        paper = [r for r in rep["steps"] if r["case"].startswith("paper")]
        auto = [r for r in paper if r["precision"] == rep.get("auto_precision", "fp32")]
        if paper:
            p = (auto or paper)[0]
            out += [
                "",
                f"paper best of 3 ({p['precision']}), extrapolated (2000 iterations x the 15-view step, evaluations not counted): "
                f"eager {hms(2000 * p['eager_s'])}, compiled {hms(2000 * p['compiled_s'] + (p['cold_compile_s'] or 0))} "
                "(a cold compile included)"
                if p.get("compiled_s")
                else "paper: not compiled here",
            ]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny test encoders (checks the script, not the numbers)")
    ap.add_argument("--skip-whole", action="store_true", help="the step table only")
    ap.add_argument("--skip-steps", action="store_true", help="the whole sketches only")
    ap.add_argument(
        "--whole-cases",
        nargs="+",
        help="whole-sketch cases by name (eager, 'compiled, cold cache', 'compiled, warm cache', "
        "'auto, warm cache', 'auto, cold cache'; default all; the warm ones need the cold one before them)",
    )
    ap.add_argument("--fp32-only", action="store_true", help="no bf16 step cases (slow where bf16 is emulated)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument(
        "--precisions", nargs="+", choices=("fp32", "bf16", "fp16"), help="default: fp32 and bf16 (CUDA: fp16)"
    )
    ap.add_argument("--shapes", nargs="+", choices=("fast", "trial", "paper"), help="batch shapes (default: all)")
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["default"],
        help="torch.compile modes to measure the step in (default; reduce-overhead = CUDA graphs; "
        "max-autotune-no-cudagraphs)",
    )
    ap.add_argument("--table-only", action="store_true", help="print the tables of the last saved run")
    ap.add_argument("--results", default=None, help="folder of the JSON results (default bench/results)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        import torch

        torch.set_num_threads(spec["threads"])
        print(json.dumps(WORKERS[spec["kind"]](spec)))
        return 0
    path = (
        Path(args.results) if args.results else RESULTS
    ) / f"compile_{args.device}{'_quick' if args.quick else ''}.json"
    if args.table_only:
        print(tables(json.loads(path.read_text())))
        return 0
    rep = run_all(args)
    rep["info"] = dict(cpu=cpu_name())
    write_results(path, rep, machine(args.threads or os.cpu_count(), args.device))
    print(tables(rep))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
