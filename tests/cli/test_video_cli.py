"""`clipasso video`: a short clip through the command line, the animated SVG and the rendered video it
writes, resuming from --frames-dir, and bad clips and paths."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

ARGS = [
    "--loss",
    "trace",
    "--saliency",
    "none",
    "--no-background-removal",
    "--iterations",
    "30",
    "--frame-iterations",
    "4",
    "--seeds",
    "1",
    "--strokes",
    "6",
    "--device",
    "cpu",
    "-q",
]


def run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "clipasso", "video", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from skimage import data, transform

    from clipasso.video.io import write_video

    folder = tmp_path_factory.mktemp("clip")
    big = transform.resize(data.chelsea(), (200, 260), anti_aliasing=True).astype(np.float32)
    frames = [torch.from_numpy(big[40:136, 60 + 2 * i : 156 + 2 * i].copy()).permute(2, 0, 1) for i in range(5)]
    path = folder / "clip.mp4"
    write_video(frames, path, 10)
    return path


def test_a_clip_becomes_an_animated_svg_a_video_and_frames(clip, tmp_path):
    from clipasso.output.animation import read_video_svg

    r = run(
        clip, "-o", "out.svg", "--mp4", "out.mp4", "--gif", "out.gif", "--frames-dir", "frames", *ARGS, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "5 of 5 frames" in r.stdout and "warm-started" in r.stdout
    root = ET.parse(tmp_path / "out.svg").getroot()
    paths = [el for el in root.iter() if el.tag.endswith("path")]
    assert len(paths) == 6
    for p in paths:
        anims = [a for a in p if a.tag.endswith("animate") and a.get("attributeName") == "d"]
        assert len(anims) == 1 and len(anims[0].get("values").split(";")) == 5
    seq = read_video_svg(tmp_path / "out.svg")
    assert len(seq) == 5 and all(s.num_strokes == 6 for s in seq)
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5
    assert sorted(p.name for p in (tmp_path / "frames").glob("*.svg"))[-1] == "frame_00004.svg"
    assert (tmp_path / "out.gif").stat().st_size > 0

    # resume: frames 3 and 4 removed, sketched again from frame 2's strokes
    for i in (3, 4):
        for ext in ("svg", "png"):
            (tmp_path / "frames" / f"frame_0000{i}.{ext}").unlink()
    r2 = run(clip, "-o", "again.svg", "--frames-dir", "frames", "--resume", *ARGS, cwd=tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert "3 resumed" in r2.stdout
    again = read_video_svg(tmp_path / "again.svg")
    assert len(again) == 5
    for a, b in zip(seq, again):  # the same frames, to the SVG's 4 decimals
        assert torch.allclose(a.points, b.points, atol=1e-3)

    # a frames folder with frames in it needs --resume
    r3 = run(clip, "-o", "x.svg", "--frames-dir", "frames", *ARGS, cwd=tmp_path)
    assert r3.returncode == 2 and "--resume" in r3.stderr


def test_bad_clips_and_paths(tmp_path, clip):
    r = run("missing.mp4", "-o", "x.svg", *ARGS, cwd=tmp_path)
    assert r.returncode == 2 and "not found" in r.stderr
    (tmp_path / "broken.mp4").write_bytes(b"\0not a video" * 50)
    r = run("broken.mp4", "-o", "x.svg", *ARGS, cwd=tmp_path)
    assert r.returncode == 1 and "broken.mp4" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = run("empty", "-o", "x.svg", *ARGS, cwd=tmp_path)
    assert r.returncode == 1 and "no" in r.stderr.lower()
    r = run(clip, "-o", "x.png", *ARGS, cwd=tmp_path)
    assert r.returncode == 2 and ".svg" in r.stderr
    r = run(clip, "-o", "x.svg", "--temporal-weight", "-1", *ARGS, cwd=tmp_path)
    assert r.returncode == 2 and "temporal" in r.stderr
    r = run(clip, "-o", "x.svg", "--resume", *ARGS, cwd=tmp_path)
    assert r.returncode == 2 and "--frames-dir" in r.stderr
    r = run(clip, "-o", "x.svg", "--start", "100", *ARGS, cwd=tmp_path)
    assert r.returncode == 1 and "start" in r.stderr
