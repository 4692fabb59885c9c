"""``clipasso video INPUT -o OUT.svg``: a clip sketched with the same strokes in every frame.

INPUT is a video file (MP4, WebM, MOV, MKV, AVI, GIF; decoded with PyAV, the optional extra ``video``), a
folder of frames or a glob pattern of frames. Outputs: one animated SVG (every path's ``d`` animated over
the frames), and optionally the rendered frames as MP4 / WebM (``--mp4``) and GIF (``--gif``), and a folder
with each frame's SVG and PNG (``--frames-dir``), which is also what ``--resume`` goes on from.

Frames are read, sketched and written one at a time (`clipasso.video.sketch_video`): memory stays flat
in the clip's length. Ctrl+C (once) or SIGTERM stop after the frame being sketched and write every output
with the frames done so far (exit status 0 after Ctrl+C, 143 after SIGTERM).
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from pathlib import Path
from typing import List

VIDEO_DESCRIPTION = (
    "Sketch every frame of INPUT (a video file, a folder of frames or a glob pattern of frames) with the same "
    "strokes: the first frame is a whole CLIPasso sketch, each next frame starts from the previous frame's "
    "strokes moved by the optical flow and refines them for --frame-iterations steps with a temporal term that "
    "keeps them where the motion took them. Writes one animated SVG (-o), and on request the rendered frames as "
    "a video (--mp4) or GIF (--gif) and each frame's SVG and PNG (--frames-dir, which --resume continues from). "
    "Frames are streamed: memory does not grow with the clip. Every option of `clipasso sketch` applies to each "
    "frame; the preset defaults to fast."
)
FRAME_NAME = "frame_{:05d}"
FRAME_SVG = re.compile(r"frame_(\d{5,})\.svg\Z")


def add_video_parser(sub) -> argparse.ArgumentParser:
    from ..settings import PRESET_HELP, PRESET_NAMES, VideoSettings
    from .options import add_field_argument, add_settings_arguments

    vp = sub.add_parser(
        "video", help="sketch a video clip into an animated SVG (and MP4 / GIF)", description=VIDEO_DESCRIPTION
    )
    vp.add_argument(
        "input", metavar="INPUT", help="video file (mp4, webm, mov, mkv, avi, gif), folder or glob of frames"
    )
    vp.add_argument(
        "-o", "--output", metavar="OUT.svg", help="animated SVG to write (default: <input name>_sketch.svg)"
    )
    vp.add_argument(
        "--mp4", metavar="OUT.mp4", help="also write the sketch frames as a video (.mp4, .webm, .mov, .mkv)"
    )
    vp.add_argument("--gif", metavar="OUT.gif", help="also write the sketch frames as an animated GIF")
    vp.add_argument(
        "--frames-dir", metavar="DIR", help="also write each frame's SVG and PNG there (frame_00000.svg, ...)"
    )
    vp.add_argument(
        "--resume",
        action="store_true",
        help="go on from the frames already in --frames-dir (the same INPUT and options as the run that wrote them)",
    )
    vp.add_argument(
        "--frame-size",
        type=int,
        metavar="N",
        help="long side of the rendered frames in pixels (default 2x the canvas, 448)",
    )
    clip = vp.add_argument_group("the clip")
    clip.add_argument("--fps", type=float, metavar="F", help="frames per second to sketch (default the clip's own)")
    clip.add_argument("--start", type=float, default=0.0, metavar="S", help="seconds of the clip to skip first")
    clip.add_argument("--duration", type=float, metavar="S", help="seconds of the clip to sketch (default all)")
    clip.add_argument("--max-frames", type=int, metavar="N", help="at most this many frames")
    group = vp.add_argument_group("video")
    import dataclasses

    for f in dataclasses.fields(VideoSettings):
        add_field_argument(group, f, f.metadata["option"].help.replace("video: ", "", 1).replace("%", "%%"))
    vp.add_argument("--preset", choices=list(PRESET_NAMES), default="fast", help=PRESET_HELP)
    add_settings_arguments(vp)
    vp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return vp


def _video_settings(args, parser):
    from ..settings import SettingsError, VideoSettings

    try:
        return VideoSettings(
            **{
                k: getattr(args, k)
                for k in ("frame_iterations", "temporal_weight", "flow", "frame_lr")
                if getattr(args, k) is not None
            }
        ).validate(label=lambda n: "--" + n.replace("_", "-"))
    except SettingsError as exc:
        parser.error(str(exc))


def _done_frames(folder: Path) -> List[int]:
    found = sorted(int(m.group(1)) for p in folder.iterdir() if (m := FRAME_SVG.match(p.name)))
    done = []
    for i in found:  # the frames 0..k written without a gap
        if i != len(done):
            break
        done.append(i)
    return done


def run_video(args, parser) -> int:
    from ..errors import ClipassoError
    from ..output.paths import OutputPathError, check_output_paths
    from .options import ProgressBar, fmt_time, settings_or_usage_error, sigterm_stop, signal_handlers
    from . import EXIT_ERROR, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE

    settings = settings_or_usage_error(args, parser)
    video = _video_settings(args, parser)
    if args.frame_size is not None and not (16 <= args.frame_size <= 4096):
        parser.error(f"--frame-size must be 16..4096 pixels; got {args.frame_size}")
    if args.resume and not args.frames_dir:
        parser.error("--resume goes on from the frames in --frames-dir; give --frames-dir DIR")
    stem = Path(args.input.rstrip("/")).stem.replace("*", "") or "clip"
    out_svg = Path(args.output) if args.output else Path(f"{stem}_sketch.svg")
    try:
        check_output_paths(
            [
                ("-o", str(out_svg), (".svg",), "-o writes the animated SVG; the frames go to --mp4 / --gif"),
                ("--mp4", args.mp4, (".mp4", ".webm", ".mov", ".mkv", ".m4v"), ""),
                ("--gif", args.gif, (".gif",), ""),
            ],
            [args.input],
        )
    except OutputPathError as exc:
        print(f"clipasso: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    frames_dir = Path(args.frames_dir) if args.frames_dir else None
    if frames_dir is not None:
        if frames_dir.exists() and not frames_dir.is_dir():
            print(f"clipasso: error: --frames-dir {frames_dir} is a file; give a folder", file=sys.stderr)
            return EXIT_USAGE
        frames_dir.mkdir(parents=True, exist_ok=True)
        if not args.resume and _done_frames(frames_dir):
            print(
                f"clipasso: error: {frames_dir} already holds sketched frames; add --resume to go on from them, or "
                "give an empty folder",
                file=sys.stderr,
            )
            return EXIT_USAGE

    if not any(c in args.input for c in "*?[") and not Path(args.input).exists():
        print(
            f"clipasso: error: input clip not found: {args.input}; give a video file, a folder or a glob of frames",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from ..video.io import open_clip_source

    errors = (ClipassoError, ValueError, FileNotFoundError, RuntimeError, OSError)
    try:
        source = open_clip_source(
            args.input, fps=args.fps, start=args.start, duration=args.duration, max_frames=args.max_frames
        )
    except errors as exc:
        print(f"clipasso: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    info = source.info
    stop = {"requested": False, "terminated": False}

    def on_sigint(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print(
            "\nclipasso: stopping after this frame and writing the frames done (Ctrl+C again to abort)...",
            file=sys.stderr,
        )

    on_sigterm = sigterm_stop(stop, "stopping after this frame and writing the frames done...")
    with source, signal_handlers({signal.SIGINT: on_sigint, signal.SIGTERM: on_sigterm}):
        try:
            code, lines = _run(args, settings, video, source, info, out_svg, frames_dir, stop, ProgressBar, fmt_time)
        except errors as exc:
            if getattr(args, "debug", False):
                import traceback

                traceback.print_exception(type(exc), exc, exc.__traceback__)
            print(f"\nclipasso: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    print("\n".join(lines), flush=True)
    if code != EXIT_OK:
        return code
    return EXIT_TERMINATED if stop.get("terminated") else EXIT_OK


def _run(args, settings, video, source, info, out_svg, frames_dir, stop, ProgressBar, fmt_time):
    import time

    import torch

    from ..output.animation import write_video_svg
    from ..output.svg import read_svg, write_svg
    from ..render.raster import render
    from ..video import sketch_video, total_steps
    from ..video.io import VideoWriter
    from . import EXIT_ERROR, EXIT_OK

    t0 = time.perf_counter()
    done: List[int] = _done_frames(frames_dir) if (frames_dir is not None and args.resume) else []
    if done and len(done) >= info.frames:
        done = done[: info.frames]
    shown = [read_svg(frames_dir / (FRAME_NAME.format(i) + ".svg")) for i in done]
    n_new = info.frames - len(done)
    bar = ProgressBar(total_steps(settings, video, n_new, key=not done) if n_new else 1, enabled=not args.quiet)

    def progress(step, losses, image):
        best = float(torch.nan_to_num(losses["best"], nan=float("inf")).min())
        bar.update(step, best)

    long_side = args.frame_size or 2 * int(settings.canvas)
    writers = []
    for path in (args.mp4, args.gif):
        if path:
            writers.append(VideoWriter(path, info.fps, keep_partial=True))

    def frame_size(strokes):
        h, w = strokes.canvas
        k = long_side / max(h, w)
        return max(2, round(h * k)), max(2, round(w * k))

    def emit(strokes, index, write_files: bool):
        image = None
        if writers or (frames_dir is not None and write_files):
            with torch.no_grad():
                image = render(strokes, size=frame_size(strokes)).image[0].cpu()
        for wr in writers:
            wr.write(image)
        if frames_dir is not None and write_files:
            from ..atomic import save_image_atomic
            from ..prepare.images import to_pil

            write_svg(strokes, frames_dir / (FRAME_NAME.format(index) + ".svg"))
            save_image_atomic(to_pil(image), frames_dir / (FRAME_NAME.format(index) + ".png"))

    results = []
    failed = None
    try:
        for i, sk in zip(done, shown):
            emit(sk, i, False)
        resume = None
        items = iter(source)
        if done:
            last = done[-1]
            prev_image = None
            for k, _sec, image in items:
                if k == last:
                    prev_image = image
                    break
            if prev_image is None:
                raise ValueError(f"the clip has no frame {last}; --resume needs the INPUT and options of the first run")
            resume = (prev_image, shown[-1])
        if n_new > 0:
            for fr in sketch_video(
                items,
                settings.replace(callback_interval=1),
                video,
                resume=resume,
                first_index=len(done),
                callback=progress,
                should_stop=lambda: stop["requested"],
            ):
                emit(fr.strokes, fr.index, True)
                shown.append(fr.strokes)
                results.append(fr)
                if fr.cancelled:
                    break
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - write what is done, then report
        failed = exc
    finally:
        bar.close()
        written = []
        for wr in writers:
            try:
                if shown:
                    written.append(str(wr.close()))
                else:
                    wr._abort()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        if shown:
            write_video_svg(shown, out_svg, info.fps)
    if failed is not None and not shown:
        raise failed
    lines = [f"video: {out_svg}" + (" and " + ", ".join(written) if written else "")]
    lines.append(
        f"  {len(shown)} of {info.frames} frames ({info.width}x{info.height}, {info.fps:g} fps) from {info.source}"
        + (f"; {len(done)} resumed from {frames_dir}" if done else "")
    )
    key = [r for r in results if r.key]
    rest = [r for r in results if not r.key]
    if key:
        k = key[0]
        lines.append(f"  key frame {k.index}: loss {k.loss:.4f}, {k.iterations} iterations, {fmt_time(k.seconds)}")
    if rest:
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        lines.append(
            f"  frames: {len(rest)} warm-started, {rest[0].iterations} steps each, mean loss {mean([r.loss for r in rest]):.4f}, "
            f"mean movement {mean([r.moved for r in rest]):.2f} px/frame (flow {mean([r.flow_shift for r in rest]):.2f}), "
            f"{mean([r.seconds for r in rest]):.2f} s/frame"
        )
        again = sum(len(r.replaced) for r in rest)
        if again:
            lines.append(f"  {again} stroke(s) placed again after the motion carried them off the canvas")
    if frames_dir is not None:
        lines.append(f"  frames: {frames_dir}/frame_NNNNN.svg and .png")
    lines.append(f"  time: {fmt_time(time.perf_counter() - t0)}")
    if failed is not None:
        lines.append(f"  error after {len(shown)} frames: {failed}; the frames done are written (go on with --resume)")
        return EXIT_ERROR, lines
    if len(shown) < info.frames:
        lines.append(
            f"  stopped: {len(shown)} frames written; go on with --resume --frames-dir DIR"
            if frames_dir
            else f"  stopped: {len(shown)} frames written"
        )
    return EXIT_OK, lines


__all__ = ["add_video_parser", "run_video"]
