"""`clipasso batch INPUT... -o OUT_DIR [any sketch option]`: a folder or a dataset (`clipasso.batch`)."""

from __future__ import annotations

import signal
import sys
import time

from .options import (
    log_compile_to_stderr,
    ProgressBar,
    add_settings_arguments,
    flag_of,
    fmt_time,
    settings_or_usage_error,
    signal_handlers,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM


def add_batch_parser(sub) -> None:
    from ..settings import PRESET_HELP, PRESET_NAMES

    bp = sub.add_parser(
        "batch",
        help="sketch many pictures (files, folders, globs) into a folder, with a manifest and resume",
        description="Sketch every picture of INPUT (files, folders, glob patterns) with the same options as "
        "`clipasso sketch`. Each picture becomes OUT_DIR/<its path relative to its folder>.svg (and "
        ".png with --png), written atomically, plus one line in OUT_DIR/manifest.jsonl (input, "
        "outputs, status ok/error/skipped, loss, seed, iterations, seconds, error, settings hash). A "
        "broken picture is recorded and the batch goes on. Running the same command again resumes: "
        "pictures already done with the same settings are skipped (--force redoes them).",
        epilog="exit status: 0 every picture done (or already done); 1 at least one failed (see the manifest); "
        "2 a bad option or input; 130 after Ctrl+C, 143 after SIGTERM (the current picture is recorded "
        "as not finished, so the next run redoes it). Ray: --engine ray runs the pictures on a local Ray, "
        'or on the cluster at --ray-address (pip install -e ".[ray]").',
    )
    bp.add_argument("inputs", nargs="+", metavar="INPUT", help="picture files, folders or glob patterns")
    bp.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="folder for the sketches and the manifest")
    bp.add_argument("--png", action="store_true", help="also write a PNG of every sketch (2x the canvas)")
    bp.add_argument("--png-size", type=int, metavar="N", help="long side of the PNGs in pixels")
    bp.add_argument("-r", "--recursive", action="store_true", help="also sketch the pictures of sub-folders")
    bp.add_argument("--force", action="store_true", help="redo pictures the manifest says are done")
    bp.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process, one picture after another (models loaded once); ray: Ray tasks",
    )
    bp.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="an existing Ray cluster (e.g. ray://head:10001 or auto); default: a local Ray for the run",
    )
    bp.add_argument("--workers", type=int, metavar="N", help="Ray actors (default: one per GPU, else one per CPU)")
    bp.add_argument(
        "--ray-tries",
        type=int,
        metavar="N",
        help="a Ray worker process that dies (killed, out of memory, node gone) is restarted and the "
        "picture it held goes to the next free worker; a picture whose worker died N times is "
        "recorded as an error naming Ray's cause (default 3)",
    )
    bp.add_argument("--preset", choices=list(PRESET_NAMES), default="paper", help=PRESET_HELP)
    add_settings_arguments(bp)
    bp.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def run_batch(args, parser) -> int:
    from ..batch import RAY_TRIES, BatchError, collect_inputs, sketch_many
    from ..errors import ClipassoError

    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.ray_tries is not None and args.ray_tries < 1:
        parser.error("--ray-tries must be at least 1")
    if args.engine != "ray" and (args.ray_address or args.workers or args.ray_tries is not None):
        parser.error("--ray-address, --workers and --ray-tries are for --engine ray")
    settings = settings_or_usage_error(args, parser)
    try:
        collect_inputs(args.inputs, recursive=args.recursive)  # a missing input is a usage error, before any work
    except BatchError as exc:
        parser.error(str(exc))

    stop = {"requested": False, "signal": None}

    def on_signal(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"], stop["signal"] = True, signum
        print("\nclipasso: stopping after this picture's current iteration (again to abort)...", file=sys.stderr)

    bar = {"current": None}
    start = time.perf_counter()
    if not args.quiet:
        log_compile_to_stderr()

    def progress(it, losses, image):
        if bar["current"] is None:
            bar["current"] = ProgressBar(settings.iterations, enabled=not args.quiet)
        import torch

        bar["current"].update(it, float(torch.nan_to_num(losses["best"], nan=float("inf")).min()))

    def on_item(done, total, line):
        if bar["current"] is not None:
            bar["current"].close()
            bar["current"] = None
        if args.quiet:
            return
        what = {
            "ok": f"loss {line['loss']:.4f}" if line.get("loss") is not None else "done",
            "skipped": "already done",
            "error": f"FAILED: {line['error']}",
        }[line["status"]]
        rate = (time.perf_counter() - start) / done
        print(
            f"[{done}/{total}] {line['name']}: {what} ({line['seconds']:.1f} s; ETA {fmt_time(rate * (total - done))})",
            file=sys.stderr,
            flush=True,
        )

    with signal_handlers({signal.SIGINT: on_signal, signal.SIGTERM: on_signal}):
        try:
            result = sketch_many(
                args.inputs,
                args.output,
                settings,
                engine=args.engine,
                png=args.png,
                png_size=args.png_size,
                force=args.force,
                recursive=args.recursive,
                on_item=on_item,
                callback=progress if args.engine == "local" else None,
                should_stop=lambda: stop["requested"],
                ray_address=args.ray_address,
                workers=args.workers,
                ray_tries=args.ray_tries or RAY_TRIES,
            )
        except (ClipassoError, OSError) as exc:
            print(f"clipasso: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    print(f"batch: {result.summary()}; manifest {result.manifest}", flush=True)
    if stop["signal"] is not None:
        return EXIT_TERMINATED if stop["signal"] == signal.SIGTERM else EXIT_INTERRUPTED
    return EXIT_ERROR if result.failed else EXIT_OK


__all__ = ["add_batch_parser", "run_batch", "flag_of"]
