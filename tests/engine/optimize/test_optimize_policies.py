"""The optimiser as a short core plus policies (issue 24 item 2): a policy plugged in through
``optimize(..., extra_policies=[...])`` sees the hooks in the documented order and can end the run with
the best state kept; each built-in policy does its one job on a real run state (trace objective)."""

from __future__ import annotations

import warnings

import pytest
import torch

from clipasso.objective import Objective
from clipasso.optimize import OptimizeConfig, OptimizeError, Policy, optimize
from clipasso.optimize.loop import Run
from clipasso.optimize.policies import MixedPrecision, Plateau, Reseed, Rollback, SeedTrial, policies_for
from clipasso.optimize.style import StyleState
from clipasso.place.init import initialize_strokes

CPU = torch.device("cpu")


def _target():
    t = torch.ones(3, 224, 224)
    t[:, 40:60, 40:184] = 0.0
    t[:, 60:190, 100:124] = 0.1
    return t


def _cfg(**kw):
    base = dict(iterations=7, eval_interval=3, callback_interval=1, num_augs=2, loss="trace", reseed_interval=0)
    base.update(kw)
    return OptimizeConfig(**base)


def _run(cfg, seeds=(0, 1000, 2000), n=6):
    """A real run state at iteration 0 (trace objective on the CPU), as `optimize` builds it."""
    strokes = initialize_strokes((224, 224), n, list(seeds))
    objective = Objective.build(cfg, None, _target(), CPU, canvas=(224, 224))
    return Run.begin(strokes, objective, cfg, seeds, StyleState(strokes.widths, strokes.colors))


class Recorder(Policy):
    """Writes down every hook it is called with and the iteration it was at; changes nothing."""

    def __init__(self):
        self.seen = []

    def start(self, run):
        self.seen.append(("start", run.iteration))

    def after_eval(self, run):
        self.seen.append(("after_eval", run.iteration))

    def backward_step(self, run, loss):
        self.seen.append(("backward_step", run.iteration))
        return False

    def after_step(self, run):
        self.seen.append(("after_step", run.iteration))


class StopAfter(Policy):
    def __init__(self, steps):
        self.steps = steps

    def after_step(self, run):
        return "enough" if run.iteration >= self.steps else None


def test_a_policy_sees_the_hooks_in_order_and_a_do_nothing_policy_changes_nothing():
    strokes = initialize_strokes((224, 224), 6, [0, 1000])
    rec = Recorder()
    calls = []
    res = optimize(
        strokes,
        _target(),
        None,
        _cfg(),
        extra_policies=[rec],
        callback=lambda it, losses, img: calls.append(("callback", it)),
    )
    want = [("start", 0)]
    for it in range(7):
        if it % 3 == 0:
            want.append(("after_eval", it))
        want += [("backward_step", it), ("after_step", it + 1)]
    assert rec.seen == want
    assert calls == [("callback", i) for i in range(1, 8)]  # after the step's hooks
    plain = optimize(strokes, _target(), None, _cfg())
    assert res.history_iterations == plain.history_iterations == [0, 3, 6, 7]
    for a, b in ((res.strokes, plain.strokes), (res.final, plain.final)):
        assert torch.equal(a.points, b.points) and torch.equal(a.losses, b.losses)


def test_a_stop_rule_ends_the_run_and_the_best_state_is_kept():
    strokes = initialize_strokes((224, 224), 6, [0, 1000])
    stopped = optimize(strokes, _target(), None, _cfg(iterations=40), extra_policies=[StopAfter(5)])
    assert stopped.stop_reason == "enough" and stopped.iterations_run == 5
    assert not stopped.cancelled and not stopped.diverged
    assert stopped.history_iterations == [0, 3, 5]  # the state reached last is evaluated too
    assert torch.equal(stopped.strokes.losses, stopped.history.amin(0))
    # the same as a run whose budget is those 5 steps: the best state is what that run keeps
    budget = optimize(strokes, _target(), None, _cfg(iterations=5))
    assert torch.equal(stopped.strokes.points, budget.strokes.points)
    assert torch.equal(stopped.strokes.iterations, budget.strokes.iterations)


def test_a_policy_that_takes_the_step_replaces_the_plain_step():
    class HalfStep(Policy):
        """Adam on half the loss: the same direction, so the same points (Adam is scale invariant)."""

        def __init__(self):
            self.steps = 0

        def backward_step(self, run, loss):
            (loss * 0.5).backward()
            run.optimizer.step()
            self.steps += 1
            return True

    strokes = initialize_strokes((224, 224), 6, [0])
    half = HalfStep()
    res = optimize(strokes, _target(), None, _cfg(iterations=4), extra_policies=[half])
    assert half.steps == 4 and res.iterations_run == 4
    assert not torch.equal(res.final.points, strokes.points)


def test_extra_policies_must_be_policies():
    strokes = initialize_strokes((224, 224), 4, [0])
    with pytest.raises(OptimizeError, match="extra_policies takes clipasso.optimize.policies.Policy"):
        optimize(strokes, _target(), None, _cfg(), extra_policies=[lambda run: None])


def test_the_settings_decide_which_policies_run_and_their_order():
    run = _run(_cfg())
    assert [type(p) for p in policies_for(_cfg(), run.objective, 3, (224, 224))] == [Rollback]
    cfg = _cfg(iterations=100, seed_trial=0.2, plateau=0.01, reseed_interval=10)
    kinds = [type(p) for p in policies_for(cfg, run.objective, 3, (224, 224))]
    assert kinds == [SeedTrial, Plateau, Rollback, Reseed]
    assert MixedPrecision not in kinds  # fp32 on the CPU: no GradScaler
    assert SeedTrial not in [type(p) for p in policies_for(cfg, run.objective, 1, (224, 224))]  # nothing to cut


def test_seed_trial_cut_point_and_cut():
    assert SeedTrial.from_config(_cfg(iterations=30, seed_trial=0.2), 3).cut == 6
    # with re-seeding the cut waits one interval after the last re-seeding (0.7 * 30 + 4 = 25)
    assert SeedTrial.from_config(_cfg(iterations=30, seed_trial=0.2, reseed_interval=4), 3).cut == 25
    assert SeedTrial.from_config(_cfg(iterations=30, seed_trial=0.2, reseed_interval=10), 3) is None  # past the end
    assert SeedTrial.from_config(_cfg(iterations=30, seed_trial=0.2, seed_survivors=3), 3) is None
    run = _run(_cfg())
    trial = SeedTrial(cut=2, survivors=2)
    trial.start(run)
    assert 2 in run.eval_also
    run.best_loss.copy_(torch.tensor([0.3, 0.1, 0.2]))
    trial.after_eval(run)  # iteration 0: not the cut
    assert run.active is None
    run.iteration = 2
    before = run.points.detach()[0].clone()
    assert trial.after_eval(run) is None
    assert run.survivors == [1, 2] and run.active.tolist() == [1, 2] and run.frozen_at == 2
    with torch.no_grad():
        run.points += 5.0
    run.hold_frozen()  # the frozen candidate stays where it was cut
    assert torch.equal(run.points.detach()[0], before)


def test_plateau_stops_only_when_no_running_candidate_improved_enough():
    run = _run(_cfg(eval_interval=2), seeds=(0, 1))
    plateau = Plateau(share=0.1, window=4)
    run.history = [torch.tensor([1.0, 2.0]), torch.tensor([0.98, 1.5]), torch.tensor([0.97, 1.4])]
    run.history_iterations = [0, 2, 4]
    run.best_loss.copy_(torch.tensor([0.97, 1.4]))
    run.iteration = 4
    assert plateau.after_eval(run) is None  # candidate 1 went 2.0 -> 1.4 (30 %)
    run.best_loss.copy_(torch.tensor([0.97, 1.95]))
    assert plateau.after_eval(run) == "plateau"  # 3 % and 2.5 %: both under 10 %
    run.iteration = 3
    assert plateau.after_eval(run) is None  # not an evaluation iteration of the schedule
    run.iteration = 4
    run.freeze([0])  # only running candidates count
    run.best_loss.copy_(torch.tensor([0.5, 1.95]))
    assert plateau.after_eval(run) is None


def test_rollback_restores_the_best_state_and_stops_on_non_finite_points():
    run = _run(_cfg(), seeds=(0, 1))
    rollback = Rollback()
    assert rollback.after_step(run) is None
    best = run.best_points.clone()
    with torch.no_grad():
        run.points += 1.0
        run.points[1, 0, 0, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match="diverged") as caught:
        assert rollback.after_step(run) == "diverged"
    assert caught[0].filename == __file__  # the warning points at the caller, not the loop
    assert torch.equal(run.points.detach(), best)


def test_reseed_moves_a_collapsed_stroke_on_its_schedule_and_reports_it():
    cfg = _cfg(iterations=20, reseed_interval=5, reseed_until=0.5)
    run = _run(cfg, seeds=(0, 1))
    reseed = Reseed.from_config(cfg, (224, 224))
    assert (reseed.every, reseed.last) == (5, 10)
    reseed.start(run)
    assert run.report["reseeded"] == [0, 0]
    with torch.no_grad():
        run.points[1, 2] = torch.tensor([100.0, 100.0])  # a dot
    run.image = run.render(run.points.detach())
    run.iteration = 4
    reseed.after_step(run)
    assert run.report["reseeded"] == [0, 0]  # not a re-seeding step
    run.iteration = 5
    assert reseed.after_step(run) is None
    assert run.report["reseeded"] == [0, 1]
    length = (run.points.detach()[1, 2, 1:] - run.points.detach()[1, 2, :-1]).norm(dim=-1).sum()
    assert float(length) >= reseed.min_length
    with torch.no_grad():
        run.points[0, 1] = torch.tensor([50.0, 50.0])
    run.iteration = 15  # past reseed_until
    reseed.after_step(run)
    assert run.report["reseeded"] == [0, 1]


def test_mixed_precision_scales_the_step_and_skips_an_overflowed_one():
    run = _run(_cfg(), seeds=(0,))
    assert MixedPrecision.from_objective(run.objective) is None  # fp32 on the CPU
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        policy = MixedPrecision("cpu")
    plain = _run(_cfg(), seeds=(0,))
    for r in (run, plain):
        r.image = r.render(r.points)
    assert policy.backward_step(run, run.train_loss().sum()) is True
    loss = plain.train_loss().sum()
    loss.backward()
    plain.optimizer.step()
    assert torch.allclose(run.points, plain.points, atol=1e-5)  # the scale is undone before the step
    before = run.points.detach().clone()
    scale = policy.scaler.get_scale()
    run.optimizer.zero_grad(set_to_none=True)
    run.image = run.render(run.points)
    policy.backward_step(run, run.train_loss().sum() * float("inf"))
    assert torch.equal(run.points.detach(), before)  # overflow: the step is skipped
    assert policy.scaler.get_scale() < scale  # and the scale backs off
