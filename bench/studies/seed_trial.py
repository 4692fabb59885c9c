"""Seed trial and plateau stop: how often a cut best-of-N picks the full run's winner, what it costs,
and how much loss a plateau stop gives up.

    python bench/studies/seed_trial.py                 # trace + tiny CLIP, 5 pictures x 2 seed sets, 3 seeds, 500 steps (~35 min, 1 thread)
    python bench/studies/seed_trial.py --losses trace --pictures horse chelsea --sets 1 --iterations 100   # a quick look
    python bench/studies/seed_trial.py --table-only

For every (loss, picture, seed set) the optimiser runs best-of-3 twice from the same starting strokes
(mask saliency + XDoG, as ``--saliency mask``), with the `fast` preset's optimiser settings (2 views from
a pool of 16, lr 1, eval every 10 steps) and fp32:

- full: all 3 seeds to the end (the original's best-of-3);
- cut: `seed_trial` 0.2, `seed_survivors` 1 (all 3 seeds for the first 20% of the steps, then the leader).

Reported: whether the cut run's winner is the full run's winner (same seed), the cut winner's loss
against the full winner's (a different seed can still be as good), and the cost in candidate steps
(one seed's run = 1.0). A survivor continues as it would in the full batch, but not bit for bit: the
batch size changes float rounding, and the trajectories drift apart over hundreds of steps (a
seed run alone differs from the same seed in a batch in the same way). The full run's own history
also gives, exactly, what other cut points would have chosen (the leader at the cut, by best eval loss
so far) and where a plateau rule would have stopped (the run up to a stop is the same run): a grid of
(share, window) with the iterations saved and the loss given up.

Losses: ``trace`` (the weights-free loss, which re-seeds collapsed strokes every 50 steps) and ``clip``
with the tiny randomly initialised test ResNet (`clipasso.testing.tiny_models`): no pretrained CLIP
weights exist here, so the real RN101's rankings cannot be measured; the tiny CLIP loss has the same
form (geometric + semantic over augmented views). Writes bench/results/seed_trial_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.quality import initial_strokes, load_picture  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "seed_trial_cpu.json"
PICTURES = ("horse", "chelsea", "coffee", "astronaut", "rocket")
CUTS = (0.1, 0.2, 0.3)
REAL_CUT = 0.2
PLATEAUS = ((0.005, 50), (0.002, 100), (0.005, 100), (0.01, 100), (0.002, 200), (0.005, 200), (0.01, 200))


def best_so_far(history: torch.Tensor) -> torch.Tensor:
    """[n_evals, B] eval losses -> running minimum per candidate."""
    h = torch.nan_to_num(history.double(), nan=math.inf)
    return torch.cummin(h, 0).values


def simulate_cut(history, its, share: float, iterations: int) -> int:
    """The candidate a seed trial cut at ``share`` keeps: the lowest best-so-far at the cut."""
    cut = int(round(share * iterations))
    rows = [k for k, at in enumerate(its) if at <= cut]
    return int(torch.argmin(best_so_far(history)[rows[-1]]))


def simulate_plateau(history, its, share: float, window: int, rows=None):
    """(stop iteration or None, row of the stop) of the plateau rule on a full run's history."""
    best = best_so_far(history)
    cols = list(range(history.shape[1])) if rows is None else rows
    for k, at in enumerate(its):
        if at < window:
            continue
        back = [j for j, a in enumerate(its) if a <= at - window]
        if not back:
            continue
        then, now = best[back[-1], cols], best[k, cols]
        if bool(((then - now) <= share * then.abs()).all()):
            return at, k
    return None, len(its) - 1


def run_case(loss, name, seeds, encoder, args):
    from clipasso.optimize import OptimizeConfig, optimize

    target, mask, _ = load_picture(name)
    init = initial_strokes(target, mask, args.strokes, seeds)
    base = dict(iterations=args.iterations, loss=loss, mixed_precision="fp32", plateau=0.0)
    t = time.perf_counter()
    full = optimize(init, target, encoder, OptimizeConfig.from_preset("fast", seed_trial=0.0, **base), seeds=seeds)
    t_full = time.perf_counter() - t
    t = time.perf_counter()
    cut = optimize(
        init,
        target,
        encoder,
        OptimizeConfig.from_preset("fast", seed_trial=REAL_CUT, seed_survivors=1, **base),
        seeds=seeds,
    )
    t_cut = time.perf_counter() - t
    fl, cl = full.strokes.losses.double(), cut.strokes.losses.double()
    w_full, w_cut = int(torch.argmin(fl)), int(torch.argmin(cl))
    its = full.history_iterations
    row = dict(
        loss=loss,
        picture=name,
        seeds=list(seeds),
        full_losses=fl.tolist(),
        cut_losses=cl.tolist(),
        full_winner=w_full,
        cut_winner=w_cut,
        same_winner=w_full == w_cut,
        cut_vs_full=float(cl[w_cut] / fl[w_full] - 1),
        seconds_full=t_full,
        seconds_cut=t_cut,
        cost_full=full.candidate_steps / args.iterations,
        cost_cut=cut.candidate_steps / args.iterations,
        history=full.history.tolist(),
        history_iterations=its,
    )
    # other cut points, exactly from the full run's history
    row["simulated"] = {}
    for share in CUTS:
        lead = simulate_cut(full.history, its, share, args.iterations)
        row["simulated"][str(share)] = dict(
            leader=lead, same_winner=lead == w_full, regret=float(fl[lead] / fl[w_full] - 1)
        )
    return row


def engine_cut(loss: str, share: float, iterations: int) -> int:
    """Where the optimiser cuts for ``share`` (`clipasso.optimize.optimize`): with re-seeding (the trace
    loss: every 50 steps until 70% of the run) only one interval after the last re-seeding."""
    from clipasso.optimize import OptimizeConfig

    cfg = OptimizeConfig(loss=loss, iterations=iterations)
    cut = int(round(share * iterations))
    if cfg.reseed_every:
        cut = max(cut, int(cfg.reseed_until * iterations) + cfg.reseed_every)
    return cut


def pairs(rows, cut: int):
    """Best of 2 (the fast preset) from the best-of-3 runs: every pair of seeds of every run, the pair's
    winner against the leader of the pair at ``cut`` (exact from the full history, as `simulate_cut`)."""
    import itertools

    same, regrets = 0, []
    for r in rows:
        h = torch.tensor(r["history"])
        its = r["history_iterations"]
        best = best_so_far(h)
        at = [k for k, a in enumerate(its) if a <= cut][-1]
        for pair in itertools.combinations(range(h.shape[1]), 2):
            pair = list(pair)
            win = pair[int(torch.argmin(best[-1, pair]))]
            lead = pair[int(torch.argmin(best[at, pair]))]
            same += lead == win
            regrets.append(float(best[-1, lead] / best[-1, win] - 1))
    regrets.sort()
    n = len(regrets)
    return dict(
        cut=cut,
        pairs=n,
        same_winner=same,
        regret_mean=sum(regrets) / n,
        regret_median=regrets[n // 2],
        regret_worst=regrets[-1],
        cost=1 + cut / max(1, rows[0]["history_iterations"][-1]),
    )


def summarise(rows, iterations):
    out = {}
    for loss in sorted({r["loss"] for r in rows}):
        rs = [r for r in rows if r["loss"] == loss]
        n = len(rs)
        s = dict(
            cases=n,
            same_winner=sum(r["same_winner"] for r in rs),
            cut_vs_full_mean=sum(r["cut_vs_full"] for r in rs) / n,
            cut_vs_full_worst=max(r["cut_vs_full"] for r in rs),
            cost_full=sum(r["cost_full"] for r in rs) / n,
            cost_cut=sum(r["cost_cut"] for r in rs) / n,
            seconds_full=sum(r["seconds_full"] for r in rs) / n,
            seconds_cut=sum(r["seconds_cut"] for r in rs) / n,
            simulated={},
            plateau={},
        )
        for share in CUTS:
            sims = [r["simulated"][str(share)] for r in rs]
            s["simulated"][str(share)] = dict(
                same_winner=sum(x["same_winner"] for x in sims),
                regret_mean=sum(x["regret"] for x in sims) / n,
                regret_worst=max(x["regret"] for x in sims),
                cost=3 * share + (1 - share),
            )
        for share, window in PLATEAUS:  # from the saved histories: every run, and every candidate alone
            stops, given, stops1, given1 = [], [], [], []
            for r in rs:
                h = torch.tensor(r["history"])
                its = r["history_iterations"]
                best = best_so_far(h)
                at, k = simulate_plateau(h, its, share, window)
                stops.append(at if at is not None else iterations)
                given.append(float(best[k].min() / best[-1].min() - 1))
                for c in range(h.shape[1]):  # one candidate running alone: a single seed, or the survivor
                    at, k = simulate_plateau(h, its, share, window, rows=[c])
                    stops1.append(at if at is not None else iterations)
                    given1.append(float(best[k, c] / best[-1, c] - 1))
            s["plateau"][f"{share}/{window}"] = dict(
                stopped=sum(x < iterations for x in stops),
                mean_stop=sum(stops) / n,
                given_up_mean=sum(given) / n,
                given_up_worst=max(given),
                single_runs=len(stops1),
                single_stopped=sum(x < iterations for x in stops1),
                single_mean_stop=sum(stops1) / len(stops1),
                single_given_up_mean=sum(given1) / len(given1),
                single_given_up_worst=max(given1),
            )
        s["best_of_2"] = {str(share): pairs(rs, engine_cut(loss, share, iterations)) for share in CUTS}
        out[loss] = s
    return out


def table(data) -> str:
    st = data["settings"]
    L = [
        f"Seed trial and plateau stop: best of 3, {st['iterations']} steps, {st['strokes']} strokes, fast preset's "
        f"optimiser, fp32, {len(st['pictures'])} pictures x {st['sets']} seed sets; {st['cpu']}, {st['threads']} thread(s)"
    ]
    for loss, s in data["summary"].items():
        L += [
            "",
            f"loss {loss}: {s['cases']} cases",
            f"  real cut at {REAL_CUT} (survivors 1{'; before the cut waited for re-seeding' if loss == 'trace' else ''}): same winner {s['same_winner']}/{s['cases']}; cut winner's loss vs "
            f"full winner's: mean {100 * s['cut_vs_full_mean']:+.2f}%, worst {100 * s['cut_vs_full_worst']:+.2f}%; "
            f"cost {s['cost_cut']:.2f} vs {s['cost_full']:.2f} one-seed runs "
            f"({s['seconds_cut']:.0f} s vs {s['seconds_full']:.0f} s)",
            f"  {'cut at':>8} {'same winner':>12} {'regret mean':>12} {'worst':>8} {'cost':>6}   (exact, from the full runs)",
        ]
        for share, x in s["simulated"].items():
            L.append(
                f"  {float(share):>8.2f} {x['same_winner']:>7}/{s['cases']:<4} {100 * x['regret_mean']:>+11.2f}% "
                f"{100 * x['regret_worst']:>+7.2f}% {x['cost']:>6.2f}"
            )
        L.append(
            "  best of 2 (every pair of seeds), cut where the optimiser cuts for seed_trial (after re-seeding "
            "with trace):"
        )
        for share, x in s["best_of_2"].items():
            L.append(
                f"  {float(share):>8.2f} -> step {x['cut']:>3}: same winner {x['same_winner']}/{x['pairs']}, "
                f"regret mean {100 * x['regret_mean']:+.2f}% (median {100 * x['regret_median']:+.2f}%, worst "
                f"{100 * x['regret_worst']:+.2f}%), cost {x['cost']:.2f} one-seed runs"
            )
        L.append(
            f"  {'plateau share/window':>22} {'stopped':>8} {'mean stop':>10} {'loss given up':>14} {'worst':>8}"
            f" | one candidate alone: {'stopped':>8} {'mean stop':>9} {'given up':>9} {'worst':>8}"
        )
        for key, p in s["plateau"].items():
            L.append(
                f"  {key:>22} {p['stopped']:>4}/{s['cases']:<3} {p['mean_stop']:>10.0f} "
                f"{100 * p['given_up_mean']:>+13.2f}% {100 * p['given_up_worst']:>+7.2f}% | "
                f"{p['single_stopped']:>26}/{p['single_runs']:<3} {p['single_mean_stop']:>7.0f} "
                f"{100 * p['single_given_up_mean']:>+8.2f}% {100 * p['single_given_up_worst']:>+7.2f}%"
            )
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--losses", nargs="+", default=["trace", "clip"], choices=["trace", "clip"])
    p.add_argument("--pictures", nargs="+", default=list(PICTURES))
    p.add_argument("--sets", type=int, default=2, help="seed sets per picture (seeds s, s+1000, s+2000; s = 0, 1, ...)")
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--strokes", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    if args.table_only:  # the summary is recomputed from the saved runs (and saved again)
        data = json.loads(Path(args.out).read_text())
        data["summary"] = summarise(data["rows"], data["settings"]["iterations"])
        Path(args.out).write_text(json.dumps(data, indent=1))
        print(table(data))
        return 0
    torch.set_num_threads(args.threads)
    encoder = None
    if "clip" in args.losses:
        from clipasso.models import load_clip
        from clipasso.testing.tiny_models import TINY_RN, write_tiny_models

        folder = write_tiny_models(tempfile.mkdtemp(prefix="clipasso_trial_"))["folder"]
        encoder = load_clip(TINY_RN, models_dir=folder, allow_download=False)
    started = time.perf_counter()
    rows = []
    for loss in args.losses:
        for name in args.pictures:
            for k in range(args.sets):
                seeds = [k + 1000 * j for j in range(3)]
                row = run_case(loss, name, seeds, encoder if loss == "clip" else None, args)
                rows.append(row)
                print(
                    f"{loss} {name} seeds {seeds}: full {[round(v, 4) for v in row['full_losses']]} cut "
                    f"{[round(v, 4) for v in row['cut_losses']]} same winner {row['same_winner']}",
                    flush=True,
                )
    data = dict(
        settings=dict(
            losses=args.losses,
            pictures=args.pictures,
            sets=args.sets,
            iterations=args.iterations,
            strokes=args.strokes,
            threads=args.threads,
            torch=torch.__version__,
            cpu=platform.processor() or platform.machine(),
            run_s=time.perf_counter() - started,
        ),
        rows=rows,
        summary=summarise(rows, args.iterations),
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    print(table(data))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
