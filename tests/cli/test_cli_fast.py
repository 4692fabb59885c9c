"""The command line answers help and refuses bad options and paths before it imports torch (each case runs in
a fresh interpreter, which then reports the heavy modules it loaded); `clipasso report` on SIGTERM writes the
report of the sketches done so far and exits 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
HEAVY = ("torch", "numpy", "PIL", "open_clip", "matplotlib", "onnxruntime", "clipasso.strokes")

# runs clipasso.cli.main(argv) and then prints, as its last stderr line, the exit status and the heavy modules loaded
WRAPPER = """
import json, sys
from clipasso.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print("@@" + json.dumps({"rc": rc, "heavy": [m for m in %r if m in sys.modules]}), file=sys.stderr)
""" % (HEAVY,)


def _cli(*argv, cwd=None):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *map(str, argv)], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=120
    )
    seconds = time.perf_counter() - t0
    head, _, last = proc.stderr.rstrip().rpartition("\n")
    assert last.startswith("@@"), proc.stderr
    info = json.loads(last[2:])
    return info["rc"], info["heavy"], proc.stdout, head, seconds


@pytest.fixture
def folder(tmp_path):
    img = Image.new("RGB", (96, 80), "white")
    ImageDraw.Draw(img).ellipse((20, 15, 76, 65), outline="black", width=4)
    img.save(tmp_path / "photo.png")
    (tmp_path / "adir").mkdir()
    return tmp_path


HELP = [
    (["--help"], "download-weights"),
    (["sketch", "--help"], "usage: clipasso sketch"),
    (["batch", "--help"], "usage: clipasso batch"),
    (["report", "--help"], "usage: clipasso report"),
    (["download-weights", "--help"], "usage: clipasso download-weights"),
]

# (argv with {d} = a folder holding photo.png and adir/, message on stderr); every one exits 2
USAGE = [
    (["sketch", "--strokes", "0", "x.jpg"], "--strokes must be at least 1"),
    (["sketch", "{d}/photo.png", "--bogus"], "unrecognized arguments: --bogus"),
    (["sketch", "--framing", "crop"], "invalid choice: 'crop'"),
    (["sketch", "--lr", "fast"], "invalid float value: 'fast'"),
    (["sketch", "{d}/photo.png", "-o", "{d}/out.png"], "-o must name a .svg file"),
    (["sketch", "{d}/photo.png", "-o", "{d}/adir"], "-o names a folder"),
    (["sketch", "{d}/photo.png", "-o", "{d}/missing/out.svg"], "does not exist; create it first"),
    (["sketch", "{d}/photo.png", "--gif", "{d}/a.png"], "--gif must name a .gif file"),
    (["sketch", "{d}/photo.png", "-o", "{d}/photo.svg", "--png", "{d}/photo.png"], "is the input file"),
    (["sketch", "{d}/nothere.jpg"], "input image not found"),
    (["sketch", "{d}/adir"], "is a folder, not an image file"),
    (["report", "{d}/photo.png", "-o", "{d}/g.svg"], "-o must name a .png file"),
    (["report", "{d}/photo.png", "--strokes", "0"], "--strokes must be at least 1"),
    (["report", "{d}/nothere.jpg"], "input image not found"),
    (["batch", "{d}/photo.png", "-o", "{d}/out", "--seeds", "0"], "--seeds must be at least 1"),
    (["batch", "{d}/nothere", "-o", "{d}/out"], "input not found"),
    (["download-weights", "--models-dir", "{d}/photo.png"], "this is a file, not a folder"),
    ([], "usage: clipasso"),
]


@pytest.mark.parametrize("argv,message", HELP, ids=[" ".join(a) for a, _ in HELP])
def test_help_imports_no_torch(argv, message):
    rc, heavy, out, err, _ = _cli(*argv)
    assert rc == 0, err
    assert message in out
    assert heavy == [], heavy


@pytest.mark.parametrize("argv,message", USAGE, ids=[" ".join(a).replace("{d}/", "") for a, _ in USAGE])
def test_usage_errors_are_refused_before_torch(folder, argv, message):
    rc, heavy, out, err, _ = _cli(*[a.replace("{d}", str(folder)) for a in argv], cwd=folder)
    assert rc == 2, err
    assert message in err
    assert "Traceback" not in err
    assert heavy == [], (heavy, err)
    assert sorted(p.name for p in folder.iterdir()) == ["adir", "photo.png"]  # nothing written


def test_module_entry_point_help_imports_no_torch():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "clipasso", "sketch", "--help"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: clipasso sketch" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "clipasso.cli" in imported  # the import log is there
    assert not imported & {"torch", "numpy", "PIL"}


def test_real_work_does_import_torch(folder):
    # the other side of the tests above: once the checks pass, the wrapper sees the engine loaded
    rc, heavy, out, err, _ = _cli(
        "report",
        folder / "photo.png",
        "-o",
        folder / "g.png",
        "--strokes",
        "1",
        "--iterations",
        "1",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--no-background-removal",
        cwd=folder,
    )
    assert rc == 0, err
    assert "torch" in heavy and "matplotlib" in heavy
    assert (folder / "g.png").is_file()


def test_the_light_names_are_the_engine_names():
    from clipasso.models import MODELS_DIR_ENV
    from clipasso.pipeline import EXAMPLE_IMAGE
    from clipasso.prepare import files, images
    from clipasso.report import EXAMPLE_IMAGE as REPORT_EXAMPLE
    from clipasso.settings import MODELS_DIR_ENV as SETTINGS_ENV

    assert REPORT_EXAMPLE == EXAMPLE_IMAGE and EXAMPLE_IMAGE.is_file()
    assert MODELS_DIR_ENV == SETTINGS_ENV == "CLIPASSO_MODELS_DIR"
    assert images.ImageError is files.ImageError and images.check_image_path is files.check_image_path


def test_report_sigterm_writes_what_is_done_and_exits_143(tmp_path):
    pictures = []
    for name in ("blob", "second"):
        img = Image.new("RGBA", (120, 100), (0, 0, 0, 0))
        ImageDraw.Draw(img).ellipse([20, 15, 100, 85], fill=(40, 40, 40, 255))
        img.save(tmp_path / f"{name}.png")
        pictures.append(str(tmp_path / f"{name}.png"))
    png, md = tmp_path / "g.png", tmp_path / "r.md"
    png.write_bytes(b"previous")  # replaced whole, never truncated in place
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clipasso",
            "report",
            *pictures,
            "-o",
            str(png),
            "--markdown",
            str(md),
            "--strokes",
            "2",
            "3",
            "4",
            "5",
            "--iterations",
            "12",
            "--seeds",
            "1",
            "--device",
            "cpu",
            "--no-background-removal",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=str(tmp_path),
    )
    try:
        seen = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("report: blob, 2 strokes"):  # the first sketch is done, the second under way
                break
        assert any(s.startswith("report: blob, 2 strokes") for s in seen), "".join(seen)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = "".join(seen) + stderr
    assert proc.returncode == 143, (proc.returncode, stderr)
    assert "SIGTERM: stopping" in stderr and "Traceback" not in stderr
    assert "stopped by SIGTERM" in stdout and f"report: {png}" in stdout
    with Image.open(png) as im:  # the grid of what was done
        im.load()
        assert im.size[0] > 400
    text = md.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| blob |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "blob" and "/" in cells[1] and "stopped" not in cells[1]  # 2 strokes: F / loss, whole
    assert "stopped at iteration" in cells[2] or cells[2] == "not done"  # 3 strokes: cut short (or not begun)
    assert cells[3] == cells[4] == "not done"  # 4 and 5 strokes never started
    assert "| second |" not in text  # the second picture was never started
    assert "Stopped by SIGTERM after" in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".clipasso-")]
