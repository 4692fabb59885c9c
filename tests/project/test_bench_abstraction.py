"""bench/abstraction.py --grow-picture: the growing picture is written where asked, with the newest stroke marked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "abstraction.py")
TILE, LABEL, HEAD, CHART = 180, 32, 90, 300  # the layout grow_picture draws


def _run(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd
    )


def _red_pixels(img, box):
    r, g, b = (c.load() for c in img.crop(box).split())
    w, h = box[2] - box[0], box[3] - box[1]
    return sum(1 for x in range(w) for y in range(h) if r[x, y] > 150 and g[x, y] < 90 and b[x, y] < 90)


def test_grow_picture_writes_the_sheet_into_out_dir_with_the_newest_stroke_red(tmp_path):
    from PIL import Image

    counts = [2, 3, 4]
    proc = _run(
        "--grow-picture",
        "--strokes",
        "4",
        "--iterations",
        "2",
        "--prune-iterations",
        "1",
        "--grow-iterations",
        "1",
        "--canvas",
        "64",
        "--grow-counts",
        *map(str, counts),
        "--out-dir",
        str(tmp_path / "pics"),
        "--out",
        str(tmp_path / "results.json"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = tmp_path / "pics" / "grow_abstraction.png"
    assert png.is_file()
    assert not (tmp_path / "results.json").exists()  # the JSON is only written with --grow-vs-prune
    img = Image.open(png).convert("RGB")
    assert img.size == (HEAD + (1 + len(counts)) * TILE, 2 * (TILE + LABEL) + 16 + CHART)

    def tile(row, col):
        x, y = HEAD + (1 + col) * TILE, row * (TILE + LABEL) + LABEL
        return (x, y, x + TILE, y + TILE)

    # grown row: the start sketch (2 strokes) has no new stroke, every later count shows its newest in red
    assert _red_pixels(img, tile(0, 0)) == 0
    assert _red_pixels(img, tile(0, 1)) > 20 and _red_pixels(img, tile(0, 2)) > 20
    # pruned row: no stroke is marked
    assert all(_red_pixels(img, tile(1, i)) == 0 for i in range(len(counts)))


def test_grow_picture_refuses_counts_outside_the_grown_range(tmp_path):
    proc = _run("--grow-picture", "--strokes", "4", "--grow-counts", "8", "--out-dir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "--grow-counts" in proc.stderr
    assert not (tmp_path / "grow_abstraction.png").exists()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
