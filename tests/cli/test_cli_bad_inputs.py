"""Bad options and output paths of the command line: each is refused before any work starts, with a
message that says what to do, exit status 2, nothing written and the input untouched. Also: engine
errors without tracebacks (--debug shows them), atomic outputs and SIGTERM writing the best sketch."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from clipasso.cli import EXIT_TERMINATED, LIMITS, main

ROOT = Path(__file__).resolve().parents[2]
QUICK = [
    "--loss",
    "trace",
    "--saliency",
    "mask",
    "--no-background-removal",
    "--device",
    "cpu",
    "--offline",
    "-q",
    "--iterations",
    "2",
    "--strokes",
    "4",
    "--seeds",
    "1",
]


@pytest.fixture
def work(tmp_path):
    img = Image.new("RGB", (96, 80), "white")
    ImageDraw.Draw(img).ellipse((20, 15, 76, 65), outline="black", width=4)
    photo = tmp_path / "photo.png"
    img.save(photo)
    (tmp_path / "adir").mkdir()
    (tmp_path / "link.png").symlink_to(photo)
    (tmp_path / "dangling.svg").symlink_to(tmp_path / "nowhere" / "x.svg")
    os.mkfifo(tmp_path / "pipe.svg")
    (tmp_path / "loop_a.png").symlink_to(tmp_path / "loop_b.png")
    (tmp_path / "loop_b.png").symlink_to(tmp_path / "loop_a.png")
    return tmp_path


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _svgs(folder: Path):
    return sorted(p.name for p in folder.rglob("*.svg") if p.is_file() and not p.is_symlink())


# (name, extra argv with {d} = the work folder, message that must appear)
SKETCH_CASES = [
    ("png named .svg", ["--png", "{d}/out.svg"], "--png must name a .png file"),
    ("png named .txt", ["--png", "{d}/out.txt"], "--png must name a .png file"),
    ("png without extension", ["--png", "{d}/out"], "(no extension)"),
    ("png is a folder", ["--png", "{d}/adir"], "--png names a folder"),
    ("png ends in a slash", ["--png", "{d}/newdir/"], "--png names a folder"),
    ("-o is a folder", ["-o", "{d}/adir"], "-o names a folder"),
    ("-o named .png", ["-o", "{d}/out.png"], "-o must name a .svg file"),
    ("-o folder missing", ["-o", "{d}/missing/out.svg"], "does not exist; create it first"),
    ("-o in an unwritable folder", ["-o", "/sys/out.svg"], "cannot write to the folder"),
    ("-o is not a regular file", ["-o", "{d}/pipe.svg"], "is not a regular file"),
    ("-o is /dev/null", ["-o", "/dev/null"], "must name a .svg file"),
    ("-o broken symlink", ["-o", "{d}/dangling.svg"], "broken symbolic link"),
    ("-o name too long", ["-o", "{d}/" + "x" * 300 + ".svg"], "file name is too long"),
    ("png is the input", ["--png", "{d}/photo.png"], "is the input file"),
    ("png is a link to the input", ["--png", "{d}/link.png"], "is the input file"),
    ("-o and --animated-svg the same", ["--animated-svg", "{d}/same.svg", "-o", "{d}/same.svg"], "name the same file"),
    ("gif named .png", ["--gif", "{d}/anim.png"], "--gif must name a .gif file"),
    ("curve named .txt", ["--order", "--curve", "{d}/curve.txt"], "--curve must name a .json file"),
    ("input is a folder", ["@{d}/adir"], "is a folder"),
    ("input missing", ["@{d}/nope.png"], "input image not found"),
    ("input a symlink loop", ["@{d}/loop_a.png"], "symbolic links form a loop"),
    ("strokes 100000", ["--strokes", "100000"], "--strokes must be at most 1024"),
    ("strokes 0", ["--strokes", "0"], "--strokes must be at least 1"),
    ("strokes negative", ["--strokes", "-3"], "--strokes must be at least 1"),
    ("seeds 1000", ["--seeds", "1000"], "--seeds must be at most 64"),
    ("strokes x seeds", ["--strokes", "1024", "--seeds", "64"], "strokes x seeds must be at most 16384"),
    ("iterations 10 million", ["--iterations", "10000000"], "--iterations must be at most 100000"),
    ("iterations negative", ["--iterations", "-1"], "--iterations must be 0 or more"),
    ("seed negative", ["--seed", "-1"], "--seed must be 0 or more"),
    ("canvas 4096", ["--canvas", "4096"], "--canvas must be at most 1024"),
    ("png-size 16384", ["--png-size", "16384"], "--png-size must be at most 5792"),
    ("lr 1e30", ["--lr", "1e30"], "--lr must be at most 100"),
    ("lr nan", ["--lr", "nan"], "--lr must be a finite number"),
    ("lr inf", ["--lr", "inf"], "--lr must be a finite number"),
    ("lr 0", ["--lr", "0"], "--lr must be above 0"),
    ("lr negative", ["--lr", "-1"], "--lr must be above 0"),
    ("temperature 0", ["--temperature", "0"], "--temperature must be above 0"),
    ("text-weight inf", ["--text", "a cat", "--text-weight", "inf"], "--text-weight must be a finite number"),
    ("max-strokes 5000", ["--auto-strokes", "0.9", "--max-strokes", "5000"], "--max-strokes must be at most 1024"),
]


def _fill(argv, d):
    return [a.replace("{d}", str(d)) for a in argv]


@pytest.mark.parametrize("name, extra, message", SKETCH_CASES, ids=[c[0] for c in SKETCH_CASES])
def test_sketch_refuses_before_any_work(work, capsys, name, extra, message):
    if "/sys/" in " ".join(extra) and not os.path.isdir("/sys"):
        pytest.skip("no /sys on this system")
    photo = work / "photo.png"
    before = _digest(photo)
    positional = [a[1:] for a in extra if a.startswith("@")]  # "@path": the INPUT instead of the photo
    options = [a for a in extra if not a.startswith("@")]
    argv = ["sketch", *(_fill(positional, work) or [str(photo)]), "-o", str(work / "out_default.svg"), *QUICK]
    argv += _fill(options, work)  # a later -o wins over the default one above
    t0 = time.perf_counter()
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2, (name, rc, err)
    assert message in err, (name, err)
    assert "clipasso: error:" in err and "Traceback" not in err
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s: work was done before the check"
    assert _svgs(work) == [], _svgs(work)
    assert not (work / "out_default.svg").exists()
    assert _digest(photo) == before
    assert not [p for p in work.iterdir() if p.name.startswith(".clipasso-")]


def test_unwritable_folder_as_ordinary_user(work, capsys):
    if os.geteuid() == 0:
        pytest.skip("root can write into read-only folders")
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(SystemExit):
            main(["sketch", str(work / "photo.png"), "-o", str(ro / "out.svg"), *QUICK])
    finally:
        ro.chmod(0o700)
    assert "cannot write to the folder" in capsys.readouterr().err


def test_every_bound_is_in_the_one_table_with_a_reason():
    for name, bound in LIMITS.items():
        assert bound.low < bound.high and bound.above, name


REPORT_CASES = [
    ("report -o .svg", ["-o", "{d}/gallery.svg"], "-o must name a .png file"),
    ("report -o is the input", ["-o", "{d}/photo.png"], "is the input file"),
    ("report -o folder", ["-o", "{d}/adir"], "-o names a folder"),
    ("report markdown .txt", ["-o", "{d}/g.png", "--markdown", "{d}/page.txt"], "--markdown must name a .md file"),
    ("report strokes 5000", ["-o", "{d}/g.png", "--strokes", "4", "5000"], "--strokes must be at most 1024"),
    ("report iterations", ["-o", "{d}/g.png", "--iterations", "-5"], "--iterations must be 0 or more"),
    ("report quality json missing", ["-o", "{d}/g.png", "--quality-json", "{d}/q.json"], "--quality-json"),
]


@pytest.mark.parametrize("name, extra, message", REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_report_refuses_before_any_work(work, capsys, name, extra, message):
    photo = work / "photo.png"
    before = _digest(photo)
    t0 = time.perf_counter()
    rc = main(
        ["report", str(photo), "--no-background-removal", "--iterations", "1", *_fill(extra, work)]
        if "--iterations" not in extra
        else ["report", str(photo), *_fill(extra, work)]
    )
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err
    assert elapsed < 1.0
    assert _digest(photo) == before
    assert not list(work.glob("g.png"))


def test_download_weights_refuses_a_file_as_folder(work, capsys):
    rc = main(["download-weights", "--models-dir", str(work / "photo.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "not a folder" in err


def test_engine_errors_have_no_traceback_unless_debug(work, capsys, monkeypatch):
    import clipasso.pipeline as pipeline

    def broken(*a, **k):
        raise KeyError("boom")

    monkeypatch.setattr(pipeline, "sketch", broken)
    argv = ["sketch", str(work / "photo.png"), "-o", str(work / "s.svg"), *QUICK]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "clipasso: error: KeyError: 'boom'" in err and "Traceback" not in err and "--debug" in err
    assert main(argv + ["--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "clipasso: error: KeyError" in err
    assert not (work / "s.svg").exists()


def test_a_broken_image_is_an_error_message(work, capsys):
    bad = work / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rc = main(["sketch", str(bad), "-o", str(work / "b.svg"), *QUICK])
    err = capsys.readouterr().err
    assert rc == 1 and "clipasso: error:" in err and "Traceback" not in err


# --------------------------------------------------------------------------- atomic outputs


def test_atomic_write_keeps_the_old_file_when_the_writer_fails_midway(tmp_path):
    from clipasso.atomic import atomic_open, atomic_path, save_image_atomic, write_text_atomic

    dest = tmp_path / "sketch.svg"
    write_text_atomic(dest, "<svg>good</svg>")
    with pytest.raises(OSError, match="disk full"):
        with atomic_open(dest, "w") as f:
            f.write("<svg>half")
            f.flush()
            raise OSError("disk full")
    assert dest.read_text() == "<svg>good</svg>"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(dest) as tmp:
            tmp.write_text("<svg>half")
            raise KeyboardInterrupt
    assert dest.read_text() == "<svg>good</svg>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sketch.svg"]  # no temporary file left

    png = tmp_path / "s.png"
    save_image_atomic(Image.new("RGB", (8, 8), "red"), png)
    good = png.read_bytes()

    class Exploding:
        def save(self, f, format=None, **options):
            f.write(good[:20])
            raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError):
        save_image_atomic(Exploding(), png)
    assert png.read_bytes() == good
    with Image.open(png) as im:
        assert im.size == (8, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png", "sketch.svg"]
    assert (png.stat().st_mode & 0o777) == (0o666 & ~_umask())


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_sigterm_writes_the_best_sketch_so_far(work):
    from clipasso.output.svg import read_svg

    cut = Image.new("RGBA", (96, 80), (255, 255, 255, 0))  # an object cut out: its alpha is the mask
    ImageDraw.Draw(cut).ellipse((20, 15, 76, 65), fill=(40, 40, 40, 255), outline=(0, 0, 0, 255), width=4)
    cut.save(work / "cut.png")
    out, png = work / "term.svg", work / "term.png"
    out.write_text("previous")  # replaced whole, never truncated in place
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clipasso",
            "sketch",
            str(work / "cut.png"),
            "-o",
            str(out),
            "--png",
            str(png),
            "--loss",
            "trace",
            "--saliency",
            "mask",
            "--no-background-removal",
            "--iterations",
            "100000",
            "--strokes",
            "4",
            "--seeds",
            "1",
            "--device",
            "cpu",
            "--offline",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(work),
    )
    try:
        deadline = time.monotonic() + 240
        seen = []
        while time.monotonic() < deadline:  # not a terminal: the first progress line comes at iteration 1
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("[") and "/100000" in line:
                break
        assert any("/100000" in s for s in seen), "".join(seen)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
        stopped = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_TERMINATED, (proc.returncode, "".join(seen) + stderr)
    assert "SIGTERM" in stderr and "stopped by SIGTERM" in stdout and "Traceback" not in stderr
    assert stopped < 30
    strokes = read_svg(out)
    assert strokes.num_strokes == 4
    with Image.open(png) as im:
        im.load()
    assert not [p for p in work.iterdir() if p.name.startswith(".clipasso-")]


def test_the_largest_png_size_the_cli_allows_can_be_rendered():
    from clipasso.cli import LIMITS
    from clipasso.render.raster import MAX_RENDER_PIXELS

    side = LIMITS["png_size"].high
    assert side * side <= MAX_RENDER_PIXELS < (side + 1) * (side + 1)
