"""Clips in and out (`clipasso.video.io`) and the animated SVG of a sketched clip (`clipasso.output.animation`):
real files made with PyAV and Pillow (a square moving right), read back frame by frame, every refusal, and the
writers' round trips."""

from __future__ import annotations

import os
import random
import sys
import warnings
import xml.etree.ElementTree as ET
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from clipasso.atomic import TEMP_PREFIX
from clipasso.errors import AbstractionError, ClipassoError, VideoError
from clipasso.output.animation import read_video_svg, video_svg, write_video_svg
from clipasso.output.svg import SVGError, to_svg
from clipasso.strokes import Strokes
from clipasso.video import io as vio
from clipasso.video.io import VideoWriter, open_clip_source, write_video

av = pytest.importorskip("av")

N, W, H, FPS = 12, 64, 48, 24
SVG = "{http://www.w3.org/2000/svg}"


def _square(i: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame i: white, with a black 10x10 square whose left edge is at x = 4 i."""
    a = np.full((h, w, 3), 255, np.uint8)
    a[10:20, 4 * i : 4 * i + 10] = 0
    return a


def _square_x(image) -> float:
    """The mean column of the dark pixels (the square's centre: 4 i + 4.5)."""
    a = np.asarray(image.convert("L") if hasattr(image, "convert") else image, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(-1)
    cols = np.nonzero(a < 128)[1]
    return float(cols.mean())


def _write_av(path, codec="libx264", n=N, fps=FPS):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            for p in s.encode(av.VideoFrame.from_ndarray(_square(i), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def _write_gif(path, n=N, ms=40, alpha=False):
    frames = []
    for i in range(n):
        rgb = _square(i)
        if alpha:
            a = np.dstack([rgb, np.full((H, W), 255, np.uint8)])
            a[40:, 50:, 3] = 0  # a transparent corner: composited on white
            a[40:, 50:, :3] = 0
            frames.append(Image.fromarray(a, "RGBA"))
        else:
            frames.append(Image.fromarray(rgb))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms, loop=0, disposal=2)
    return path


def _write_folder(folder, n=N, name="frame{}.png"):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(_square(i)).save(folder / name.format(i + 1))
    return folder


def _decode(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _no_temp(folder):
    return not [p for p in os.listdir(folder) if p.startswith(TEMP_PREFIX)]


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    return _write_av(tmp_path_factory.mktemp("clips") / "square.mp4")


# ---------------------------------------------------------------------------------------------- reading
def test_mp4_streams_every_frame(mp4):
    with open_clip_source(mp4) as src:
        info = src.info
        assert (info.frames, info.width, info.height, info.fps) == (N, W, H, FPS)
        assert info.duration == pytest.approx(N / FPS) and info.source == str(mp4) and len(src) == N
        it = iter(src)
        assert not isinstance(it, (list, tuple))  # a generator: frames are decoded as they are asked for
        items = list(it)
    assert [k for k, _, _ in items] == list(range(N))
    assert [t for _, t, _ in items] == pytest.approx([k / FPS for k in range(N)])
    for k, _, image in items:
        assert image.mode == "RGB" and image.size == (W, H)
        assert _square_x(image) == pytest.approx(4 * k + 4.5, abs=1.0)


def test_webm_without_a_frame_count_is_counted(tmp_path):
    clip = _write_av(tmp_path / "square.webm", codec="libvpx-vp9")
    with av.open(str(clip)) as c:
        assert c.streams.video[0].frames == 0  # the header has no count: the packets are counted
    with open_clip_source(clip) as src:
        assert src.info.frames == N
        assert [round(_square_x(im)) for _, _, im in src] == [round(4 * k + 4.5) for k in range(N)]


def test_fps_start_duration_max_frames(mp4):
    def picked(**kw):
        with open_clip_source(mp4, **kw) as src:
            items = list(src)
            assert src.info.frames == len(items)
            return src.info, [round((_square_x(im) - 4.5) / 4) for _, _, im in items], [t for _, t, _ in items]

    info, idx, times = picked(fps=12)
    assert idx == [0, 2, 4, 6, 8, 10] and info.fps == 12 and info.duration == pytest.approx(0.5)
    assert times == pytest.approx([k / 12 for k in range(6)])
    info, idx, _ = picked(fps=10)  # nearest source frame to k / 10 s
    assert idx == [0, 2, 5, 7, 10] and info.fps == 10
    info, idx, times = picked(start=0.25)
    assert idx == list(range(6, 12)) and times[0] == pytest.approx(0.25)
    assert picked(duration=0.25)[1] == list(range(6))
    assert picked(start=0.125, duration=0.125)[1] == [3, 4, 5]
    assert picked(max_frames=4)[1] == [0, 1, 2, 3]
    assert picked(fps=12, start=0.25, max_frames=2)[1] == [6, 8]
    with pytest.warns(UserWarning, match="only repeat frames"):
        info, idx, _ = picked(fps=60)
    assert info.fps == FPS and idx == list(range(N))


def test_iterating_again_and_closing(mp4):
    src = open_clip_source(mp4, max_frames=3)
    assert [k for k, _, _ in src] == [0, 1, 2] and [k for k, _, _ in src] == [0, 1, 2]
    it = iter(src)
    next(it)
    src.close()  # ends the open iteration (and its file)
    with pytest.raises(StopIteration):
        next(it)
    with pytest.raises(VideoError, match="closed"):
        iter(src)


@pytest.mark.parametrize("with_av", [True, False])
def test_gif_with_and_without_pyav(tmp_path, monkeypatch, with_av):
    gif = _write_gif(tmp_path / "square.gif", alpha=True)
    if not with_av:
        monkeypatch.setitem(sys.modules, "av", None)  # `import av` fails: Pillow reads the GIF
    with open_clip_source(gif, fps=12.5) as src:
        assert type(src).__name__ == ("_PyAVFile" if with_av else "_PillowGIF")
        assert (src.info.frames, src.info.width, src.info.height, src.info.fps) == (6, W, H, 12.5)
        items = list(src)
    assert len(items) == 6
    for k, _, image in items:
        assert image.mode == "RGB"
        assert _square_x(image) == pytest.approx(8 * k + 4.5, abs=0.5)
        assert image.getpixel((60, 45)) == (255, 255, 255)  # transparent: white, not black


def test_folder_in_natural_order_and_glob(tmp_path):
    folder = _write_folder(tmp_path / "frames")  # frame1.png ... frame12.png: frame10 after frame9
    (folder / "notes.txt").write_text("not a frame")
    with open_clip_source(folder) as src:
        assert (src.info.frames, src.info.width, src.info.height, src.info.fps) == (N, W, H, vio.IMAGE_FPS)
        assert [round(_square_x(im)) for _, _, im in src] == [round(4 * k + 4.5) for k in range(N)]
    with open_clip_source(str(folder / "frame1*.png")) as src:  # frame1, frame10, frame11, frame12
        assert [round((_square_x(im) - 4.5) / 4) for _, _, im in src] == [0, 9, 10, 11]
    # with fps, every picture is one frame at that rate; start/duration count in those seconds
    with open_clip_source(folder, fps=6, start=1.0, duration=1.0) as src:
        assert (src.info.frames, src.info.fps, src.info.duration) == (6, 6.0, 1.0)
        items = list(src)
    assert [round((_square_x(im) - 4.5) / 4) for _, _, im in items] == list(range(6, 12))
    assert items[0][1] == pytest.approx(1.0)


def test_grey_and_transparent_frames_become_rgb_on_white(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(_square(0)[..., 0], "L").save(folder / "a1.png")
    rgba = np.dstack([_square(1), np.full((H, W), 255, np.uint8)])
    rgba[:5, :5] = 0  # transparent black
    Image.fromarray(rgba, "RGBA").save(folder / "a2.png")
    with open_clip_source(folder) as src:
        images = [im for _, _, im in src]
    assert [im.mode for im in images] == ["RGB", "RGB"]
    assert images[0].getpixel((5, 15)) == (0, 0, 0) and images[1].getpixel((1, 1)) == (255, 255, 255)


# ---------------------------------------------------------------------------------------------- refusals
def test_source_errors(tmp_path, mp4):
    def refused(source, match, **kw):
        with pytest.raises(VideoError, match=match) as err:
            open_clip_source(source, **kw)
        assert isinstance(err.value, ClipassoError) and isinstance(err.value, ValueError)
        return str(err.value)

    refused(tmp_path / "nothing.mp4", "clip not found")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "holds no frame pictures")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    refused(tmp_path / "texts", "holds no frame pictures")
    refused(str(tmp_path / "none" / "*.png"), "no file matches")
    refused(str(tmp_path / "texts" / "*"), "1 files match it but none is a picture")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(random.Random(0).randbytes(4096))
    refused(broken, "broken or not a video")
    other = tmp_path / "clip.txt"
    other.write_text("hello")
    refused(other, "not a video clip")
    Image.fromarray(_square(0)).save(tmp_path / "one.png")
    refused(tmp_path / "one.png", "one picture, not a clip")
    msg = refused(mp4, "no frames selected", start=2.0)
    assert "start=2s" in msg and "0.5 s long" in msg and "12 frames at 24 fps" in msg
    refused(mp4, "start must be 0 or more", start=-1)
    refused(mp4, "duration must be a positive", duration=-0.5)
    refused(mp4, "fps must be a positive", fps=-5)
    refused(mp4, "fps must be a positive", fps=0)
    refused(mp4, "max_frames must be a whole number", max_frames=0)
    refused(mp4, "start must be", start=float("nan"))


def test_frames_of_different_sizes(tmp_path):
    folder = _write_folder(tmp_path / "frames", n=4)
    Image.new("RGB", (W + 2, H)).save(folder / "frame3.png")
    with pytest.raises(VideoError, match="differ in size") as err:
        open_clip_source(folder)
    assert "frame3.png is 66x48" in str(err.value) and "frame1.png is 64x48" in str(err.value)
    with open_clip_source(folder, max_frames=2) as src:  # the odd one is not selected
        assert src.info.frames == 2


def test_limits(tmp_path, mp4, monkeypatch):
    folder = _write_folder(tmp_path / "frames", n=5)
    monkeypatch.setattr(vio, "MAX_FRAMES", 4)
    with pytest.raises(VideoError, match="5 frames selected, more than the limit of 4") as err:
        open_clip_source(folder)
    assert "--max-frames" in str(err.value) and "--duration" in str(err.value) and "--fps" in str(err.value)
    with pytest.raises(VideoError, match="12 frames selected"):
        open_clip_source(mp4)
    assert open_clip_source(mp4, fps=8).info.frames == 4
    import clipasso.prepare.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    for source in (mp4, folder):
        with pytest.raises(VideoError, match="64x48 = 0.00 megapixels, above the 0 megapixel limit"):
            open_clip_source(source, max_frames=2)


def test_without_pyav_a_video_says_what_to_install(mp4, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(VideoError, match="PyAV") as err:
        open_clip_source(mp4)
    assert 'pip install "comfyui-clipasso[video]"' in str(err.value) and "folder of frame pictures" in str(err.value)
    with pytest.raises(VideoError, match="PyAV"):
        VideoWriter(mp4.parent / "out.mp4", 24)


# ---------------------------------------------------------------------------------------------- writing
def _tensors(n=N, w=W, h=H):
    for i in range(n):
        yield torch.from_numpy(_square(i, w, h)).permute(2, 0, 1).float() / 255.0


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_write_video_round_trip(tmp_path, suffix):
    path = write_video(_tensors(), tmp_path / f"out{suffix}", FPS)
    assert path.exists() and _no_temp(tmp_path)
    frames = _decode(path)
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    for i, frame in enumerate(frames):
        assert np.abs(frame.astype(np.float32) - _square(i)).mean() < 8  # codec tolerance, in 0..255
        assert _square_x(frame) == pytest.approx(4 * i + 4.5, abs=1.0)
    with open_clip_source(path) as src:
        assert src.info.frames == N
        assert src.info.fps == pytest.approx(25 if suffix == ".gif" else FPS)  # GIF delays: whole 1/100 s


def test_write_video_odd_size_and_pil_frames(tmp_path):
    path = write_video((Image.fromarray(_square(i, 63, 47)) for i in range(3)), tmp_path / "odd.mp4", 29.97)
    frames = _decode(path)
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)  # padded to even sides
    assert frames[0][:, 63].min() > 240 and frames[0][47, :].min() > 240  # with white
    with av.open(str(path)) as c:
        assert c.streams.video[0].average_rate == Fraction(2997, 100)


def test_video_writer_keep_partial_after_an_error(tmp_path):
    path = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError, match="stopped"):
        with VideoWriter(path, FPS, keep_partial=True) as out:
            for i, frame in enumerate(_tensors()):
                if i == 5:
                    raise RuntimeError("stopped")
                out.write(frame)
    assert len(_decode(path)) == 5 and _no_temp(tmp_path)


def test_video_writer_drops_everything_after_an_error(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"the previous file")

    def failing():
        yield from _tensors(n=3)
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        write_video(failing(), path, FPS)
    assert path.read_bytes() == b"the previous file" and _no_temp(tmp_path)
    with pytest.raises(RuntimeError):  # keep_partial with nothing written: nothing to keep
        with VideoWriter(tmp_path / "none.mp4", FPS, keep_partial=True):
            raise RuntimeError("before any frame")
    assert not (tmp_path / "none.mp4").exists() and _no_temp(tmp_path)


def test_video_writer_errors(tmp_path):
    with pytest.raises(VideoError, match="no frames were written"):
        write_video([], tmp_path / "empty.mp4", FPS)
    assert not (tmp_path / "empty.mp4").exists()
    for fps in (0, -1, float("inf")):
        with pytest.raises(VideoError, match="fps must be a positive"):
            VideoWriter(tmp_path / "a.mp4", fps)
    with pytest.raises(VideoError, match="one of the suffixes"):
        VideoWriter(tmp_path / "a.avi", FPS)
    with pytest.raises(VideoError, match="frame 1 is 32x32, but the video's frames are 64x48"):
        write_video([next(_tensors()), torch.ones(3, 32, 32)], tmp_path / "sizes.mp4", FPS)
    with pytest.raises(VideoError, match=r"\[3,H,W\]"):
        write_video([torch.ones(4, 8, 8)], tmp_path / "bad.mp4", FPS)
    assert _no_temp(tmp_path) and not (tmp_path / "sizes.mp4").exists()


# ---------------------------------------------------------------------------------------------- SVG
def _frames(n=3, s=4, seed=0, canvas=(224, 224), **extra):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        out.append(
            Strokes(
                torch.rand(1, s, 4, 2, generator=g) * canvas[1],
                0.5 + torch.rand(1, s, generator=g) * 2,
                torch.rand(1, s, 4, generator=g),
                canvas=canvas,
                **extra,
            )
        )
    return out


def _paths(text):
    return list(ET.fromstring(text).iter(SVG + "path"))


def test_video_svg_animates_every_path():
    frames = _frames()
    text = video_svg(frames, fps=12)
    paths = _paths(text)
    assert len(paths) == 4
    static = _paths(to_svg(frames[0]))
    for path, plain in zip(paths, static):
        d_anims = [a for a in path if a.get("attributeName") == "d"]
        assert len(d_anims) == 1
        a = d_anims[0]
        values = a.get("values").split(";")
        assert len(values) == 3 and values[0] == path.get("d") == plain.get("d")
        assert a.get("dur") == "0.25s" and a.get("repeatCount") == "indefinite" and a.get("calcMode") == "discrete"
        assert {b.get("attributeName") for b in path} == {"d", "stroke-width", "stroke", "stroke-opacity"}
    meta = ET.fromstring(text).find(SVG + "metadata").text
    assert '"animation": "video"' in meta and '"frames": 3' in meta and '"fps": 12' in meta


def test_video_svg_reads_back():
    frames = _frames()
    back = read_video_svg(video_svg(frames, fps=24))
    assert len(back) == 3
    for b, f in zip(back, frames):
        assert b.canvas == (224, 224) and b.num_candidates == 1 and b.layers is None
        assert (b.points - f.points).abs().max() < 1e-3  # 4 decimals in the file
        assert (b.widths - f.widths).abs().max() < 1e-3
        assert (b.colors[..., :3] - f.colors[..., :3]).abs().max() <= 0.5 / 255 + 1e-6
        assert (b.colors[..., 3] - f.colors[..., 3]).abs().max() < 1e-3


def test_video_svg_animates_only_what_changes_and_options():
    frames = _frames()
    fixed = [f.replace(widths=frames[0].widths, colors=frames[0].colors) for f in frames]
    text = video_svg(fixed, fps=10, loop=False, size=(448, 448))
    root = ET.fromstring(text)
    assert root.get("width") == "448" and root.get("viewBox") == "0 0 224 224"  # size: the display only
    for path in _paths(text):
        (a,) = list(path)
        assert a.get("attributeName") == "d" and a.get("fill") == "freeze" and a.get("repeatCount") is None
    smooth = _paths(video_svg(frames, fps=10, interpolate=True))[0]
    a = smooth[0]
    values = a.get("values").split(";")
    assert a.get("calcMode") == "linear" and len(values) == 4 and values[-1] == values[0]  # morphs back to frame 0
    assert [len(b) for b in read_video_svg(video_svg(frames, fps=10, interpolate=True))] == [1, 1, 1]
    pen = _paths(video_svg(frames, fps=10, pen_width=2.0))[0]
    assert "stroke-width" not in {b.get("attributeName") for b in pen} and pen.get("stroke-width") == "2"


def test_video_svg_of_candidates_and_one_frame(tmp_path):
    frames = _frames()
    batch = Strokes.concat(frames)
    assert video_svg(batch, fps=12) == video_svg(frames, fps=12)
    one = video_svg(frames[:1], fps=12)
    assert "<animate" not in one
    (back,) = read_video_svg(one)
    assert (back.points - frames[0].points).abs().max() < 1e-3
    path = write_video_svg(frames, tmp_path / "clip.svg", 12)
    assert len(read_video_svg(path)) == 3 and _no_temp(tmp_path)


def test_video_svg_keeps_layers():
    layers = ("background", "background", "foreground", "foreground")
    frames = _frames(layers=layers)
    text = video_svg(frames, fps=12)
    groups = [g for g in ET.fromstring(text).iter(SVG + "g") if g.get("class") == "layer"]
    assert [g.get("data-layer") for g in groups] == ["background", "foreground"]
    for g in groups:
        assert len(list(g)) == 2 and all(p.find(SVG + "animate") is not None for p in g)
    back = read_video_svg(text)
    assert all(b.layers == layers for b in back)
    assert (back[2].points - frames[2].points).abs().max() < 1e-3


def test_video_svg_refusals():
    frames = _frames()
    with pytest.raises(AbstractionError, match="frame 2 has 3 strokes of 4 control points on a 224x224 canvas"):
        video_svg(frames[:2] + _frames(n=1, s=3), fps=12)
    with pytest.raises(AbstractionError, match="frame 1 has 4 strokes .* on a 100x224 canvas"):
        video_svg(frames[:1] + _frames(n=1, canvas=(224, 100)), fps=12)
    with pytest.raises(AbstractionError, match="frame 1 holds 2 candidate"):
        video_svg([frames[0], Strokes.concat(frames[:2])], fps=12)
    with pytest.raises(AbstractionError, match="layers differ"):
        video_svg([frames[0], frames[1].replace(layers=("a",) * 4)], fps=12)
    with pytest.raises(AbstractionError, match="fps must be a positive"):
        video_svg(frames, fps=0)
    with pytest.raises(AbstractionError, match="at least one frame"):
        video_svg([], fps=12)
    with pytest.raises(SVGError, match="not a sketched clip"):
        read_video_svg(to_svg(frames[0]))
    root = ET.fromstring(video_svg(frames, fps=12))
    anim = root.find(f".//{SVG}animate")
    anim.set("values", anim.get("values").rsplit(";", 1)[0])
    with pytest.raises(SVGError, match="2 values for the 3 frames"):
        read_video_svg(ET.tostring(root, encoding="unicode"))


def test_warnings_are_not_raised_for_plain_reads(mp4):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_clip_source(mp4, fps=12) as src:
            assert len(list(src)) == 6
