"""Policies of the optimisation loop: what changes when it steps, stops or keeps a state.

A policy is an object with four hooks, called by the core (`clipasso.optimize.loop.run_loop`) in the
order the policies are listed; every hook has a do-nothing default in `Policy`:

- ``start(run)``: once, before the first iteration (e.g. ask for an extra evaluation with
  ``run.eval_also.add(iteration)``);
- ``after_eval(run) -> Optional[str]``: after an evaluation (``run.best_loss``, ``run.history`` are
  current, the step of this iteration is still to come); a string stops the run with that reason;
- ``backward_step(run, loss) -> bool``: take the backward pass and the optimiser step of the summed
  training loss and return True (the first policy that does wins; none: a plain ``loss.backward()``
  and ``run.optimizer.step()``);
- ``after_step(run) -> Optional[str]``: after the step (``run.iteration`` already counts it); a string
  stops the run.

Keeping the best state is the run's own (`Run.evaluate` keeps each candidate's best evaluated state,
`Run.restore_best` goes back to it); frozen candidates are run state too (`Run.freeze`). A policy
that reports something fills in an `OptimizeResult` field through ``run.report``.

Which policies run is decided from the settings in one place, `policies_for`; a new one is a class
here and a settings field read there. `clipasso.optimize.optimize` also takes ``extra_policies``,
which run after these.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import List, Optional, Sequence

import torch

from ..device import grad_scaler_needed
from .loop import Run, warn_caller


class Policy:
    """The hooks of a loop policy (see the module docstring); subclass and override what you need."""

    def start(self, run: Run) -> None:
        pass

    def after_eval(self, run: Run) -> Optional[str]:
        return None

    def backward_step(self, run: Run, loss: torch.Tensor) -> bool:
        return False

    def after_step(self, run: Run) -> Optional[str]:
        return None


class SeedTrial(Policy):
    """Successive halving in one cut (``seed_trial``, ``seed_survivors``): every candidate runs until
    ``cut``, then only the ``survivors`` lowest best-so-far eval losses go on. The others keep their best
    state (which loses to every survivor's, so best-of-N never picks them) and cost nothing more: only
    the survivors are passed through the loss. Adam and the views are per candidate, so a survivor goes
    on as it would in the full batch (float rounding aside)."""

    def __init__(self, cut: int, survivors: int):
        self.cut, self.survivors = int(cut), int(survivors)

    @classmethod
    def from_config(cls, cfg, candidates: int) -> Optional["SeedTrial"]:
        """The trial the settings ask for, or None when it would cut nothing."""
        if not cfg.seed_trial or candidates <= cfg.seed_survivors:
            return None
        cut = int(round(cfg.seed_trial * cfg.iterations))
        if cfg.reseed_every:
            # re-seeding moves strokes (and re-ranks the seeds) until reseed_until: cut only once the last
            # re-seeded strokes had an interval to settle (bench/studies/seed_trial.py: with the trace loss a
            # cut at 20% kept a clearly worse seed in some runs)
            cut = max(cut, int(cfg.reseed_until * cfg.iterations) + cfg.reseed_every)
        return cls(cut, cfg.seed_survivors) if 1 <= cut < cfg.iterations else None

    def start(self, run: Run) -> None:
        run.eval_also.add(self.cut)  # the cut ranks the state about to be stepped, evaluated there

    def after_eval(self, run: Run) -> Optional[str]:
        if run.iteration == self.cut:
            order = torch.argsort(run.best_loss.detach().cpu(), stable=True)
            run.freeze(int(i) for i in order[: self.survivors])
        return None


class Plateau(Policy):
    """Stops (reason "plateau") at an evaluation once no running candidate's best eval loss improved by
    more than ``share`` (of the old best) over the last ``window`` steps: the budget is then wasted."""

    def __init__(self, share: float, window: int):
        self.share, self.window = float(share), int(window)

    def after_eval(self, run: Run) -> Optional[str]:
        it = run.iteration
        if it % run.config.eval_interval != 0 or it < self.window or not run.history_iterations:
            return None
        back = [k for k, at in enumerate(run.history_iterations) if at <= it - self.window]
        if not back:
            return None
        # the best loss then: the lowest evaluation up to that row (not evaluated / non-finite: none)
        then = torch.nan_to_num(torch.stack(run.history[: back[-1] + 1]), nan=math.inf, posinf=math.inf).amin(0)
        now = run.best_loss.detach().cpu()
        rows = range(run.candidates) if run.active is None else run.survivors
        for i in rows:
            old, new = float(then[i]), float(now[i])
            if not math.isfinite(old) or not math.isfinite(new):
                return None
            if old - new > self.share * abs(old):
                return None
        return "plateau"


class MixedPrecision(Policy):
    """Takes the step through a GradScaler: with fp16 autocast (the objective's, on CUDA) small gradients
    would underflow to zero, so the loss is scaled up for the backward pass and the step unscaled (and
    skipped where the scaled gradients overflowed)."""

    def __init__(self, device_type: str = "cuda"):
        self.scaler = torch.amp.GradScaler(device_type)

    @classmethod
    def from_objective(cls, objective) -> Optional["MixedPrecision"]:
        if grad_scaler_needed(objective.amp_dtype, objective.device):  # the one precision decision
            return cls(objective.device.type)
        return None

    def backward_step(self, run: Run, loss: torch.Tensor) -> bool:
        self.scaler.scale(loss).backward()
        self.scaler.step(run.optimizer)
        self.scaler.update()
        return True


class Rollback(Policy):
    """Divergence guard (always on): when a step made the points, widths or colours non-finite, every
    candidate goes back to its best evaluated state and the run stops (reason "diverged") with a
    warning; what was reached is kept instead of a NaN sketch."""

    def after_step(self, run: Run) -> Optional[str]:
        if (
            bool(torch.isfinite(run.points.detach()).all())
            and bool(torch.isfinite(run.style.widths.detach()).all())
            and bool(torch.isfinite(run.style.colors().detach()).all())
        ):
            return None
        warn_caller(
            f"the optimisation diverged at iteration {run.iteration} (non-finite control points); "
            "returning the best state reached. Lower the learning rate."
        )
        run.restore_best()
        return "diverged"


class Reseed(Policy):
    """Every ``every`` steps up to iteration ``last``, strokes that shrank to dots (control polygon under
    ``min_length`` px at 224) move to where the reference has ink the sketch lacks (`reseed_collapsed`),
    so a stroke budget is not wasted on dots. Frozen candidates are left alone. Reports
    ``reseeded`` (strokes moved per candidate)."""

    def __init__(self, every: int, last: int, min_length: float):
        self.every, self.last, self.min_length = int(every), int(last), float(min_length)

    @classmethod
    def from_config(cls, cfg, canvas) -> Optional["Reseed"]:
        if not cfg.reseed_every:
            return None
        return cls(
            cfg.reseed_every, int(cfg.reseed_until * cfg.iterations), float(cfg.reseed_min_length) * max(canvas) / 224.0
        )

    def start(self, run: Run) -> None:
        self.generators = [torch.Generator().manual_seed(s + 7919) for s in run.seeds]  # apart from the views'
        self.reference = run.objective.reference_ink()
        run.report["reseeded"] = [0] * run.candidates

    def after_step(self, run: Run) -> Optional[str]:
        it = run.iteration
        if it % self.every == 0 and it <= self.last:
            alphas = run.style.colors().detach()[..., 3]
            if run.active is not None:  # frozen candidates are not re-seeded
                alphas = alphas.clone()
                alphas[run.frozen[0]] = 0
            moved = reseed_collapsed(
                run.points, alphas, run.image, self.reference, self.generators, self.min_length, run.optimizer
            )
            run.report["reseeded"] = [a + m for a, m in zip(run.report["reseeded"], moved)]
        return None


class CompileEncoder(Policy):
    """The ``compile`` setting: the CLIP loss's training step through ``torch.compile``
    (`clipasso.models.compiled`). ``on`` switches it on at the start. ``auto`` times the first
    ``probe`` eager steps, then compiles when the steps left, at the speed-up this machine measured (or
    `DEFAULT_SPEEDUP`), save more than the compiles cost: one per batch size still to come (the seed
    trial halves the batch once), cold or from a warm cache (`CompiledStep.expected_compile_s`). Either
    way the measured eager and compiled step times go to the ledger, so the next decision uses this
    machine's own figures. Reports ``compile``: what was decided and measured."""

    def __init__(self, mode: str, losses: Sequence, probe: int = 3, measure: int = 5):
        self.mode, self.losses, self.probe, self.measure = mode, list(losses), int(probe), int(measure)

    @classmethod
    def from_config(cls, cfg, objective) -> Optional["CompileEncoder"]:
        mode = getattr(cfg, "compile", "off")
        losses = [term[2] for term in getattr(objective, "terms", ()) if hasattr(term[2], "compiled")]
        return cls(mode, losses) if mode != "off" and losses else None

    # .................................................................. hooks
    def start(self, run: Run) -> None:
        self.steps = [loss.compiled() for loss in self.losses]
        self.last_time, self.last_iteration = None, None
        self.eager: List[float] = []
        self.timed: dict = {}  # batch shape -> compiled step times
        self.recorded: set = set()
        run.report["compile"] = self.info = {"mode": self.mode, "decision": None}
        if self.mode == "on":
            self._enable(run, "asked (compile on)")

    def after_step(self, run: Run) -> Optional[str]:
        now = time.perf_counter()
        last, self.last_time = self.last_time, now
        if last is None:  # the first step warms up allocations: not timed
            return None
        it = run.iteration
        if (it - 1) % run.config.eval_interval == 0 or (it - 1) in run.eval_also:
            return None  # this interval holds an evaluation too
        shape = self._shape(run)
        seconds = now - last
        if not any(s.enabled for s in self.steps):
            if self.info["decision"] is None and self.mode == "auto":
                self.eager.append(seconds)
                if len(self.eager) >= self.probe:
                    self._decide(run, shape, statistics.median(self.eager))
            return None
        step = self.steps[0]
        if shape in step.compile_seconds and shape not in self.recorded:
            times = self.timed.setdefault(shape, [])
            times.append(seconds)
            if len(times) > self.measure:  # the first compiled interval may still hold the compile
                best = statistics.median(times[1:])
                step.ledger.update(step.key(shape), compiled_step_s=best)
                self.info.setdefault("compiled_step_s", {})[str(shape[0])] = round(best, 4)
                self.recorded.add(shape)
        return None

    # .................................................................. the decision
    def _shape(self, run: Run) -> tuple:
        active = run.candidates if run.active is None else len(run.survivors)
        return self.losses[0].train_input_shape(active)

    def _phases(self, run: Run, shape: tuple) -> List[tuple]:
        """(steps, batch shape) of the rest of the run: the seed trial's cut halves the batch once."""
        cfg = run.config
        left = max(0, cfg.iterations - run.iteration)
        trial = SeedTrial.from_config(cfg, run.candidates) if run.active is None else None
        if trial is None or trial.cut <= run.iteration:
            return [(left, shape)]
        after = self.losses[0].train_input_shape(trial.survivors)
        return [(trial.cut - run.iteration, shape), (cfg.iterations - trial.cut, after)]

    def _decide(self, run: Run, shape: tuple, eager_s: float) -> None:
        from ..models.compiled import expected_runs, speedup

        step = self.steps[0]
        runs = expected_runs()  # a batch's pictures left: one compile serves them all
        amp = getattr(self.losses[0], "amp_dtype", None)
        saving = cost = 0.0
        unknown = False
        for n, sh in self._phases(run, shape):
            if n <= 0:
                continue
            ratio = speedup(step.ledger, step.key(sh), step.device.type, amp)
            if ratio is None:
                unknown = True
                continue
            per_step = eager_s * sh[0] / shape[0]  # the step's cost scales with the views it encodes
            saving += n * per_step * (1 - 1 / ratio) * runs
            cost += step.expected_compile_s(sh)[0]
        self.info.update(
            eager_step_s=round(eager_s, 4),
            expected_saving_s=round(saving, 1),
            compile_cost_s=round(cost, 1),
            runs=runs,
            decided_at=run.iteration,
        )
        if unknown and saving == 0:
            self.info["decision"] = "eager: no measured speed-up for this device and precision yet"
        elif saving <= cost:
            self.info["decision"] = f"eager: compiling would save about {saving:.0f} s but cost about {cost:.0f} s"
        else:
            self._enable(run, f"compiling saves about {saving:.0f} s for about {cost:.0f} s of compiling")

    def _enable(self, run: Run, why: str) -> None:
        ok = all(step.enable() for step in self.steps)
        eager_s = self.info.get("eager_step_s")
        if ok and eager_s:  # with the compiled times to come, the ledger's speed-up of this machine
            self.steps[0].ledger.update(self.steps[0].key(self._shape(run)), eager_step_s=eager_s)
        self.info["decision"] = f"compiled: {why}" if ok else f"eager: {self.steps[0].failed}"


def policies_for(cfg, objective, candidates: int, canvas) -> List[Policy]:
    """The policies the settings ask for, in the order they act: the trial cut before the plateau test
    at an evaluation; the divergence rollback before re-seeding after a step."""
    wanted = [
        SeedTrial.from_config(cfg, candidates),
        Plateau(cfg.plateau, cfg.plateau_window) if cfg.plateau else None,
        MixedPrecision.from_objective(objective),
        Rollback(),
        Reseed.from_config(cfg, canvas),
        CompileEncoder.from_config(cfg, objective),
    ]
    return [p for p in wanted if p is not None]


def reseed_collapsed(
    points: torch.Tensor,
    alphas: torch.Tensor,
    image: torch.Tensor,
    reference: torch.Tensor,
    generators: Sequence[torch.Generator],
    min_length: float,
    optimizer: Optional[torch.optim.Optimizer] = None,
) -> List[int]:
    """Move every visible stroke shorter than ``min_length`` px to a spot of ``reference`` that the
    sketch ``image`` [B,3,H,W] does not cover yet; returns how many strokes moved per candidate.

    points [B,S,P,2] (changed in place), alphas [B,S]. A moved stroke becomes a new CLIPasso squiggle
    (`clipasso.place.init.random_walk`, as at the start) from a point drawn with probability proportional to the
    missing ink (the reference minus the sketch's blurred ink; anywhere on the reference lines when
    nothing is missing). Its Adam moments are reset: the first moment to 0, the second to the mean
    of the other strokes' (steps of the usual size, without the bias-correction jump of a zero).
    """
    from ..place.init import DEFAULT_RADIUS, random_walk
    from ..objective.losses import blur_ink, ink_of

    b, s, p, _ = points.shape
    h, w = image.shape[-2:]
    with torch.no_grad():
        length = (points[:, :, 1:] - points[:, :, :-1]).norm(dim=-1).sum(-1)  # control polygon [B,S]
        collapsed = (length < min_length) & (alphas > 0)
        moved = [0] * b
        if not bool(collapsed.any()):
            return moved
        state = optimizer.state.get(points) if optimizer is not None else None
        have = blur_ink(ink_of(image.detach().float()), 1.0)[:, 0].clamp(0, 1)  # [B,H,W]
        ref = reference.to(have.device, have.dtype)
        for i in range(b):
            idx = torch.nonzero(collapsed[i]).flatten()
            if idx.numel() == 0:
                continue
            missing = (ref - have[i]).clamp(min=0).flatten().cpu().double()
            if float(missing.sum()) <= 1e-9:
                missing = ref.flatten().cpu().double()
            if float(missing.sum()) <= 1e-9:
                continue  # nothing to draw anywhere: leave the stroke
            spots = torch.multinomial(missing, idx.numel(), replacement=True, generator=generators[i])
            starts = torch.stack([spots % w + 0.5, spots // w + 0.5], -1).float()  # (x, y)
            new = random_walk(starts, (p - 1) // 3, DEFAULT_RADIUS, (h, w), generators[i])
            points[i, idx] = new.to(points.device, points.dtype)
            if state:
                keep = ~collapsed[i]
                for key, value in state.items():
                    if key == "exp_avg":
                        value[i, idx] = 0
                    elif key == "exp_avg_sq":
                        value[i, idx] = value[i][keep].mean(0) if bool(keep.any()) else 0
            moved[i] = int(idx.numel())
        return moved


__all__ = [
    "Policy",
    "CompileEncoder",
    "SeedTrial",
    "Plateau",
    "MixedPrecision",
    "Rollback",
    "Reseed",
    "policies_for",
    "reseed_collapsed",
]
