"""Issue 14: bf16 on the CPU, the seed trial (best-of-N that drops the losing seeds early) and the
plateau stop, through the real optimiser with the trace loss and the tiny real open_clip ResNet."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from clipasso.device import amp_dtype, cpu_bf16_native, eval_amp_dtype
from clipasso.objective import Objective
from clipasso.optimize import OptimizeConfig, optimize
from clipasso.settings import PRESETS, SettingsError, SketchSettings

CPU = torch.device("cpu")
NATIVE = cpu_bf16_native()
NEEDS_NATIVE_BF16 = pytest.mark.skipif(
    not NATIVE,
    reason="this CPU has no native bf16 (neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo), so "
    "mixed_precision 'auto' stays fp32 here",
)


def _target():
    t = torch.ones(3, 224, 224)
    t[:, 40:60, 40:184] = 0.0
    t[:, 60:190, 100:124] = 0.1
    return t


def _strokes(seeds, n=6):
    from clipasso.place.init import initialize_strokes

    return initialize_strokes((224, 224), n, list(seeds))


def _cfg(**kw):
    base = dict(iterations=30, eval_interval=5, callback_interval=1, num_augs=2, loss="trace", reseed_interval=0)
    base.update(kw)
    return OptimizeConfig(**base)


def _flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# --------------------------------------------------------------------------- bf16 on the CPU


def test_auto_precision_on_the_cpu_follows_native_bf16():
    flags = _flags()
    assert NATIVE == bool(flags & {"avx512_bf16", "amx_bf16"})
    assert amp_dtype("auto", CPU) is (torch.bfloat16 if NATIVE else None)
    assert amp_dtype("off", CPU) is None
    assert amp_dtype("bf16", CPU) is torch.bfloat16  # asked for: also where it is emulated
    assert amp_dtype("fp16", CPU) is None  # fp16 kernels on a CPU are emulated and many times slower
    assert amp_dtype("auto", torch.device("cuda")) is torch.float16


def test_the_eval_loss_is_fp32_under_bf16(tiny_rn):
    """The loss that keeps the best state and ranks the seeds is the fp32 one, bit for bit, under bf16
    training; the training loss itself runs in bf16 (it differs, a little)."""
    assert eval_amp_dtype(torch.bfloat16) is None and eval_amp_dtype(torch.float16) is torch.float16
    target = _target()
    sk = torch.ones(2, 3, 224, 224)
    sk[0, :, 50:54, 30:190] = 0
    sk[1, :, 60:200, 100:104] = 0
    b16 = Objective.build(_cfg(loss="clip", mixed_precision="bf16"), tiny_rn, target)
    f32 = Objective.build(_cfg(loss="clip", mixed_precision="fp32"), tiny_rn, target)
    assert b16.amp_dtype is torch.bfloat16 and f32.amp_dtype is None
    with torch.no_grad():
        e16, e32 = b16.eval_loss(sk)["total"], f32.eval_loss(sk)["total"]
        gens = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731
        t16, t32 = b16.train_loss(sk, gens())["total"], f32.train_loss(sk, gens())["total"]
    assert torch.equal(e16, e32)
    assert not torch.equal(t16, t32)  # the training pass did run in bf16
    assert torch.allclose(t16, t32, rtol=0.05), (t16, t32)


@NEEDS_NATIVE_BF16
def test_auto_runs_the_encoder_in_bf16_on_this_cpu_and_reaches_the_fp32_loss(tiny_rn):
    """The default setting on a CPU with native bf16: the encoder runs under bf16 autocast, and a short
    optimisation reaches (measured in fp32) the loss an fp32 run reaches."""
    target = _target()
    st = _strokes([0, 1000], n=8)
    auto = optimize(st, target, tiny_rn, _cfg(loss="clip", iterations=24, lr=2.0))
    off = optimize(st, target, tiny_rn, _cfg(loss="clip", iterations=24, lr=2.0, mixed_precision="fp32"))
    assert Objective.build(_cfg(loss="clip"), tiny_rn, target).amp_dtype is torch.bfloat16
    # both start from the same fp32 evaluation of the same strokes
    assert torch.equal(auto.history[0], off.history[0])
    assert (auto.strokes.losses < auto.history[0] * 0.97).all()
    # no worse than fp32 (short runs of a tiny model differ either way by a few per cent)
    assert float(auto.strokes.losses.mean()) <= 1.05 * float(off.strokes.losses.mean()), (
        auto.strokes.losses,
        off.strokes.losses,
    )


def test_precision_flag_and_sketch_summary_name_the_precision(tiny_models_dir):
    import clipasso

    res = clipasso.sketch(
        None,
        preset="fast",
        clip_model="clipasso-tiny-rn",
        strokes=4,
        seeds=1,
        iterations=2,
        saliency="mask",
        device="cpu",
        models_dir=tiny_models_dir,
        allow_download=False,
        mixed_precision="fp32",
    )
    assert res.settings["precision"] == "fp32"
    res = clipasso.sketch(
        None,
        preset="fast",
        clip_model="clipasso-tiny-rn",
        strokes=4,
        seeds=1,
        iterations=2,
        saliency="mask",
        device="cpu",
        models_dir=tiny_models_dir,
        allow_download=False,
    )
    assert res.settings["precision"] == ("bf16" if NATIVE else "fp32")


# --------------------------------------------------------------------------- seed trial


def test_seed_trial_keeps_the_leader_at_the_cut_and_spends_less():
    target = _target()
    st = _strokes([0, 1000, 2000])
    full = optimize(st, target, None, _cfg())
    cut = optimize(st, target, None, _cfg(seed_trial=0.2, seed_survivors=1))
    assert full.survivors is None and full.trial_iteration is None and full.candidate_steps == 3 * 30
    assert cut.trial_iteration == 6 and cut.candidate_steps == 3 * 6 + 1 * 24
    # up to the cut both runs are the same run (evaluations at 0 and 5, then the cut's at 6)
    assert torch.equal(cut.history[:2], full.history[:2])
    leader = int(torch.argmin(cut.history[:3].nan_to_num(float("inf")).amin(0)))
    assert cut.survivors == [leader]
    dropped = [i for i in range(3) if i != leader]
    after = cut.history[3:]
    assert torch.isnan(after[:, dropped]).all() and torch.isfinite(after[:, leader]).all()
    assert torch.isnan(cut.train_losses[6:, dropped]).all()
    assert (cut.final.iterations[dropped] == 6).all() and int(cut.final.iterations[leader]) == 30
    # the dropped ones keep their best state from before the cut; the survivor wins
    from clipasso.post.select import select_best

    _, index = select_best(cut.strokes)
    assert index == leader
    assert (cut.strokes.losses[dropped] > cut.strokes.losses[leader]).all()
    assert (cut.strokes.iterations[dropped] <= 6).all()
    # the survivor went on as it does in the full batch (float rounding aside)
    rel = abs(float(cut.strokes.losses[leader]) / float(full.strokes.losses[leader]) - 1)
    assert rel < 0.02, (cut.strokes.losses, full.strokes.losses)


def test_seed_trial_with_two_survivors_and_no_cut_when_there_is_nothing_to_cut():
    target = _target()
    st = _strokes([0, 1000, 2000, 3000], n=4)
    two = optimize(st, target, None, _cfg(iterations=20, seed_trial=0.5, seed_survivors=2))
    assert two.trial_iteration == 10 and len(two.survivors) == 2
    assert two.candidate_steps == 4 * 10 + 2 * 10
    ranked = torch.argsort(two.history[:3].nan_to_num(float("inf")).amin(0))[:2]
    assert sorted(int(i) for i in ranked) == two.survivors
    one = optimize(_strokes([0], n=4), target, None, _cfg(iterations=10, seed_trial=0.5))
    assert one.survivors is None and one.candidate_steps == 10  # a single seed: nothing to cut
    same = optimize(st, target, None, _cfg(iterations=10, seed_trial=0.5, seed_survivors=4))
    assert same.survivors is None and same.candidate_steps == 40


def test_seed_trial_frozen_candidates_stay_where_they_were_cut_and_previews_keep_every_candidate():
    target = _target()
    st = _strokes([0, 1000, 2000])
    seen = {}

    def cb(it, losses, image):
        seen[it] = (image.shape[0], losses["train"].clone())

    cut = optimize(st, target, None, _cfg(seed_trial=0.2), callback=cb)
    dropped = [i for i in range(3) if i not in cut.survivors]
    assert all(n == 3 for n, _ in seen.values())  # every candidate is still drawn for the preview
    assert torch.isnan(seen[30][1][dropped]).all()
    # the state a dropped candidate holds at the end is the one it had at the cut: its loss is the cut's eval
    cut_eval = cut.history[cut.history_iterations.index(6)]
    obj = Objective.build(_cfg(), None, target)
    again = obj.evaluate(cut.final.select(dropped))
    assert torch.allclose(again, cut_eval[dropped], rtol=1e-5), (again, cut_eval)


def test_seed_trial_waits_for_the_end_of_re_seeding():
    """Re-seeding (the trace loss) moves strokes until reseed_until and re-ranks the seeds: the cut comes
    one interval after the last re-seeding, whatever seed_trial says; where that leaves no steps, no cut."""
    target = _target()
    st = _strokes([0, 1000, 2000], n=4)
    res = optimize(st, target, None, _cfg(iterations=40, seed_trial=0.2, reseed_interval=10, reseed_until=0.5))
    assert res.trial_iteration == 30 and res.candidate_steps == 3 * 30 + 10
    late = optimize(st, target, None, _cfg(iterations=40, seed_trial=0.2, reseed_interval=10, reseed_until=0.8))
    assert late.survivors is None and late.candidate_steps == 3 * 40


def test_cancel_during_the_seed_trial_returns_every_candidate():
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    res = optimize(_strokes([0, 1000, 2000]), _target(), None, _cfg(seed_trial=0.5), should_stop=stop)
    assert res.cancelled and res.stop_reason == "cancelled" and res.iterations_run == 3
    assert res.survivors is None and torch.isfinite(res.strokes.losses).all()


# --------------------------------------------------------------------------- plateau


def test_plateau_stops_the_same_run_early():
    target = _target()
    st = _strokes([0, 1000])
    full = optimize(st, target, None, _cfg(iterations=60))
    # a share no real improvement reaches: the first check (at the window) stops the run
    early = optimize(st, target, None, _cfg(iterations=60, plateau=0.9, plateau_window=20))
    assert early.stop_reason == "plateau" and early.iterations_run == 20 and not early.cancelled
    n = len(early.history_iterations)
    assert early.history_iterations == full.history_iterations[:n]
    assert torch.equal(early.history, full.history[:n])  # the run up to the stop is the same run
    assert torch.equal(early.strokes.losses, full.history[:n].amin(0))
    # plateau 0: every iteration runs
    assert full.stop_reason == "iterations" and full.iterations_run == 60


def test_plateau_only_stops_when_no_running_candidate_improves():
    target = _target()
    st = _strokes([0, 1000])
    full = optimize(st, target, None, _cfg(iterations=60))
    best = torch.cummin(full.history, 0).values
    its = full.history_iterations
    share, window = 0.05, 20
    expected = None
    for k, at in enumerate(its):
        if at < window or at >= 60:
            continue
        then = best[its.index(at - window)]
        if bool(((then - best[k]) <= share * then.abs()).all()):
            expected = at
            break
    res = optimize(st, target, None, _cfg(iterations=60, plateau=share, plateau_window=window))
    assert res.iterations_run == (expected if expected is not None else 60)
    assert res.stop_reason == ("plateau" if expected is not None else "iterations")


def test_plateau_after_the_cut_watches_only_the_survivor():
    target = _target()
    st = _strokes([0, 1000, 2000])
    res = optimize(st, target, None, _cfg(iterations=80, seed_trial=0.25, plateau=0.9, plateau_window=30))
    assert res.survivors is not None and res.stop_reason == "plateau" and res.iterations_run == 30


# --------------------------------------------------------------------------- settings and front-ends


def test_paper_keeps_the_original_and_fast_turns_the_speedups_on():
    paper = PRESETS["paper"]
    assert paper["seed_trial"] == 0.0 and paper["plateau"] == 0.0 and paper["mixed_precision"] == "auto"
    fast = PRESETS["fast"]
    assert 0 < fast["seed_trial"] <= 0.25 and fast["seed_survivors"] == 1
    assert fast["plateau"] > 0 and fast["plateau_window"] >= 50
    cost = fast["seeds"] * fast["seed_trial"] + (1 - fast["seed_trial"])
    assert cost <= 1.5


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("seed_trial", 1.0, "seed_trial must be a share of the iterations in [0, 1)"),
        ("seed_trial", -0.1, "seed_trial must be a share of the iterations in [0, 1)"),
        ("seed_survivors", 0, "seed_survivors must be at least 1"),
        ("plateau", 1.0, "plateau must be a share in [0, 1)"),
        ("plateau_window", 0, "plateau_window must be at least 1"),
        ("mixed_precision", "fp8", "mixed_precision must be one of auto, fp32, fp16, bf16"),
    ],
)
def test_bad_speed_settings_are_refused_with_what_to_use(field, value, words):
    with pytest.raises(SettingsError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        SketchSettings.from_preset("fast", **{field: value}).validate()


def test_cli_flags_and_summary(tmp_path):
    out = tmp_path / "s.svg"
    cmd = [
        sys.executable,
        "-m",
        "clipasso",
        "sketch",
        "--preset",
        "fast",
        "--loss",
        "trace",
        "--saliency",
        "mask",
        "--strokes",
        "4",
        "--seeds",
        "3",
        "--iterations",
        "40",
        "--seed-trial",
        "0.25",
        "--plateau",
        "0.9",
        "--plateau-window",
        "20",
        "--precision",
        "off",
        "--reseed",
        "0",
        "-o",
        str(out),
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "seed trial: all 3 seeds ran 10 iterations, then only seed" in proc.stdout
    assert "20/40 iterations (plateau)" in proc.stdout
    assert "stopped on a plateau at iteration 20 of 40" in proc.stdout
    assert out.is_file()
    bad = subprocess.run(
        cmd[:-3] + ["--seed-trial", "1.5", "-o", str(out)], capture_output=True, text=True, timeout=600
    )
    assert bad.returncode == 2 and "--seed-trial must be a share of the iterations in [0, 1)" in bad.stderr
    helptext = subprocess.run(
        [sys.executable, "-m", "clipasso", "sketch", "--help"], capture_output=True, text=True, timeout=600
    ).stdout
    for flag in ("--precision", "--seed-trial", "--seed-survivors", "--plateau", "--plateau-window"):
        assert flag in helptext


def test_sketch_reports_the_cut_and_the_plateau():
    import clipasso

    res = clipasso.sketch(
        None,
        preset="fast",
        loss="trace",
        saliency="mask",
        strokes=4,
        seeds=2,
        iterations=40,
        seed_trial=0.25,
        plateau=0.9,
        plateau_window=20,
        reseed_interval=0,
        device="cpu",
        allow_download=False,
    )
    s = res.settings
    assert s["stop_reason"] == "plateau" and s["iterations_run"] == 20 and s["survivors"] == res.run.survivors
    assert res.index in res.run.survivors
    assert any("stopped on a plateau at iteration 20 of 40" in n for n in res.notes)
    assert math.isfinite(res.loss)


# --------------------------------------------------------------------------- on a CUDA GPU (bench/gpu_check.sh)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_seed_trial_and_plateau_on_cuda(tiny_models):
    from clipasso.models import load_clip
    from clipasso.testing.tiny_models import TINY_RN

    enc = load_clip(TINY_RN, models_dir=tiny_models["folder"], device="cuda", allow_download=False)
    st = _strokes([0, 1000, 2000])
    cfg = _cfg(loss="clip", iterations=40, seed_trial=0.25, plateau=0.9, plateau_window=20)
    res = optimize(st, _target(), enc, cfg, device="cuda")
    assert res.survivors is not None and len(res.survivors) == 1 and res.trial_iteration == 10
    assert res.stop_reason == "plateau" and res.iterations_run == 20
    assert torch.isfinite(res.strokes.losses).all()
    cpu = optimize(
        st,
        _target(),
        load_clip(TINY_RN, models_dir=tiny_models["folder"], device="cpu", allow_download=False),
        _cfg(loss="clip", iterations=10, mixed_precision="fp32"),
    )
    # the evaluations before the cut agree with the CPU's fp32 ones within fp16's rounding
    assert torch.allclose(res.history[0], cpu.history[0], rtol=0.02)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_auto_keeps_fp16_for_training_and_evaluation(tiny_rn):
    from clipasso.models import wrap_model

    enc = wrap_model(tiny_rn.model, tiny_rn.name, device="cuda")
    obj = Objective.build(_cfg(loss="clip"), enc, _target(), "cuda")
    clip = obj.term("clip")
    assert clip.amp_dtype is torch.float16 and clip.eval_amp_dtype is torch.float16


# --------------------------------------------------------------------------- the one-command GPU check

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run for real")
def test_gpu_check_refuses_without_a_gpu_and_says_what_to_do():
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(__import__("os").environ, PYTHON=sys.executable),
    )
    assert proc.returncode == 2
    assert "sees no CUDA GPU" in proc.stderr and "GPU_CHECK_SMOKE=1" in proc.stderr


def test_gpu_check_steps_run_on_the_cpu_with_tiny_sizes(tmp_path):
    """GPU_CHECK_SMOKE=1: the same five steps on the CPU (tiny models, few repeats): every command and flag
    of the script exists and writes its results."""
    import json
    import os

    env = dict(
        os.environ, PYTHON=sys.executable, GPU_CHECK_SMOKE="1", GPU_CHECK_RESULTS=str(tmp_path), OMP_NUM_THREADS="1"
    )
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=900, env=env
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "gpu_check: all steps passed" in proc.stdout
    whole = json.loads((tmp_path / "speed_cpu_quick.json").read_text())["whole"]
    assert whole["fast_run"]["iterations_run"] >= 1 and whole["rows"][0]["vs_floor"] == 1.0
    reach = json.loads((tmp_path / "precision_reach_cpu_smoke.json").read_text())
    assert len(reach["rows"]) == 2 and all(math.isfinite(r["rel"]) for r in reach["rows"])
    assert json.loads((tmp_path / "raster_cpu_smoke.json").read_text())
    step = json.loads((tmp_path / "compile_cpu_quick.json").read_text())["steps"][0]
    assert step["compiled_s"] > 0 and step["eager_s"] > 0 and step["problem"] is None  # really compiled
    log = (tmp_path / "gpu_check_cpu_smoke.log").read_text()
    assert log.count(": exit 0 after") == 5
