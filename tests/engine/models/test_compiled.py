"""The compiled encoder step (issue 27): torch.compile of the CLIP loss's training step gives the eager
loss and input gradient on the tiny models; where compiling is impossible or fails the run goes on eager,
unchanged, and says why; `auto` decides from the measured costs; the cache folder must be the user's own.

Every compile here is real inductor work (C++ on this CPU), in the session's compile cache
(tests/conftest.py), on batch shapes no other test uses, so no in-process kernel cache hides a failure."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
import torch

from clipasso.models import compiled as cm
from clipasso.objective.losses import CLIPassoLoss
from clipasso.optimize import OptimizeConfig, optimize
from clipasso.optimize.policies import CompileEncoder, policies_for
from clipasso.place.init import initialize_strokes
from clipasso.objective import Objective

CPU = torch.device("cpu")
needs_compiler = pytest.mark.skipif(
    cm.compiler_problem(CPU) is not None, reason=f"inductor cannot compile here: {cm.compiler_problem(CPU)}"
)


def _target():
    g = torch.Generator().manual_seed(3)
    t = torch.ones(3, 224, 224)
    t[:, 50:170, 60:80] = 0.1
    t[:, 120:140, 40:190] = torch.rand(3, 1, 1, generator=g)
    return t


def _sketch(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.6 + 0.4 * torch.rand(b, 3, 224, 224, generator=g)).requires_grad_(True)


def _loss_and_grad(loss, sketch, seed):
    gens = [torch.Generator().manual_seed(seed + i) for i in range(sketch.shape[0])]
    out = loss.train_loss(sketch, gens)
    (grad,) = torch.autograd.grad(out["total"].sum(), sketch)
    return out["total"].detach(), grad


@needs_compiler
@pytest.mark.parametrize("which,augs", [("tiny_rn", 2), ("tiny_vit", 1)])
def test_compiled_step_gives_the_eager_loss_and_input_gradient(which, augs, request):
    encoder = request.getfixturevalue(which)
    loss = CLIPassoLoss(encoder, _target(), num_augs=augs, aug_pool=8)
    sketch = _sketch(2)
    eager_total, eager_grad = _loss_and_grad(loss, sketch, 11)
    step = loss.compiled()
    assert step.enable(), step.failed
    total, grad = _loss_and_grad(loss, sketch, 11)
    shape = loss.train_input_shape(2)
    assert shape in step.compile_seconds  # it really went through torch.compile
    assert torch.allclose(total, eager_total, rtol=1e-3, atol=0)
    cos = torch.nn.functional.cosine_similarity(grad.flatten(), eager_grad.flatten(), dim=0)
    assert float(cos) >= 0.999
    # eval passes (no gradient) and the target's features stay eager: nothing else was compiled
    with torch.no_grad():
        loss.eval_loss(sketch.detach())
    assert set(step.compile_seconds) == {shape}
    entry = step.ledger.get(step.key(shape))
    assert entry["compile_s"] > 0  # the ledger remembers what the compile cost on this machine
    # inductor's own caches went into our folder (which outlives a reboot), not torch's /tmp default
    ours = Path(os.environ[cm.ENV_CACHE]) / "inductor"
    assert ours.is_dir() and any(ours.rglob("*"))


def _broken_compiler(tmp_path):
    """A C++ compiler that answers --version but fails every compile (as a broken toolchain would)."""
    path = tmp_path / "broken-c++"
    path.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "c++ (broken) 1.0"; exit 0; fi\n'
        'echo "broken-c++: internal compiler error" >&2\nexit 1\n'
    )
    path.chmod(0o755)
    return str(path)


def _fresh_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(cm.ENV_CACHE, str(folder))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    return folder


def _run(encoder, mode, iterations=6, seeds=(0,), augs=1):
    cfg = OptimizeConfig(
        iterations=iterations, num_augs=augs, aug_pool=4, eval_interval=3, compile=mode, mixed_precision="fp32"
    )
    strokes = initialize_strokes((224, 224), 4, list(seeds))
    objective = Objective.build(cfg, encoder, _target(), CPU, canvas=(224, 224))
    return optimize(strokes, _target(), objective, cfg, seeds=list(seeds))


@pytest.mark.parametrize("how", ["missing", "broken"])
def test_without_a_working_compiler_the_run_goes_on_eager_unchanged_and_says_why(
    how, tiny_rn, tmp_path, monkeypatch, caplog
):
    from torch._inductor import config as inductor_config

    _fresh_cache(tmp_path, monkeypatch)  # nothing warm to load instead of compiling
    cxx = str(tmp_path / "no-such-c++") if how == "missing" else _broken_compiler(tmp_path)
    torch._dynamo.reset()
    eager = _run(tiny_rn, "off", seeds=(5,), augs=3)
    with inductor_config.patch({"cpp.cxx": (cxx,)}), caplog.at_level(logging.INFO, logger="clipasso.compile"):
        tried = _run(tiny_rn, "on", seeds=(5,), augs=3)
    said = [r.getMessage() for r in caplog.records if r.name == "clipasso.compile"]
    assert any("runs eager" in m for m in said), said
    why = tried.compile["decision"] if how == "missing" else " ".join(said)
    assert ("C++ compiler" in why) if how == "missing" else ("torch.compile failed" in why), why
    # eager from then on: the same sketch, bit for bit, as a run that never tried
    assert torch.equal(tried.strokes.points, eager.strokes.points)
    assert torch.equal(tried.history, eager.history)


def test_auto_decides_from_the_measured_costs(tiny_rn, tmp_path, monkeypatch):
    _fresh_cache(tmp_path, monkeypatch)
    # a short run at the table's CPU fp32 speed-up cannot pay back a cold compile: eager
    r = _run(tiny_rn, "auto", iterations=12)
    info = r.compile
    assert info["decision"].startswith("eager")
    # decided after 3 timed eager steps (not the first, which warms up, nor one with an evaluation)
    assert info["decided_at"] == 5  # steps 2, 3 and 5: step 4 held the evaluation of iteration 3
    left = 12 - info["decided_at"]
    expected = left * info["eager_step_s"] * (1 - 1 / cm.DEFAULT_SPEEDUP[("cpu", None)])
    assert info["expected_saving_s"] == pytest.approx(expected, abs=0.06)
    assert info["compile_cost_s"] == pytest.approx(cm.DEFAULT_COMPILE_S["cpu"])
    assert not (tmp_path / "cache").exists()  # deciding not to compile writes nothing
    # a batch's pictures left count: one compile serves them all (clipasso.batch sets this)
    with cm.runs_ahead(40):
        info = _run(tiny_rn, "auto", iterations=12).compile
    assert info["runs"] == 40 and cm.expected_runs() == 1
    expected = 40 * (12 - info["decided_at"]) * info["eager_step_s"] * (1 - 1 / cm.DEFAULT_SPEEDUP[("cpu", None)])
    assert info["expected_saving_s"] == pytest.approx(expected, abs=0.06)


@needs_compiler
def test_auto_compiles_where_this_machine_measured_it_pays_and_records_the_steps(tiny_rn, tmp_path, monkeypatch):
    _fresh_cache(tmp_path, monkeypatch)
    loss = CLIPassoLoss(tiny_rn, _target(), num_augs=1, aug_pool=4)
    step = loss.compiled()
    shape = loss.train_input_shape(1)
    assert step.enable()  # creates the cache folder
    # this machine's ledger says a warm cache holds the step and that it ran 10x faster compiled
    step.ledger.update(step.key(shape), compile_s=50.0, warm_s=0.001, eager_step_s=1.0, compiled_step_s=0.1)
    assert step.expected_compile_s(shape) == (0.001, True)
    assert cm.speedup(step.ledger, step.key(shape), "cpu", None) == pytest.approx(10.0)
    r = _run(tiny_rn, "auto", iterations=16)
    assert r.compile["decision"].startswith("compiled"), r.compile
    ledger = json.loads((tmp_path / "cache" / cm.LEDGER_NAME).read_text())
    entry = ledger[step.key(shape)]
    assert entry["compiled_step_s"] != 0.1  # replaced by the steps this run measured
    assert entry["eager_step_s"] == pytest.approx(r.compile["eager_step_s"], abs=1e-4)


def test_policy_is_there_only_for_a_clip_loss_and_not_when_off(tiny_rn):
    trace = OptimizeConfig(iterations=5, loss="trace", compile="on")
    obj = Objective.build(trace, None, _target(), CPU, canvas=(224, 224))
    assert not any(isinstance(p, CompileEncoder) for p in policies_for(trace, obj, 1, (224, 224)))
    for mode, present in (("auto", True), ("on", True), ("off", False)):
        cfg = OptimizeConfig(iterations=5, compile=mode, num_augs=1)
        obj = Objective.build(cfg, tiny_rn, _target(), CPU, canvas=(224, 224))
        assert any(isinstance(p, CompileEncoder) for p in policies_for(cfg, obj, 1, (224, 224))) == present


def test_a_cache_folder_others_can_write_is_refused(tmp_path, monkeypatch):
    folder = _fresh_cache(tmp_path, monkeypatch)
    folder.mkdir()
    folder.chmod(0o777)
    got, why = cm.use_cache_dir()
    assert got is None and "written by other users" in why and "chmod go-w" in why
    folder.chmod(0o700)
    got, why = cm.use_cache_dir()
    assert got == folder and why is None
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str((folder / "inductor").absolute())
    assert not (folder.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def test_inductor_caches_into_ours_unless_the_user_chose_a_folder(tmp_path, monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    folder = _fresh_cache(tmp_path, monkeypatch)
    # torch writes its /tmp default into the environment on its own (often while importing): not a choice
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    cm.use_cache_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str((folder / "inductor").absolute())
    assert os.environ["TRITON_CACHE_DIR"].startswith(str(folder.absolute()))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))  # the user's choice is kept
    cm.use_cache_dir()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cm.ENV_CACHE, str(tmp_path / "mine"))
    assert cm.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(cm.ENV_CACHE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cm.cache_dir() == tmp_path / "xdg" / "clipasso" / "compiled"


def test_a_damaged_ledger_reads_as_empty_and_is_rewritten(tmp_path):
    (tmp_path / cm.LEDGER_NAME).write_text("{not json")
    ledger = cm.Ledger(tmp_path)
    assert ledger.read() == {}
    ledger.update("k", compile_s=3.0)
    assert ledger.get("k") == {"compile_s": 3.0}


def test_the_setting_takes_three_words():
    from clipasso.settings import SettingsError, SketchSettings

    assert SketchSettings.from_preset("fast", compile="on").optimize_config().compile == "on"
    assert SketchSettings().optimize_config().compile == "auto"
    with pytest.raises(SettingsError, match="compile must be one of auto, on, off"):
        SketchSettings.from_preset("paper", compile="yes").validate()


@needs_compiler
def test_a_new_loss_on_the_same_encoder_reuses_the_step_compiled_in_this_process(
    tiny_rn, tmp_path, monkeypatch, caplog
):
    """A batch's next picture, ComfyUI's next run, a video's next frame: a new loss (new target) on the
    same encoder runs the step torch.compile built for the first one, at once, and `auto` counts it free."""
    _fresh_cache(tmp_path, monkeypatch)
    first = CLIPassoLoss(tiny_rn, _target(), num_augs=6, aug_pool=8)  # batch shape (7, ...): this test's own
    shape = first.train_input_shape(1)
    step1 = first.compiled()
    assert step1.enable()
    _loss_and_grad(first, _sketch(1), 3)
    assert shape in step1.compile_seconds
    entry = dict(step1.ledger.get(step1.key(shape)))
    assert entry["compile_s"] > 0

    second = CLIPassoLoss(tiny_rn, 1.0 - _target(), num_augs=6, aug_pool=8)
    sketch = _sketch(1, seed=4)
    eager_total, eager_grad = _loss_and_grad(second, sketch, 9)
    step2 = second.compiled()
    assert step2.expected_compile_s(shape) == (0.0, True)
    assert step2.enable()
    with caplog.at_level(logging.INFO, logger="clipasso.compile"):
        caplog.clear()  # the first compile's line (the logger may be at INFO already: the CLI sets it)
        total, grad = _loss_and_grad(second, sketch, 9)
    assert not [r for r in caplog.records if r.name == "clipasso.compile"]  # no "compiling"/"loading" line
    assert step2.compile_seconds[shape] < 0.25 * step1.compile_seconds[shape]
    assert step2.ledger.get(step2.key(shape)) == entry  # the in-memory reuse is not recorded as a warm start
    # the reused step computes the second loss, not the first one's: equal to its own eager values
    assert torch.allclose(total, eager_total, rtol=1e-3, atol=0)
    cos = torch.nn.functional.cosine_similarity(grad.flatten(), eager_grad.flatten(), dim=0)
    assert float(cos) >= 0.999
    # another graph (no embedding needed) on the same encoder is not taken for the one compiled here
    other = CLIPassoLoss(tiny_rn, _target(), num_augs=6, aug_pool=8, semantic_weight=0.0)
    assert other.compiled().expected_compile_s(shape) != (0.0, True)


@needs_compiler
def test_more_variants_than_torchs_recompile_limit_stay_compiled(tmp_path, monkeypatch):
    """Each encoder x shape x precision is one more variant of the same compiled function; past torch's
    limit (8 by default, 1 here) torch would run eager without a word: the step raises it for its calls."""
    from torch._dynamo.utils import counters

    _fresh_cache(tmp_path, monkeypatch)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)

    def make(k):
        return lambda x: (x * k + 1.0).sin()  # one code object, a different constant each time

    x = torch.linspace(0, 1, 64).reshape(8, 8)
    before = counters["stats"]["unique_graphs"]
    for k in (2.0, 3.0, 5.0):
        step = cm.CompiledStep(make(k), CPU, f"test-limit-{k}")
        assert step.enable(), step.failed
        assert torch.allclose(step(x), (x * k + 1.0).sin())
        assert step.failed is None
    assert counters["stats"]["unique_graphs"] - before == 3  # all three compiled, none fell back to eager
    assert torch._dynamo.config.recompile_limit == 1  # the raise does not outlive the calls
