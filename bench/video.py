"""Video mode measured: how well the strokes follow a known motion, how steady they stay, how much less
the sketch flickers than sketching every frame on its own, what a frame costs and what the temporal term
costs in loss (docs/video.md, "Measured").

    OMP_NUM_THREADS=1 python bench/video.py                  # trace clips (~9 min), then random-CLIP clips (~20 min)
    OMP_NUM_THREADS=1 python bench/video.py --only trace     # the weights-free trace loss only (keeps the CLIP rows)
    OMP_NUM_THREADS=1 python bench/video.py --only clip      # the random-CLIP clips only (keeps the trace rows)
    python bench/video.py --quick              # tiny models, few frames: checks the script, not the numbers
    python bench/video.py --example            # only docs/video_example.gif (a pan clip, sketch beside input)
    python bench/video.py --table-only         # reprint the table of the last saved run

One torch thread: on a 2-core machine that others share, two threads made single frames take up to 20x
longer in a first try (thread contention), which drowns the cost ratio. The trace run also writes
docs/video_example.gif from its pan clip.

Clips with a motion known exactly, cut from scikit-image photos resized so their short side is 360 px:
224 x 224 frames (``framing="stretch"``, so canvas pixels are input pixels), of

- static: the same crop every frame (coffee);
- pan: the crop moves 2 px right per frame (chelsea), the content 2 px left;
- zoom: 1 % more magnification per frame (compounded) about the centre (astronaut);
- rotation: 0.5 degree per frame about the centre (coffee).

For each clip and loss, `clipasso.video.sketch_video` sketches the clip, and ``--independent`` consecutive
frames at the clip's end are also sketched on their own (`clipasso.pipeline.sketch`, the same settings).
Measured:

- tracking: the mean distance of the control points of the strokes never placed again (`replaced`) from
  where the true motion takes the key frame's points, averaged over the frames after the key frame (and
  at the last frame);
- static: the mean control-point movement per frame (`FrameResult.moved`) on the static clip;
- flicker: the mean absolute difference of consecutive rendered frames (0..1 per channel) of the video
  run over the independently sketched frames, divided by the same for the independent sketches; and the
  same after moving the previous render by the true motion first (what changed beyond the motion itself,
  over the pixels whose content was in the previous frame);
- cost: the mean seconds of a frame after the key frame over the mean seconds of an independent sketch;
- loss: the video's picture loss (without the temporal term) over the independent sketch's, per frame,
  on the independently sketched frames (the same objective evaluates both).

Losses: the weights-free trace loss (``loss="trace", saliency="none"``) and the real architectures with
random weights (RN101 for the loss, BatchNorm calibrated on photos, `bench.rn101`; ViT-B-32 for the
clip-attention saliency, as bench/scene.py), with fewer frames and iterations (``--clip-*``). Background
removal is off in both. Results: bench/results/video_cpu.json (``--quick``: video_cpu_quick.json).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import machine, markdown_table, read_results, write_results  # noqa: E402

SIDE = 224  # frame side = canvas side with framing "stretch"
SHORT = 360  # the photo's short side after resizing
CLIPS = (("static", "coffee"), ("pan", "chelsea"), ("zoom", "astronaut"), ("rotation", "coffee"))
PAN_PX, ZOOM, TURN_DEG = 2.0, 0.01, 0.5
GOALS = dict(track_px=1.0, static_px=0.05, flicker=0.2, cost=0.2, loss=0.05)
EXAMPLE = ROOT / "docs" / "video_example.gif"


# --------------------------------------------------------------------------- clips with a known motion


def big_photo(name: str):
    """The skimage photo as float RGB 0..1, resized (antialiased) to a short side of ``SHORT`` px."""
    import numpy as np
    import skimage.data
    from skimage.transform import resize

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    img = img[..., :3].astype("float64") / 255.0
    h, w = img.shape[:2]
    f = SHORT / min(h, w)
    return resize(img, (round(h * f), round(w * f)), anti_aliasing=True)


def frame_map(motion: str, i: int, n: int, big_shape):
    """(A, B): frame ``i``'s pixel (x, y) (index coordinates) shows the big photo at A @ (x, y) + B."""
    import numpy as np

    cy, cx = (big_shape[0] - 1) / 2, (big_shape[1] - 1) / 2
    c = (SIDE - 1) / 2
    if motion == "static":
        return np.eye(2), np.array([cx - c, cy - c])
    if motion == "pan":  # the path is centred on the photo; whole pixels, so every frame is an exact crop
        x0 = round(cx - c - PAN_PX * (n - 1) / 2)
        return np.eye(2), np.array([x0 + PAN_PX * i, round(cy - c)])
    if motion == "zoom":
        a = np.eye(2) / (1 + ZOOM) ** i
    elif motion == "rotation":
        t = math.radians(TURN_DEG * i)
        a = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    else:
        raise ValueError(motion)
    return a, np.array([cx, cy]) - a @ np.array([c, c])


def make_clip(motion: str, photo: str, n: int):
    """``n`` uint8 224x224x3 frames and truth(points [...,2] canvas px of frame 0, i) -> where they are at i."""
    import numpy as np
    import torch
    from skimage.transform import warp

    big = big_photo(photo)
    frames = []
    for i in range(n):
        a, b = frame_map(motion, i, n, big.shape)
        if motion in ("static", "pan"):
            x0, y0 = int(b[0]), int(b[1])
            f = big[y0 : y0 + SIDE, x0 : x0 + SIDE]
        else:
            f = warp(big, lambda xy, a=a, b=b: xy @ a.T + b, output_shape=(SIDE, SIDE), order=3, mode="edge")
        frames.append((np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8))

    a0, b0 = frame_map(motion, 0, n, big.shape)

    def truth(points, i):
        a, b = frame_map(motion, i, n, big.shape)
        q = points.double().numpy() - 0.5  # canvas (pixel centres at +0.5) -> index coordinates
        world = q @ a0.T + b0
        qi = (world - b) @ np.linalg.inv(a).T
        return torch.from_numpy(qi + 0.5).to(points.dtype)

    def follow(previous, i):
        """``previous`` ([3,H,W], a render of frame i-1) moved by the true motion onto frame i, and the mask
        of frame i's pixels whose content was inside frame i-1."""
        a, b = frame_map(motion, i, n, big.shape)
        ap, bp = frame_map(motion, i - 1, n, big.shape)
        ys, xs = np.mgrid[0:SIDE, 0:SIDE]
        q = np.stack([xs.ravel(), ys.ravel()], -1).astype("float64")
        src = ((q @ a.T + b) - bp) @ np.linalg.inv(ap).T  # index coordinates in frame i-1
        grid = torch.from_numpy(src / (SIDE - 1) * 2 - 1).float().view(1, SIDE, SIDE, 2)
        moved = torch.nn.functional.grid_sample(previous[None].float(), grid, mode="bilinear", align_corners=True)
        inside = (grid.abs() <= 1).all(-1)[0]
        return moved[0], inside

    return frames, truth, follow


# --------------------------------------------------------------------------- one clip


def mean_abs(a, b) -> float:
    return float((a - b).abs().mean())


def run_clip(motion, photo, n, independent, common, video_kw, keep_frames=False):
    """Sketch one clip as a video and its last ``independent`` frames on their own; the measures."""
    import torch

    from clipasso.pipeline import sketch
    from clipasso.render.raster import render
    from clipasso.video import sketch_video
    from clipasso.video.sketch import _FrameObjective, video_settings

    frames, truth, follow = make_clip(motion, photo, n)
    subset = list(range(max(1, n - independent), n))
    t0 = time.perf_counter()
    key_points = None
    gone = set()
    per_frame = []
    renders = {}
    shown = []
    prev_img = None
    c_mark = time.process_time()  # CPU seconds of each frame: between yields, less this loop's own work
    for r in sketch_video(frames, preset="fast", **common, **video_kw):
        c_frame = time.process_time() - c_mark
        pts = r.frame_strokes.points[0].detach().float()
        gone |= set(r.replaced)
        img = render(r.strokes).image[0].float()
        row = dict(r.summary())
        row["seconds"] = r.seconds
        row["cpu_s"] = c_frame
        row["load"] = os.getloadavg()[0]
        if r.key:
            key_points = pts
        else:
            kept = [j for j in range(pts.shape[0]) if j not in gone]
            if kept:
                err = (pts[kept] - truth(key_points[kept], r.index)).norm(dim=-1).mean()
                row["track_px"] = float(err)
            row["kept_strokes"] = len(kept)
            row["flicker"] = mean_abs(img, prev_img)
        prev_img = img
        if r.index in subset or r.index == subset[0] - 1:
            renders[r.index] = img
        if keep_frames:
            shown.append(img)
        per_frame.append(row)
        c_mark = time.process_time()
        print(
            f"  {motion} {r.index:2d} loss {r.loss:.4f} moved {r.moved:.3f} track {row.get('track_px', 0):.3f} "
            f"{r.seconds:.2f}s repl {r.replaced}",
            file=sys.stderr,
            flush=True,
        )
    video_wall = time.perf_counter() - t0

    s, v = video_settings(None, None, preset="fast", **common, **video_kw)
    judge = _FrameObjective(s, v, torch.device("cpu"))
    ind = []
    for i in subset:
        t1, c1 = time.perf_counter(), time.process_time()
        res = sketch(frames[i], preset="fast", **common)
        secs, cpu = time.perf_counter() - t1, time.process_time() - c1
        loss = float(judge.build(res.target).evaluate(res.frame_strokes)[0])
        ind.append(dict(index=i, seconds=secs, cpu_s=cpu, loss=loss, img=render(res.strokes).image[0].float()))
        print(f"  {motion} independent {i} loss {loss:.4f} {secs:.2f}s", file=sys.stderr, flush=True)

    rest = [f for f in per_frame if not f["key"]]
    by = {f["index"]: f for f in per_frame}
    vid_flicker = [mean_abs(renders[i], renders[i - 1]) for i in subset[1:]]
    ind_flicker = [mean_abs(b["img"], a["img"]) for a, b in zip(ind[:-1], ind[1:])]

    def jitter(now, before, i):  # what changed beyond the true motion: the previous render moved onto this one
        moved, inside = follow(before, i)
        return float((now - moved).abs().mean(0)[inside].mean())

    vid_jitter = [jitter(renders[i], renders[i - 1], i) for i in subset[1:]]
    ind_jitter = [jitter(b["img"], a["img"], b["index"]) for a, b in zip(ind[:-1], ind[1:])]
    loss_ratio = [by[d["index"]]["loss"] / d["loss"] for d in ind]
    still_s = statistics.mean(d["seconds"] for d in ind)
    tracks = [f["track_px"] for f in rest if "track_px" in f]
    out = dict(
        motion=motion,
        photo=photo,
        frames=n,
        video_wall_s=video_wall,
        key_s=per_frame[0]["seconds"],
        frame_s=statistics.mean(f["seconds"] for f in rest),
        still_s=still_s,
        cost=statistics.mean(f["seconds"] for f in rest) / still_s,
        # CPU seconds (both threads' work): steadier than wall seconds on a machine others share
        frame_cpu_s=statistics.mean(f["cpu_s"] for f in rest),
        still_cpu_s=statistics.mean(d["cpu_s"] for d in ind),
        cost_cpu=statistics.mean(f["cpu_s"] for f in rest) / statistics.mean(d["cpu_s"] for d in ind),
        load=statistics.mean(f["load"] for f in per_frame),
        track_px=statistics.mean(tracks) if tracks else None,
        track_last_px=tracks[-1] if tracks else None,
        moved_px=statistics.mean(f["moved"] for f in rest),
        replaced=sorted(gone),
        jitter_video=statistics.mean(vid_jitter),
        jitter_independent=statistics.mean(ind_jitter),
        jitter=statistics.mean(vid_jitter) / statistics.mean(ind_jitter) if statistics.mean(ind_jitter) > 0 else None,
        flicker_video=statistics.mean(vid_flicker),
        flicker_independent=statistics.mean(ind_flicker),
        # identical frames (the static clip) give identical independent sketches (one seed): no ratio
        flicker=statistics.mean(vid_flicker) / statistics.mean(ind_flicker)
        if statistics.mean(ind_flicker) > 0
        else None,
        loss_ratio=loss_ratio,
        loss_ratio_mean=statistics.mean(loss_ratio),
        loss_key=per_frame[0]["loss"],
        independent=[{k: x for k, x in d.items() if k != "img"} for d in ind],
        per_frame=per_frame,
    )
    if keep_frames:
        out["_shown"] = shown
        out["_frames"] = frames
    return out


# --------------------------------------------------------------------------- the GIF for the docs


def write_gif(frames, shown, path: Path, side: int = 160, step: int = 2) -> Path:
    """Input frame | sketch frame, every ``step``-th frame at ``side`` px, as a looping GIF."""
    import numpy as np
    from PIL import Image

    pics = []
    for i in range(0, len(frames), step):
        a = Image.fromarray(frames[i]).resize((side, side), Image.LANCZOS)
        sk = (shown[i].clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        b = Image.fromarray(sk).resize((side, side), Image.LANCZOS)
        both = Image.new("RGB", (2 * side + 4, side), (255, 255, 255))
        both.paste(a, (0, 0))
        both.paste(b, (side + 4, 0))
        pics.append(both.quantize(colors=64, method=Image.MEDIANCUT, dither=Image.Dither.NONE))
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=125 * step, loop=0, optimize=True)
    return path


# --------------------------------------------------------------------------- table


def verdict(value, goal, le=True) -> str:
    if value is None:
        return "-"
    return "met" if (value <= goal if le else value < goal) else "not met"


def table_rows(rep: dict):
    rows = []
    for group in rep["groups"]:
        lab = group["label"]
        for c in group["clips"]:
            m = c["motion"]
            tag = f"{lab}, {m} ({c['photo']}, {c['frames']} frames)"
            if m in ("pan", "zoom", "rotation"):
                goal = f"< {GOALS['track_px']:g} px" if m != "rotation" else "(none)"
                ok = verdict(c["track_px"], GOALS["track_px"], le=False) if m != "rotation" else "-"
                rows.append(
                    [
                        tag,
                        "tracking error (mean / last frame)",
                        goal,
                        f"{c['track_px']:.2f} / {c['track_last_px']:.2f} px",
                        ok,
                    ]
                )
            if m == "static":
                rows.append(
                    [
                        tag,
                        "control-point movement per frame",
                        f"< {GOALS['static_px']:g} px",
                        f"{c['moved_px']:.3f} px",
                        verdict(c["moved_px"], GOALS["static_px"], le=False),
                    ]
                )
            ratio = "-" if c["flicker"] is None else f"{c['flicker']:.3f}"
            rows.append(
                [
                    tag,
                    "flicker vs independent sketches",
                    f"<= {GOALS['flicker']:g}",
                    f"{ratio} ({c['flicker_video']:.4f} / {c['flicker_independent']:.4f})",
                    verdict(c["flicker"], GOALS["flicker"]),
                ]
            )
            if m != "static" and c.get("jitter_video") is not None:
                jr = "-" if c["jitter"] is None else f"{c['jitter']:.3f}"
                rows.append(
                    [
                        tag,
                        "flicker beyond the true motion vs independent",
                        f"<= {GOALS['flicker']:g}",
                        f"{jr} ({c['jitter_video']:.4f} / {c['jitter_independent']:.4f})",
                        verdict(c["jitter"], GOALS["flicker"]),
                    ]
                )
            rows.append(
                [
                    tag,
                    "cost per frame vs a still sketch",
                    f"<= {GOALS['cost']:g}",
                    f"{c['cost']:.3f} ({c['frame_s']:.2f} s / {c['still_s']:.2f} s); CPU time {c.get('cost_cpu', float('nan')):.3f}",
                    verdict(c["cost"], GOALS["cost"]),
                ]
            )
            worst = max(c["loss_ratio"])
            rows.append(
                [
                    tag,
                    "loss vs independent sketch (mean, worst)",
                    f"<= {1 + GOALS['loss']:g}",
                    f"{c['loss_ratio_mean']:.3f}, {worst:.3f}",
                    verdict(worst, 1 + GOALS["loss"]),
                ]
            )
    return rows


def print_table(rep: dict) -> None:
    for g in rep["groups"]:
        print(f"- {g['label']}: {g['describe']}")
    print()
    print(markdown_table(["clip", "measure", "goal", "measured", "goal met"], table_rows(rep), align="lllll"))


# --------------------------------------------------------------------------- driver


def _video_defaults(video_kw: dict) -> dict:
    """The video settings a run used (the defaults with ``video_kw`` on top), for the results file."""
    import dataclasses

    from clipasso.settings import VideoSettings

    return dataclasses.asdict(VideoSettings().replace(**video_kw))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("trace", "clip"), default=None)
    ap.add_argument("--frames", type=int, default=48, help="frames per clip, trace loss")
    ap.add_argument("--iterations", type=int, default=300, help="key-frame iterations, trace loss")
    ap.add_argument("--independent", type=int, default=6, help="frames at the clip's end sketched on their own")
    ap.add_argument("--strokes", type=int, default=16)
    ap.add_argument("--clip-frames", type=int, default=8)
    ap.add_argument("--clip-iterations", type=int, default=50)
    ap.add_argument("--clip-independent", type=int, default=3)
    ap.add_argument("--clip-motions", default="static,pan", help="the clips run with the random CLIP models")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--example", action="store_true", help="only write docs/video_example.gif (the trace run writes it too)"
    )
    ap.add_argument("--gif", default=str(EXAMPLE), help="where the example GIF goes (default docs/video_example.gif)")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument(
        "--temporal-weight", type=float, default=None, help="override the temporal weight (default: the setting's)"
    )
    args = ap.parse_args()
    name = "video_cpu_quick" if args.quick else "video_cpu"
    if args.table_only:
        print_table(read_results(name))
        return
    import torch

    torch.manual_seed(0)
    if args.quick:
        args.frames, args.iterations, args.independent = 4, 20, 2
        args.clip_frames, args.clip_iterations, args.clip_independent = 3, 10, 2
    trace_kw = dict(
        loss="trace",
        strokes=args.strokes,
        background_removal=False,
        saliency="none",
        framing="stretch",
        seeds=1,
        device="cpu",
        allow_download=False,
    )
    video_kw = {} if args.temporal_weight is None else dict(temporal_weight=args.temporal_weight)
    if args.example:
        c = run_clip("pan", "chelsea", args.frames, 2, dict(trace_kw, iterations=args.iterations), video_kw, True)
        path = write_gif(c["_frames"], c["_shown"], Path(args.gif))
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")
        return

    prior = None
    if args.only:
        try:
            prior = read_results(name)
        except FileNotFoundError:
            prior = None
    groups = {g["key"]: g for g in (prior or {}).get("groups", [])}
    if args.only in (None, "trace"):
        kw = dict(trace_kw, iterations=args.iterations)
        clips = []
        for m, p in CLIPS:  # the pan clip's frames also make docs/video_example.gif
            c = run_clip(m, p, args.frames, args.independent, kw, video_kw, keep_frames=m == "pan")
            if m == "pan" and not args.quick:
                write_gif(c["_frames"], c["_shown"], Path(args.gif))
            clips.append({k: x for k, x in c.items() if not k.startswith("_")})
        groups["trace"] = dict(
            key="trace",
            label="trace",
            describe=(
                f"weights-free trace loss, {args.strokes} strokes, {args.iterations} key-frame iterations, "
                f"{max(1, round(args.iterations / 10))} per frame, {args.frames} frames, best of 1"
            ),
            settings=dict(kw, **video_kw, video=_video_defaults(video_kw)),
            clips=clips,
        )
    if args.only in (None, "clip"):
        from bench.scene import write_models

        with tempfile.TemporaryDirectory() as folder:
            what = write_models(folder, args.quick)
            kw = dict(
                strokes=args.strokes,
                background_removal=False,
                framing="stretch",
                seeds=1,
                device="cpu",
                allow_download=False,
                models_dir=folder,
                iterations=args.clip_iterations,
            )
            motions = [c for c in CLIPS if c[0] in args.clip_motions.split(",")]
            clips = [run_clip(m, p, args.clip_frames, args.clip_independent, kw, video_kw) for m, p in motions]
        groups["clip"] = dict(
            key="clip",
            label="CLIP",
            describe=(
                f"{what}; clip-attention saliency; {args.strokes} strokes, {args.clip_iterations} key-frame "
                f"iterations, {max(1, round(args.clip_iterations / 10))} per frame, {args.clip_frames} frames, best of 1"
            ),
            settings={
                k: x for k, x in dict(kw, **video_kw, video=_video_defaults(video_kw)).items() if k != "models_dir"
            },
            clips=clips,
        )
    rep = dict(
        command="python " + " ".join(["bench/video.py", *sys.argv[1:]]),
        goals=GOALS,
        groups=[groups[k] for k in ("trace", "clip") if k in groups],
    )
    path = write_results(name, rep, machine())
    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    print_table(rep)


if __name__ == "__main__":
    main()
