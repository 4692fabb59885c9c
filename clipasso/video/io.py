"""Clips in and out: the frames of a video file, a folder of images or a glob pattern, read one at a time,
and sketch frames written back as MP4, WebM or GIF.

Reading (`open_clip_source`) gives a `FrameSource`: its `ClipInfo` (frame count, size, fps, length) is
known as soon as it is opened, and iterating it yields ``(index, seconds, image)`` for the selected
frames, decoding one frame at a time, so a long clip never sits in memory. Video files are decoded with
PyAV (``pip install av``, an optional dependency, imported only when a video is opened); GIFs also open
without it, through Pillow. A folder or glob of pictures (``frame1.png, frame2.png, ...`` in natural
order) needs nothing more than Pillow.

The selection: ``start`` seconds skipped, at most ``duration`` seconds kept, resampled to ``fps`` by
taking for every output time the nearest source frame (never a blended or invented frame; an ``fps``
above the source's is lowered to the source's with a warning), then at most ``max_frames``. The source
is taken to run at a constant frame rate (its average rate), which is what nearly every clip does.

Writing (`write_video`, `VideoWriter`) is atomic like every other output (`clipasso.atomic`): frames go
into a temporary file next to the destination, which replaces the destination only when the file is
complete.
"""

from __future__ import annotations

import glob
import math
import os
import re
import warnings
import weakref
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from ..errors import VideoError
from ..prepare import images as _images
from ..prepare.files import shown_path

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
WRITE_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".gif")
"""What `write_video` writes: H.264 in MP4/M4V/MOV/MKV, VP9 in WebM, and GIF (through Pillow)."""

MAX_FRAMES = 10000
"""Most frames one selection may hold (after fps, start, duration and max_frames are applied); a module
constant, read at each call, so a caller who really means a longer clip can raise it."""

IMAGE_FPS = 24.0
"""The frame rate of a folder or glob of pictures when no ``fps`` is given."""

GIF_FPS = 10.0
"""The frame rate of a GIF whose frames carry no delay (browsers show those at about 10 per second)."""

_INSTALL_AV = 'pip install "comfyui-clipasso[video]" (or pip install av)'
_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
_CODEC_OPTIONS = {"libx264": {"crf": "18"}, "libvpx-vp9": {"crf": "30", "b": "0"}}  # line drawings need a low crf
_EPS = 1e-6


@dataclass
class ClipInfo:
    """What a `FrameSource` will yield: ``frames`` after the selection, each ``width`` x ``height``
    pixels, at ``fps`` frames per second (the selection's rate), lasting ``duration`` = frames / fps
    seconds; ``source`` is the file, folder or pattern it reads."""

    frames: int
    width: int
    height: int
    fps: float
    source: str
    duration: float


# ---------------------------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class _Selection:
    """Which source frames the output frames are: output frame k is source frame `index(k)`."""

    first: int  # first source frame in the window
    stop: int  # one past the last source frame in the window
    source_fps: float
    fps: float
    count: int

    def index(self, k: int) -> int:
        if self.fps == self.source_fps:
            return self.first + k
        nearest = int(math.floor(k * self.source_fps / self.fps + 0.5 + _EPS))
        return self.first + min(nearest, self.stop - self.first - 1)

    def seconds(self, k: int) -> float:
        """The time of output frame k in the source clip, in seconds from its first frame."""
        return self.first / self.source_fps + k / self.fps


def _check_options(fps, start, duration, max_frames) -> None:
    def bad(value) -> bool:
        return isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)

    if fps is not None and (bad(fps) or fps <= 0):
        raise VideoError(f"fps must be a positive number of frames per second (or None: the clip's own); got {fps!r}")
    if bad(start) or start < 0:
        raise VideoError(f"start must be 0 or more seconds into the clip; got {start!r}")
    if duration is not None and (bad(duration) or duration <= 0):
        raise VideoError(f"duration must be a positive number of seconds (or None: to the end); got {duration!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise VideoError(
            f"max_frames must be a whole number of frames, 1 or more (or None: no limit); got {max_frames!r}"
        )


def _select(total: int, source_fps: float, fps, start: float, duration, max_frames, shown: str) -> _Selection:
    """The frames of a clip of ``total`` frames at ``source_fps`` that the options select (errors when
    none, or more than `MAX_FRAMES`)."""
    out_fps = source_fps
    if fps is not None:
        if fps > source_fps * (1 + _EPS):
            warnings.warn(
                f"{shown} runs at {source_fps:g} fps; fps={fps:g} would only repeat frames, so its own "
                f"{source_fps:g} fps is used",
                UserWarning,
                stacklevel=4,
            )
        elif fps < source_fps * (1 - _EPS):
            out_fps = float(fps)
    first = max(0, math.ceil(start * source_fps - _EPS))
    stop = total if duration is None else min(total, math.ceil((start + duration) * source_fps - _EPS))
    span = max(0, stop - first)
    count = span if out_fps == source_fps else math.ceil(span * out_fps / source_fps - _EPS)
    if max_frames is not None:
        count = min(count, int(max_frames))
    if count <= 0:
        asked = f"start={start:g}s" + (f", duration={duration:g}s" if duration is not None else "")
        raise VideoError(
            f"no frames selected from {shown}: {asked}, but the clip is {total / source_fps:.3g} s long "
            f"({total} frames at {source_fps:g} fps); give a start below its length"
        )
    if count > MAX_FRAMES:
        raise VideoError(
            f"{shown}: {count} frames selected, more than the limit of {MAX_FRAMES} "
            "(clipasso.video.io.MAX_FRAMES); take fewer with --max-frames, a shorter --duration or a lower --fps"
        )
    return _Selection(first, stop, source_fps, out_fps, count)


def _check_pixels(shown: str, width: int, height: int) -> None:
    limit = _images.MAX_PIXELS
    if width * height > limit:
        side = int(limit**0.5)
        pixels = width * height
        mp = f"{pixels / 1e6:.0f}" if round(pixels / 1e6) > limit / 1e6 else f"{pixels / 1e6:.2f}"
        raise VideoError(
            f"{shown} has frames of {width}x{height} = {mp} megapixels, above the "
            f"{limit / 1e6:.0f} megapixel limit ({side}x{side}); scale the clip down first, e.g. "
            "ffmpeg -i in.mp4 -vf scale=1280:-2 out.mp4 (sketching works at 224 px anyway)"
        )


def _rgb_image(pil):
    """A PIL image in RGB: alpha composited on white, greyscale and palettes expanded (as `as_rgb` does)."""
    if pil.mode == "RGB":
        return pil
    return _images.to_pil(_images.as_rgb(pil))


# ---------------------------------------------------------------------------------------------- sources
class FrameSource:
    """The selected frames of a clip, read one at a time.

    ``info`` (a `ClipInfo`) describes them; iterating yields ``(index, seconds, image)``: the output
    frame's index (0, 1, ...), its time in the source clip in seconds, and a PIL image in RGB. Each
    iteration reads the clip again from its start, holding one decoded frame at a time. `close` (or
    leaving a ``with`` block) ends iterations still open; a source is cheap to keep open otherwise.
    """

    def __init__(self, info: ClipInfo, selection: _Selection):
        self.info = info
        self._selection = selection
        self._live: "weakref.WeakSet" = weakref.WeakSet()  # iterations not finished yet
        self._closed = False

    def __len__(self) -> int:
        return self.info.frames

    def __iter__(self) -> Iterator[Tuple[int, float, "object"]]:
        if self._closed:
            raise VideoError(f"the frame source of {self.info.source} is closed; open it again to read its frames")
        gen = self._frames()
        self._live.add(gen)
        return gen

    def _source_frames(self, stop: int) -> Iterator:
        """Source frames 0, 1, ... up to ``stop`` (exclusive) as callables that give the RGB image."""
        raise NotImplementedError

    def _frames(self):
        """Walk the source frames once, converting and yielding only the selected ones (a source frame
        that two output times share is yielded twice)."""
        sel = self._selection
        k = seen = 0
        source = self._source_frames(sel.index(sel.count - 1) + 1)
        try:
            for i, image_of in enumerate(source):
                seen = i + 1
                if sel.index(k) != i:
                    continue
                image = image_of()
                while k < sel.count and sel.index(k) == i:
                    yield k, sel.seconds(k), image
                    k += 1
                if k >= sel.count:
                    return
            warnings.warn(
                f"{self.info.source} ended after {seen} frames, before all {self.info.frames} selected frames "
                f"were read (its header promised more); {k} frames were given",
                UserWarning,
                stacklevel=2,
            )
        finally:
            source.close()  # closes the file now, not when the generator is collected

    def close(self) -> None:
        """End the iterations still open (their files are closed); iterating again raises `VideoError`."""
        self._closed = True
        for gen in list(self._live):
            gen.close()
        self._live = weakref.WeakSet()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        i = self.info
        return f"{type(self).__name__}({i.source!r}: {i.frames} frames {i.width}x{i.height} at {i.fps:g} fps)"


class _ImageFiles(FrameSource):
    """Frames that are picture files, one per frame, in the order given."""

    def __init__(self, files: List[str], shown: str, fps, start, duration, max_frames):
        source_fps = float(fps) if fps is not None else IMAGE_FPS
        sel = _select(len(files), source_fps, None, start, duration, max_frames, shown)
        self._files = files
        used = sorted({sel.index(k) for k in range(sel.count)})
        width, height = self._size_of(files[used[0]])
        _check_pixels(shown_path(files[used[0]]), width, height)
        for i in used[1:]:
            size = self._size_of(files[i])
            if size != (width, height):
                raise VideoError(
                    f"the frames of {shown} differ in size: {shown_path(files[i])} is {size[0]}x{size[1]}, "
                    f"but {shown_path(files[used[0]])} is {width}x{height}; resize them all to one size"
                )
        info = ClipInfo(sel.count, width, height, source_fps, shown, sel.count / source_fps)
        super().__init__(info, sel)

    @staticmethod
    def _size_of(path: str) -> Tuple[int, int]:
        """The picture's size from its header (nothing is decoded)."""
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    return tuple(img.size)
        except Image.DecompressionBombError as exc:  # Pillow's own limit, far above MAX_PIXELS
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "too many pixels"
            raise VideoError(
                f"{shown_path(path)} has {pixels}, above the {_images.MAX_PIXELS / 1e6:.0f} megapixel limit; "
                "shrink the frames first (sketching works at 224 px anyway)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a file it cannot read
            raise VideoError(
                f"frame {shown_path(path)} is not a picture Pillow can read ({exc}); remove it from the "
                "frames or export it again"
            ) from None

    def _source_frames(self, stop: int):
        size = (self.info.width, self.info.height)
        for path in self._files[:stop]:
            yield lambda path=path: self._load(path, size)

    @staticmethod
    def _load(path: str, size):
        try:
            img = _images.load_image_file(path)
        except _images.ImageError as exc:
            raise VideoError(f"cannot read frame {shown_path(path)}: {exc}") from None
        if tuple(img.size) != tuple(size):
            raise VideoError(
                f"frame {shown_path(path)} is {img.size[0]}x{img.size[1]}, but the clip's frames are "
                f"{size[0]}x{size[1]}; resize them all to one size"
            )
        return _rgb_image(img)


class _PyAVFile(FrameSource):
    """A video file (or GIF) decoded with PyAV."""

    def __init__(self, path: str, shown: str, fps, start, duration, max_frames):
        av = _import_av(f"reading {shown}")
        self._path, self._shown = path, shown
        container = _av_open(av, path, shown)
        with container:
            if not container.streams.video:
                raise VideoError(f"{shown} has no video stream (is it a sound file?); give a video clip")
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
            if width <= 0 or height <= 0:
                raise VideoError(f"{shown} is broken or not a video: its video stream has no frame size")
            _check_pixels(shown, width, height)
            total, source_fps = self._count(container, stream, shown)
        if total <= 0:
            raise VideoError(f"{shown} holds no video frames; the file is empty or broken, export it again")
        sel = _select(total, source_fps, fps, start, duration, max_frames, shown)
        super().__init__(ClipInfo(sel.count, width, height, sel.fps, shown, sel.count / sel.fps), sel)

    @staticmethod
    def _count(container, stream, shown: str) -> Tuple[int, float]:
        """(frames, fps) from the stream's header; when it has no frame count (WebM, MKV, GIF), counted by
        reading the packets without decoding them (a GIF's rate from its frames' delays)."""
        gif = stream.codec_context.name == "gif"
        rate = None if gif else (stream.average_rate or stream.guessed_rate or stream.base_rate)
        total = 0 if gif else int(stream.frames or 0)
        if total > 0 and rate:
            return total, float(rate)
        ticks = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    total += 1
                    ticks += int(packet.duration or 0)
        except Exception as exc:  # noqa: BLE001 - PyAV's errors for damaged data
            raise VideoError(f"{shown} is broken or not a video: {_why(exc)}") from None
        if not rate:
            seconds = ticks * float(stream.time_base or 0)
            rate = total / seconds if seconds > 0 else GIF_FPS
        return total, float(rate)

    def _source_frames(self, stop: int):
        av = _import_av(f"reading {self._shown}")
        container = _av_open(av, self._path, self._shown)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            i = 0
            decoded = container.decode(stream)
            while i < stop:
                try:
                    frame = next(decoded)
                except StopIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - PyAV's errors for damaged data
                    raise VideoError(
                        f"cannot decode frame {i} of {self._shown}: {_why(exc)}; the file is damaged or "
                        "truncated, export it again"
                    ) from None
                yield lambda frame=frame: _av_image(frame)
                i += 1
        finally:
            container.close()


class _PillowGIF(FrameSource):
    """A GIF read with Pillow (when PyAV is not installed)."""

    def __init__(self, path: str, shown: str, fps, start, duration, max_frames):
        from PIL import Image

        self._path, self._shown = path, shown
        try:
            with Image.open(path) as img:
                width, height = img.size
                _check_pixels(shown, width, height)
                total = int(getattr(img, "n_frames", 1))
                ms = 0.0
                for i in range(total):
                    img.seek(i)
                    ms += float(img.info.get("duration") or 0)
        except VideoError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a damaged file
            raise VideoError(f"{shown} is broken or not a video: {_why(exc)}") from None
        source_fps = total / (ms / 1000.0) if ms > 0 else GIF_FPS
        sel = _select(total, source_fps, fps, start, duration, max_frames, shown)
        super().__init__(ClipInfo(sel.count, width, height, sel.fps, shown, sel.count / sel.fps), sel)

    def _source_frames(self, stop: int):
        from PIL import Image

        try:
            img = Image.open(self._path)
        except Exception as exc:  # noqa: BLE001
            raise VideoError(f"{self._shown} is broken or not a video: {_why(exc)}") from None
        with img:
            for i in range(stop):
                try:
                    img.seek(i)
                    frame = _rgb_image(img.convert("RGBA"))
                except EOFError:
                    return
                except Exception as exc:  # noqa: BLE001
                    raise VideoError(f"cannot decode frame {i} of {self._shown}: {_why(exc)}") from None
                yield lambda frame=frame: frame


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _import_av(what: str):
    try:
        import av
    except ImportError:
        raise VideoError(
            f"{what} needs PyAV, which is not installed: {_INSTALL_AV}; or give a folder of frame pictures "
            "(frame0001.png, ...) instead of a video file"
        ) from None
    return av


def _av_open(av, path: str, shown: str):
    try:
        return av.open(path, metadata_errors="ignore")
    except Exception as exc:  # noqa: BLE001 - av.error.* for every kind of bad input
        raise VideoError(f"{shown} is broken or not a video: {_why(exc)}") from None


def _av_image(frame):
    """A decoded PyAV frame as a PIL RGB image (a transparent one composited on white)."""
    fmt = frame.format
    if fmt.has_palette or any(c.is_alpha for c in fmt.components):
        from PIL import Image

        return _rgb_image(Image.fromarray(frame.to_ndarray(format="rgba"), "RGBA"))
    return frame.to_image()


def _natural_key(text: str):
    """frame2 before frame10: digit runs compare as numbers, the rest case-insensitively."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text)]


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def open_clip_source(source, fps=None, start: float = 0.0, duration=None, max_frames=None) -> FrameSource:
    """Open a clip for reading: a video file, a folder of picture files, or a glob pattern of them.

    ``source``: a video file (``VIDEO_SUFFIXES``; decoded with PyAV, GIFs with Pillow when PyAV is
    missing), a folder whose picture files (``IMAGE_SUFFIXES``) are the frames in natural order
    (frame2 before frame10), or a pattern with ``*``, ``?`` or ``[`` matching such files. Pictures run
    at ``fps`` (default `IMAGE_FPS`), one frame each, and ``start``/``duration`` count in those seconds.
    For a video, ``fps`` resamples (the nearest source frame for each output time; an fps above the
    clip's is lowered to it, with a warning). ``start`` seconds are skipped, at most ``duration`` seconds
    and then at most ``max_frames`` frames are kept.

    Only headers are read here (a video without a frame count in its header has its packets counted,
    undecoded); frames are decoded while iterating. Raises `VideoError` saying what to do for a
    missing path, a folder or pattern without pictures, a file that is no video or cannot be decoded,
    PyAV missing, frames of different sizes, frames over `clipasso.prepare.images.MAX_PIXELS`, an
    empty selection, a selection over `MAX_FRAMES` frames, and bad option values.
    """
    _check_options(fps, start, duration, max_frames)
    try:
        text = os.fspath(source)
    except TypeError:
        raise VideoError(f"a clip source must be a file, folder or pattern name; got {type(source).__name__}") from None
    text = os.path.expanduser(os.fsdecode(text))
    shown = shown_path(text)
    options = (fps, start, duration, max_frames)
    if os.path.isdir(text):
        names = sorted((n for n in os.listdir(text) if _is_image(n)), key=_natural_key)
        files = [os.path.join(text, n) for n in names if os.path.isfile(os.path.join(text, n))]
        if not files:
            raise VideoError(
                f"the folder {shown} holds no frame pictures ({', '.join(IMAGE_SUFFIXES)}); put the frames "
                "there as frame0001.png, frame0002.png, ... or give a video file"
            )
        return _ImageFiles(files, shown, *options)
    if os.path.isfile(text):
        suffix = os.path.splitext(text)[1].lower()
        if suffix == ".gif":
            try:
                import av  # noqa: F401 - PyAV reads GIFs when present
            except ImportError:
                return _PillowGIF(text, shown, *options)
            return _PyAVFile(text, shown, *options)
        if suffix in VIDEO_SUFFIXES:
            return _PyAVFile(text, shown, *options)
        if suffix in IMAGE_SUFFIXES:
            raise VideoError(
                f"{shown} is one picture, not a clip; sketch it as a picture, or give the folder (or a "
                "pattern such as frames/*.png) of all the frames"
            )
        raise VideoError(
            f"{shown} is not a video clip: its suffix {suffix or '(none)'!r} is not one of "
            f"{', '.join(VIDEO_SUFFIXES)}; convert it, e.g. ffmpeg -i {shown} clip.mp4"
        )
    if any(ch in text for ch in "*?["):
        matches = sorted((m for m in glob.glob(text) if os.path.isfile(m)), key=_natural_key)
        files = [m for m in matches if _is_image(m)]
        if not files:
            found = f"{len(matches)} files match it but none is a picture" if matches else "no file matches it"
            raise VideoError(
                f"the pattern {shown} finds no frames: {found} ({', '.join(IMAGE_SUFFIXES)}); check the folder "
                "and the pattern, e.g. frames/*.png"
            )
        return _ImageFiles(files, shown, *options)
    raise VideoError(f"clip not found: {shown} is no file or folder; check the name and the folder")


# ---------------------------------------------------------------------------------------------- writing
def _frame_array(frame, what: str):
    """A frame as an ``[H, W, 3]`` uint8 array: a ``[3,H,W]`` (or ``[1,3,H,W]``) float tensor in 0..1, or a
    PIL image."""
    import numpy as np

    if hasattr(frame, "mode") and hasattr(frame, "convert"):
        return np.asarray(_rgb_image(frame))
    if hasattr(frame, "detach") and hasattr(frame, "ndim"):
        t = frame.detach()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise VideoError(f"{what} must be a [3,H,W] float tensor in 0..1 or a PIL image; got {tuple(frame.shape)}")
        t = t.float().cpu().clamp(0, 1).nan_to_num(1.0)
        return (t.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    raise VideoError(f"{what} must be a [3,H,W] float tensor in 0..1 or a PIL image; got {type(frame).__name__}")


class VideoWriter:
    """Frames appended one at a time to a video file: MP4/M4V/MOV/MKV (H.264, yuv420p), WebM (VP9) or GIF,
    by ``path``'s suffix; ``codec`` names another PyAV encoder for the non-GIF formats.

        with VideoWriter("sketch.mp4", fps=24) as out:
            for frame in frames:          # [3,H,W] float tensors in 0..1, or PIL images
                out.write(frame)

    The size is the first frame's; every frame must have it. H.264 and VP9 need even sides: an odd
    width or height is padded with a white column or row. Video frames are encoded as they come (a long
    clip is never held in memory); a GIF keeps its frames until `close`, as Pillow writes a GIF in one
    go (GIFs are small, and a long one is no good anyway). GIF delays are whole hundredths of a second.

    Atomic: everything goes into a hidden temporary file next to ``path``, which replaces ``path`` on
    `close`. On an exception inside the ``with`` block the temporary file is removed and ``path`` is
    left as it was, unless ``keep_partial``: then the frames written so far are closed into a playable
    file at ``path`` (when there is at least one). The temporary file is never left behind either way.
    """

    def __init__(self, path, fps: float, *, codec: Optional[str] = None, keep_partial: bool = False):
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
            raise VideoError(f"the output fps must be a positive number of frames per second; got {fps!r}")
        self.path = Path(os.path.expanduser(os.fspath(path)))
        self.fps = float(fps)
        self.keep_partial = bool(keep_partial)
        self.frames = 0
        suffix = self.path.suffix.lower()
        if suffix not in WRITE_SUFFIXES:
            raise VideoError(
                f"cannot write a video named {shown_path(self.path)}: give it one of the suffixes "
                f"{', '.join(WRITE_SUFFIXES)}"
            )
        self._gif = suffix == ".gif"
        if self._gif and codec is not None:
            raise VideoError("a GIF is written by Pillow: codec applies to MP4, MOV, MKV and WebM files only")
        self._av = None if self._gif else _import_av(f"writing {shown_path(self.path)}")
        self._codec = codec or _CODECS.get(suffix)
        self._format = _FORMATS.get(suffix)
        self._size: Optional[Tuple[int, int]] = None
        self._container = None
        self._stream = None
        self._gif_frames: list = []
        self._done = False
        self._stack = ExitStack()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            from ..atomic import atomic_path

            self._tmp = self._stack.enter_context(atomic_path(self.path))
        except OSError as exc:
            raise VideoError(f"cannot write {shown_path(self.path)}: {exc.strerror or exc}") from None

    def write(self, frame) -> None:
        """Append one frame: a ``[3,H,W]`` float tensor in 0..1 (or ``[1,3,H,W]``), or a PIL image."""
        if self._done:
            raise VideoError(f"{shown_path(self.path)} is already closed; open a new VideoWriter to write more")
        arr = _frame_array(frame, f"frame {self.frames}")
        h, w = arr.shape[:2]
        if self._size is None:
            if h < 1 or w < 1:
                raise VideoError(f"frame 0 is empty ({w}x{h}); frames need at least one pixel")
            self._size = (h, w)
            if not self._gif:
                self._open_stream(h, w)
        elif (h, w) != self._size:
            raise VideoError(
                f"frame {self.frames} is {w}x{h}, but the video's frames are {self._size[1]}x{self._size[0]} "
                "(its first frame's size); give every frame one size"
            )
        if self._gif:
            from PIL import Image

            self._gif_frames.append(Image.fromarray(arr, "RGB"))
        else:
            import numpy as np

            ph, pw = self._stream.height, self._stream.width
            if (ph, pw) != (h, w):  # odd sides: white padding on the right and bottom
                padded = np.full((ph, pw, 3), 255, dtype=np.uint8)
                padded[:h, :w] = arr
                arr = padded
            video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            try:
                for packet in self._stream.encode(video_frame):
                    self._container.mux(packet)
            except Exception as exc:  # noqa: BLE001 - PyAV's encoder errors
                raise VideoError(
                    f"cannot encode frame {self.frames} into {shown_path(self.path)}: {_why(exc)}"
                ) from None
        self.frames += 1

    def _open_stream(self, h: int, w: int) -> None:
        av = self._av
        rate = Fraction(self.fps).limit_denominator(1001)
        try:
            self._container = av.open(str(self._tmp), "w", format=self._format)
            options = dict(_CODEC_OPTIONS.get(self._codec, {}))
            stream = self._container.add_stream(self._codec, rate=rate, options=options)
        except Exception as exc:  # noqa: BLE001 - an unknown codec, or one this FFmpeg lacks
            raise VideoError(
                f"cannot write {shown_path(self.path)} with the codec {self._codec!r}: {_why(exc)}; leave codec "
                "unset for the default (H.264, or VP9 for WebM)"
            ) from None
        try:  # yuv420p plays everywhere; a codec without it (e.g. libx264rgb) keeps its own default
            yuv = "yuv420p" in {f.name for f in (av.codec.Codec(self._codec, "w").video_formats or ())}
        except Exception:  # noqa: BLE001 - an encoder PyAV cannot describe
            yuv = True
        if yuv:  # 4:2:0 chroma needs even sides
            stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        else:
            stream.width, stream.height = w, h
        self._stream = stream

    def _finish(self) -> None:
        """Flush the encoder and close the file into the temporary path."""
        if self._gif:
            frames, self._gif_frames = self._gif_frames, []
            ms = max(10, int(round(1000.0 / self.fps)))
            first = frames[0]
            first.save(
                self._tmp,
                format="GIF",
                save_all=True,
                append_images=frames[1:],
                duration=ms,
                loop=0,
                disposal=1,
                optimize=False,
            )
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            container, self._container = self._container, None
            container.close()

    def close(self) -> Path:
        """Finish the file and move it to ``path``; returns the path. With no frame written it raises
        `VideoError` (and ``path`` is untouched)."""
        if self._done:
            return self.path
        if self.frames == 0:
            self._abort()
            raise VideoError(f"no frames were written to {shown_path(self.path)}; a video needs at least one frame")
        try:
            self._finish()
        except BaseException as exc:
            self._abort(exc)
            if isinstance(exc, Exception) and not isinstance(exc, VideoError):
                raise VideoError(f"cannot finish {shown_path(self.path)}: {_why(exc)}") from exc
            raise
        self._done = True
        self._stack.close()  # the temporary file replaces path
        return self.path

    def _abort(self, exc: Optional[BaseException] = None) -> None:
        """Drop everything: close the file quietly and remove the temporary file; ``path`` is untouched."""
        self._done = True
        self._gif_frames = []
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
        err = exc if exc is not None else VideoError("aborted")
        self._stack.__exit__(type(err), err, err.__traceback__)  # atomic_path removes the temporary file

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        elif self.keep_partial and self.frames > 0 and not self._done:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - the caller's exception is the one to see
                pass
        elif not self._done:
            self._abort(exc)
        return False


def write_video(frames, path, fps: float, *, codec: Optional[str] = None) -> Path:
    """Write ``frames`` (an iterable of ``[3,H,W]`` float tensors in 0..1, or PIL images) to ``path`` as a
    video at ``fps``: MP4/M4V/MOV/MKV (H.264), WebM (VP9) or GIF by its suffix; see `VideoWriter`.

    The frames are consumed one at a time (a generator of a long clip is never held in memory, except
    for a GIF); the file appears at ``path`` complete, or not at all. Returns the path."""
    with VideoWriter(path, fps, codec=codec) as out:
        for frame in frames:
            out.write(frame)
    return out.path


__all__ = [
    "ClipInfo",
    "FrameSource",
    "open_clip_source",
    "VideoWriter",
    "write_video",
    "VIDEO_SUFFIXES",
    "IMAGE_SUFFIXES",
    "WRITE_SUFFIXES",
    "MAX_FRAMES",
    "IMAGE_FPS",
]
