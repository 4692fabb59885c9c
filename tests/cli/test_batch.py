"""`clipasso batch` / `clipasso.batch.sketch_many`: outputs and manifest, resume, a broken picture, a
stopped picture, inputs, and the same batch on a local Ray with 2 CPU workers."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from PIL import Image

from clipasso.batch import BatchError, collect_inputs, read_manifest, settings_hash, sketch_many
from clipasso.cli import main
from clipasso.settings import SketchSettings

QUICK = dict(
    preset="fast", loss="trace", saliency="mask", strokes=4, seeds=1, iterations=8, device="cpu", allow_download=False
)
QUICK_FLAGS = [
    "--preset",
    "fast",
    "--loss",
    "trace",
    "--saliency",
    "mask",
    "--strokes",
    "4",
    "--seeds",
    "1",
    "--iterations",
    "8",
    "--device",
    "cpu",
    "--offline",
    "-q",
]


def _picture(path, seed, size=(72, 96)):
    rng = np.random.default_rng(seed)
    img = np.full(size + (3,), 255, np.uint8)
    y0, x0 = rng.integers(8, 24, 2)
    img[y0 : y0 + 30, x0 : x0 + 40] = rng.integers(0, 120, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture
def pictures(tmp_path):
    root = tmp_path / "in"
    _picture(root / "a.png", 1)
    _picture(root / "b.jpg", 2)
    _picture(root / "deep" / "c.png", 3)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (root / "notes.txt").write_text("not a picture")
    return root


def test_batch_writes_outputs_and_one_manifest_line_per_picture(pictures, tmp_path):
    out = tmp_path / "out"
    result = sketch_many([pictures], out, SketchSettings.from_preset(**QUICK), png=True, recursive=True)
    lines = {line["name"]: line for line in result.lines}
    assert set(lines) == {"a", "b", "deep/c", "broken"}  # notes.txt is not a picture
    for name in ("a", "b", "deep/c"):
        line = lines[name]
        assert line["status"] == "ok" and line["error"] is None and line["iterations"] == 8
        assert line["seed"] == 0 and isinstance(line["loss"], float) and line["seconds"] > 0
        assert line["outputs"] == [str(out / f"{name}.svg"), str(out / f"{name}.png")]
        assert (out / f"{name}.svg").read_text().count("<path") == 4
        assert Image.open(out / f"{name}.png").size == (448, 448)
        assert line["settings_hash"] == settings_hash(SketchSettings.from_preset(**QUICK))
    broken = lines["broken"]
    assert broken["status"] == "error" and "not an image" in broken["error"] and not (out / "broken.svg").exists()
    on_disk = [json.loads(raw) for raw in (out / "manifest.jsonl").read_text().splitlines()]
    assert on_disk == result.lines and result.failed == 1
    # an output folder inside the input folder: its PNGs are not taken for pictures to sketch
    inner = sketch_many(
        [pictures], pictures / "sketches", SketchSettings.from_preset(**QUICK), png=True, recursive=True
    )
    again = sketch_many(
        [pictures], pictures / "sketches", SketchSettings.from_preset(**QUICK), png=True, recursive=True
    )
    assert len(inner.lines) == len(again.lines) == 4 and again.count("skipped") == 3
    assert not [p for p in out.rglob("*") if p.name.startswith(".clipasso-")]  # no temporary file left


def test_a_second_run_resumes_and_does_no_work(pictures, tmp_path):
    out = tmp_path / "out"
    settings = SketchSettings.from_preset(**QUICK)
    sketch_many([pictures / "a.png", pictures / "b.jpg"], out, settings)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.svg")}
    again = sketch_many([pictures / "a.png", pictures / "b.jpg"], out, settings)
    assert [line["status"] for line in again.lines] == ["skipped", "skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.svg")} == stamps
    assert again.lines[0]["loss"] is not None  # the skipped line keeps the sketch's figures
    # another setting (more strokes) is another sketch; --force redoes even the same settings
    other = sketch_many([pictures / "a.png"], out, settings.replace(strokes=5))
    assert other.lines[0]["status"] == "ok" and (out / "a.svg").read_text().count("<path") == 5
    forced = sketch_many([pictures / "a.png"], out, settings.replace(strokes=5), force=True)
    assert forced.lines[0]["status"] == "ok"
    # a deleted output is made again
    (out / "b.svg").unlink()
    assert sketch_many([pictures / "b.jpg"], out, settings).lines[0]["status"] == "ok"
    last = read_manifest(out / "manifest.jsonl")
    assert last[str((pictures / "a.png").resolve())]["settings_hash"] == settings_hash(settings.replace(strokes=5))


def test_a_picture_stopped_before_its_end_is_redone_next_time(pictures, tmp_path):
    out = tmp_path / "out"
    settings = SketchSettings.from_preset(**dict(QUICK, iterations=200))
    calls = {"n": 0}

    def stop_soon():
        calls["n"] += 1
        return calls["n"] > 5

    stopped = sketch_many([pictures / "a.png", pictures / "b.jpg"], out, settings, should_stop=stop_soon)
    assert stopped.stopped and [line["status"] for line in stopped.lines] == ["error"]
    assert "before the end" in stopped.lines[0]["error"] and not (out / "a.svg").exists()
    again = sketch_many([pictures / "a.png"], out, settings.replace(iterations=8))
    assert again.lines[0]["status"] == "ok"


def test_inputs_files_folders_globs_and_their_errors(pictures, tmp_path):
    names = [i.name for i in collect_inputs([pictures])]
    assert names == ["a", "b", "broken"]  # not recursive: deep/ is left out
    assert [i.name for i in collect_inputs([str(pictures / "*.png")])] == ["a", "broken"]
    assert [i.name for i in collect_inputs([pictures / "a.png", pictures / "a.png"])] == ["a"]
    _picture(tmp_path / "other" / "a.png", 9)
    with pytest.raises(BatchError, match="would both be written as a.svg"):
        collect_inputs([pictures / "a.png", tmp_path / "other" / "a.png"])
    with pytest.raises(BatchError, match="input not found"):
        collect_inputs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchError, match="no picture"):
        collect_inputs([tmp_path / "empty"])
    with pytest.raises(BatchError, match="matches no picture"):
        collect_inputs([str(tmp_path / "*.webp")])


def test_the_cli_batch_command(pictures, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["batch", str(pictures), "-r", "-o", str(out), *QUICK_FLAGS])
    captured = capsys.readouterr()
    assert rc == 1 and "3 sketched" in captured.out and "1 failed" in captured.out  # the broken picture
    start = time.perf_counter()
    rc = main(["batch", str(pictures / "a.png"), "-o", str(out), *QUICK_FLAGS])
    assert rc == 0 and "1 already done" in capsys.readouterr().out and time.perf_counter() - start < 60
    with pytest.raises(SystemExit) as exc:
        main(["batch", str(tmp_path / "nothing"), "-o", str(out), *QUICK_FLAGS])
    assert exc.value.code == 2 and "input not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["batch", str(pictures), "-o", str(out), *QUICK_FLAGS, "--strokes", "0"])
    assert exc.value.code == 2 and "--strokes must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["batch", str(pictures), "-o", str(out), *QUICK_FLAGS, "--workers", "2"])
    assert "for --engine ray" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the command-line rules are `clipasso sketch`'s
        main(["batch", str(pictures), "-o", str(out), *QUICK_FLAGS, "--text", " "])
    assert "--text is empty" in capsys.readouterr().err


def test_ray_engine_missing_is_a_clear_error(monkeypatch, pictures, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BatchError, match=r'pip install -e ".\[ray\]"'):
        sketch_many([pictures / "a.png"], tmp_path / "out", SketchSettings.from_preset(**QUICK), engine="ray")


def test_the_same_batch_on_a_local_ray_with_two_cpu_workers(pictures, tmp_path):
    ray = pytest.importorskip("ray", reason='Ray is an optional extra: pip install -e ".[ray]"')
    settings = SketchSettings.from_preset(**QUICK)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one local Ray for both runs
    try:
        _both_runs(ray, pictures, tmp_path, settings)
    finally:
        ray.shutdown()


def _both_runs(ray, pictures, tmp_path, settings):
    local = sketch_many([pictures], tmp_path / "local", settings, recursive=True)
    on_ray = sketch_many([pictures], tmp_path / "ray", settings, recursive=True, engine="ray", workers=2)
    by_name = {line["name"]: line for line in on_ray.lines}
    assert set(by_name) == {"a", "b", "deep/c", "broken"} and by_name["broken"]["status"] == "error"
    from clipasso.output.svg import read_svg

    for line in local.lines:
        if line["status"] == "ok":  # the same sketch, whichever process made it (1 thread there, 2 here:
            # float sums in another order, hence the tolerance)
            assert by_name[line["name"]]["loss"] == pytest.approx(line["loss"], rel=1e-4)
            a = read_svg(tmp_path / "ray" / f"{line['name']}.svg")
            b = read_svg(tmp_path / "local" / f"{line['name']}.svg")
            assert np.allclose(a.points.numpy(), b.points.numpy(), atol=0.05)
    again = sketch_many([pictures], tmp_path / "ray", settings, recursive=True, engine="ray", workers=2)
    assert sorted(line["status"] for line in again.lines) == ["error", "skipped", "skipped", "skipped"]
    assert os.path.isfile(tmp_path / "ray" / "manifest.jsonl")


def test_a_torn_last_manifest_line_is_ignored(pictures, tmp_path):
    """A run killed while writing leaves half a line: the next run reads the rest and goes on."""
    out = tmp_path / "out"
    settings = SketchSettings.from_preset(**QUICK)
    sketch_many([pictures / "a.png"], out, settings)
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"input": "/somewhere/b.png", "status": "o')
    again = sketch_many([pictures / "a.png", pictures / "b.jpg"], out, settings)
    assert [line["status"] for line in again.lines] == ["skipped", "ok"]
    assert set(read_manifest(out / "manifest.jsonl")) == {str((pictures / n).resolve()) for n in ("a.png", "b.jpg")}


def test_a_sigkilled_local_batch_resumes_with_nothing_lost_or_redone(tmp_path):
    """SIGKILL (the OOM killer, a pre-empted machine) in the middle of a local batch: what was finished is
    kept and skipped by the rerun, what was not is done by it, and no temporary file is left for good."""
    import signal
    import subprocess
    import sys

    root = tmp_path / "in"
    names = [f"p{i}" for i in range(4)]
    for i, name in enumerate(names):
        _picture(root / f"{name}.png", 10 + i)
    out = tmp_path / "out"
    manifest = out / "manifest.jsonl"
    at = QUICK_FLAGS.index("--iterations") + 1
    flags = QUICK_FLAGS[:at] + ["30"] + QUICK_FLAGS[at + 1 :]
    cmd = [sys.executable, "-m", "clipasso", "batch", str(root), "-o", str(out), *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.is_file() and len(manifest.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the batch ended before it could be killed: give it more work"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done_before = {json.loads(raw)["name"] for raw in manifest.read_text().splitlines() if raw.strip()}
    assert 2 <= len(done_before) < len(names)
    stamps = {name: (out / f"{name}.svg").stat().st_mtime_ns for name in done_before}
    rerun = sketch_many([root], out, SketchSettings.from_preset(**dict(QUICK, iterations=30)))
    status = {line["name"]: line["status"] for line in rerun.lines}
    assert status == {name: ("skipped" if name in done_before else "ok") for name in names}
    assert {name: (out / f"{name}.svg").stat().st_mtime_ns for name in done_before} == stamps  # not redone
    assert all((out / f"{name}.svg").read_text().count("<path") == 4 for name in names)
    assert not [p for p in out.rglob("*") if p.name.startswith(".clipasso-")]
