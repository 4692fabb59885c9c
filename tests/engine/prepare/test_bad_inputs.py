"""Bad input images, each built in its real form (a real file on disk, a real tensor), handed to a real
entry point, and checked for: the error type, a message that says what to do, bounded time and memory.

The table of outcomes (input, behaviour, time, peak memory) is printed at the end of the module when
CLIPASSO_BAD_INPUT_TABLE is set (to a file name, or "-" for the terminal with ``pytest -s``).
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import time
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFile

from clipasso import cli
from clipasso.prepare.images import MIN_SIDE, ImageError, as_rgb, load_image_file
from clipasso.pipeline import prepare_target, sketch
from clipasso.testing.memory import peak_rss_mib

TIME_LIMIT_S = 10.0
MEMORY_LIMIT_MB = 100.0  # for every refusal and every prepared target
SKETCH_MEMORY_LIMIT_MB = 1500.0  # a whole CLI sketch that works (torch, the rasteriser, the optimiser)
ROWS = []  # (input, behaviour, seconds, peak MB) for the report table


# --------------------------------------------------------------------------- building real inputs


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path, width, height, bit_depth, colour_type, row=None, rows=None, idat=None):
    """A PNG written by hand, streaming: ``row`` (one filtered-less scanline, repeated) or ``rows`` (a
    list of scanlines) or raw ``idat`` bytes (e.g. too few, for a header that lies)."""
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)))
        if idat is None:
            comp = zlib.compressobj(6)
            parts = []
            lines = rows if rows is not None else (row for _ in range(height))
            for line in lines:
                parts.append(comp.compress(b"\x00" + line))
            parts.append(comp.flush())
            idat = b"".join(parts)
        fh.write(_chunk(b"IDAT", idat))
        fh.write(_chunk(b"IEND", b""))
    return path


def _picture(mode="RGB", size=(64, 48)):
    """A dark ring on white (or on transparent for modes with alpha)."""
    w, h = size
    back = {"RGB": "white", "L": 255, "RGBA": (0, 0, 0, 0), "LA": (0, 0)}[mode]
    ink = {"RGB": (20, 20, 20), "L": 20, "RGBA": (20, 20, 20, 255), "LA": (20, 255)}[mode]
    img = Image.new(mode, size, back)
    ImageDraw.Draw(img).ellipse(
        [w * 0.2, h * 0.2, w * 0.8, h * 0.8], fill=ink if "A" in mode else None, outline=ink, width=3
    )
    return img


def big_1bit_png(tmp):  # a real 20000 x 20000 PNG (1-bit grey, white with a black band): ~100 KB
    side = 20000
    white, band = b"\xff" * (side // 8), b"\xff" * 1000 + b"\x00" * 500 + b"\xff" * 1000
    rows = (band if 8000 <= y < 12000 else white for y in range(side))
    return write_png(tmp / "huge_20000.png", side, side, 1, 0, rows=rows)


def header_claims(side):
    def build(tmp):  # an 8-bit RGB PNG whose IHDR claims side x side, with a few bytes of data
        return write_png(tmp / f"claims_{side}.png", side, side, 8, 2, idat=zlib.compress(b"\x00" * 64))

    return build


def truncated_jpeg(tmp):
    buf = io.BytesIO()
    _picture("RGB", (200, 150)).save(buf, "JPEG", quality=90)
    p = tmp / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return p


def corrupt_png(tmp):  # the IDAT bytes are scrambled (CRC mismatch)
    buf = io.BytesIO()
    _picture("RGB").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    at = data.index(b"IDAT") + 20
    data[at : at + 16] = bytes(16)
    p = tmp / "corrupt.png"
    p.write_bytes(bytes(data))
    return p


def cmyk_jpeg(tmp):
    img = Image.new("CMYK", (64, 48), (0, 0, 0, 0))  # white paper
    ImageDraw.Draw(img).rectangle([16, 12, 48, 36], fill=(0, 0, 0, 255))  # black ink
    p = tmp / "cmyk.jpg"
    img.save(p, "JPEG", quality=95)
    return p


def png16_grey(tmp):  # 16-bit grey: paper at 60000/65535, ink at 4000/65535
    arr = np.full((48, 64), 60000, np.uint16)
    arr[12:36, 16:48] = 4000
    p = tmp / "grey16.png"
    Image.fromarray(arr).save(p)
    return p


def png48_rgb(tmp):  # 16 bits per channel RGB (48-bit), written by hand: Pillow reads it as 8-bit RGB
    w, h = 64, 48
    paper, ink = struct.pack(">HHH", 65000, 65000, 65000), struct.pack(">HHH", 3000, 3000, 3000)
    rows = [b"".join(ink if 12 <= y < 36 and 16 <= x < 48 else paper for x in range(w)) for y in range(h)]
    return write_png(tmp / "rgb48.png", w, h, 16, 2, rows=rows)


def palette_png(transparent):
    def build(tmp):
        img = Image.new("P", (64, 48), 0)
        img.putpalette([255, 255, 255, 20, 20, 20] + [0] * 762)
        ImageDraw.Draw(img).rectangle([16, 12, 48, 36], fill=1)
        p = tmp / f"palette{'_trns' if transparent else ''}.png"
        img.save(p, transparency=0) if transparent else img.save(p)
        return p

    return build


def la_png(tmp):
    p = tmp / "la.png"
    _picture("LA").save(p)
    return p


def mode_tiff(mode):
    def build(tmp):
        arr = np.full((48, 64), 240, np.float32 if mode == "F" else np.int32)
        arr[12:36, 16:48] = 20
        if mode == "F":
            arr /= 255.0
        p = tmp / f"mode_{mode}.tif"
        Image.fromarray(arr, mode).save(p)
        return p

    return build


def exif_rotated_jpeg(tmp):
    """Stored 80 wide x 40 tall with a dark bar on the stored LEFT edge, EXIF Orientation 6 (a phone held
    upright): shown 40 wide x 80 tall with the bar along the TOP."""
    img = Image.new("RGB", (80, 40), "white")
    ImageDraw.Draw(img).rectangle([0, 0, 15, 39], fill="black")
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp / "phone.jpg"
    img.save(p, "JPEG", quality=95, exif=exif.tobytes())
    return p


def all_transparent_png(tmp):
    p = tmp / "clear.png"
    Image.new("RGBA", (64, 48), (10, 10, 10, 0)).save(p)
    return p


def sized_png(w, h):
    def build(tmp):
        p = tmp / f"tiny_{w}x{h}.png"
        Image.new("RGB", (w, h), "black").save(p)
        return p

    return build


def text_as_png(tmp):
    p = tmp / "notes.png"
    p.write_text("this is a shopping list, not a picture\n")
    return p


def empty_file(tmp):
    p = tmp / "empty.png"
    p.write_bytes(b"")
    return p


def a_folder(tmp):
    d = tmp / "photos.png"
    d.mkdir()
    return d


def nan_tensor(tmp):
    t = torch.rand(1, 64, 64, 3)  # ComfyUI IMAGE layout
    t[0, 5, 5, 1] = float("nan")
    return t


def inf_array(tmp):
    a = np.random.default_rng(0).random((48, 64, 3)).astype(np.float32)
    a[3, 4, 0] = np.inf
    return a


def i16b_image(tmp):  # a big-endian 16-bit PIL image handed to the Python API
    arr = np.full((48, 64), 50000, ">u2")
    arr[12:36, 16:48] = 2000
    return Image.frombytes("I;16B", (64, 48), arr.tobytes())


def long_name(tmp):
    return str(tmp / ("a" * 300 + ".png"))


def non_utf8_name(tmp):  # a Linux file name that is not valid UTF-8, given as bytes
    name = os.fsencode(str(tmp)) + b"/caf\xe9_\xff.png"
    with open(name, "wb") as fh:
        _picture("RGBA").save(fh, "PNG")  # with alpha: --saliency mask takes its object mask from it
    return name


def non_utf8_name_str(tmp):  # the same name as the CLI gets it: a str with surrogate escapes
    return os.fsdecode(non_utf8_name(tmp))


def symlink_loop(tmp):
    a, b = tmp / "loop_a.png", tmp / "loop_b.png"
    os.symlink(b, a)
    os.symlink(a, b)
    return a


def dangling_symlink(tmp):
    p = tmp / "link.png"
    os.symlink(tmp / "moved_away.png", p)
    return p


# --------------------------------------------------------------------------- entry points


def load(x, tmp):
    return load_image_file(x)


def prepare(x, tmp):
    return prepare_target(x, background_removal=False, allow_download=False, framing="stretch")


def api_sketch(x, tmp):
    return sketch(
        x,
        loss="trace",
        saliency="mask",
        background_removal=False,
        iterations=1,
        seeds=1,
        strokes=4,
        device="cpu",
        allow_download=False,
    )


def rgb(x, tmp):
    return as_rgb(x)


CLI_FLAGS = [
    "--loss",
    "trace",
    "--saliency",
    "mask",
    "--no-background-removal",
    "--iterations",
    "1",
    "--seeds",
    "1",
    "--strokes",
    "4",
    "--device",
    "cpu",
    "-q",
]


def run_cli(x, tmp):
    return cli.main(["sketch", os.fsdecode(x), "-o", str(tmp / "out.svg")] + CLI_FLAGS)


def _dark(t, rows=slice(None), cols=slice(None)):
    """Mean brightness of a region of the target ([3, H, W], or prepare_target's (target, mask))."""
    t = t[0] if isinstance(t, tuple) else t
    return float(t[:, rows, cols].mean())


# --------------------------------------------------------------------------- the table

ERR = "error"
# (id, builder, entry, expected: ("error", regex that must be in the message) or ("works", check or None))
CASES = [
    (
        "20000x20000 PNG (1-bit, ~100 KB)",
        big_1bit_png,
        load,
        (
            ERR,
            r"20000x20000 = 400 megapixels.*64 megapixel "
            r"limit.*shrink the picture",
        ),
    ),
    ("20000x20000 PNG via CLI", big_1bit_png, run_cli, (ERR, r"400 megapixels.*shrink the picture")),
    (
        "PNG header claims 100000x100000",
        header_claims(100000),
        load,
        (
            ERR,
            r"100000x100000 = 10000 megapixels"
            r".*shrink the picture",
        ),
    ),
    ("PNG header claims 10000x10000", header_claims(10000), load, (ERR, r"10000x10000 = 100 megapixels.*shrink")),
    ("PNG header claims 8001x8001", header_claims(8001), load, (ERR, r"8001x8001 = 64.02 megapixels.*shrink")),
    ("truncated JPEG", truncated_jpeg, load, (ERR, r"truncated.*save or export it again")),
    ("corrupt PNG (scrambled IDAT)", corrupt_png, load, (ERR, r"could not (decode|read).*save or export it again")),
    (
        "CMYK JPEG",
        cmyk_jpeg,
        prepare,
        ("works", lambda t: _dark(t, slice(90, 130), slice(90, 130)) < 0.2 and _dark(t, slice(0, 20)) > 0.9),
    ),
    (
        "16-bit grey PNG (I;16)",
        png16_grey,
        prepare,
        ("works", lambda t: _dark(t, slice(90, 130), slice(90, 130)) < 0.15 and 0.85 < _dark(t, slice(0, 20)) < 0.95),
    ),
    (
        "16-bit grey PIL image I;16B (API)",
        i16b_image,
        prepare,
        ("works", lambda t: _dark(t, slice(90, 130), slice(90, 130)) < 0.1 and 0.7 < _dark(t, slice(0, 20)) < 0.8),
    ),
    (
        "48-bit RGB PNG",
        png48_rgb,
        prepare,
        ("works", lambda t: _dark(t, slice(90, 130), slice(90, 130)) < 0.1 and _dark(t, slice(0, 20)) > 0.95),
    ),
    (
        "palette PNG",
        palette_png(False),
        prepare,
        ("works", lambda t: _dark(t, slice(90, 130), slice(90, 130)) < 0.1 and _dark(t, slice(0, 20)) > 0.99),
    ),
    (
        "palette PNG with transparency",
        palette_png(True),
        prepare,
        ("works", lambda out: out[1] is not None and _dark(out[0], slice(90, 130), slice(90, 130)) < 0.1),
    ),
    (
        "LA PNG",
        la_png,
        prepare,
        ("works", lambda out: out[1] is not None and _dark(out[0], slice(100, 120), slice(100, 120)) < 0.15),
    ),
    (
        "32-bit integer TIFF (I)",
        mode_tiff("I"),
        prepare,
        ("works", lambda t: _dark(t, slice(90, 130), slice(90, 130)) < 0.1 and _dark(t, slice(0, 20)) > 0.9),
    ),
    (
        "float TIFF (F)",
        mode_tiff("F"),
        prepare,
        ("works", lambda t: _dark(t, slice(90, 130), slice(90, 130)) < 0.1 and _dark(t, slice(0, 20)) > 0.9),
    ),
    (
        "EXIF-rotated JPEG (orientation 6)",
        exif_rotated_jpeg,
        load,
        (
            "works",
            lambda im: (
                im.size == (40, 80)
                and float(np.asarray(im.convert("L"))[:12].mean()) < 30
                and float(np.asarray(im.convert("L"))[20:].mean()) > 225
            ),
        ),
    ),
    (
        "EXIF-rotated JPEG, sketch target",
        exif_rotated_jpeg,
        prepare,
        ("works", lambda t: _dark(t, slice(0, 30)) < 0.15 and _dark(t, slice(60, None)) > 0.9),
    ),
    ("fully transparent PNG", all_transparent_png, prepare, (ERR, r"fully transparent.*nothing to sketch")),
    ("fully transparent PNG via CLI", all_transparent_png, run_cli, (ERR, r"fully transparent")),
    ("1x1 PNG", sized_png(1, 1), prepare, (ERR, rf"1x1 pixels, too small.*at least {MIN_SIDE} px")),
    ("3x3 PNG", sized_png(3, 3), prepare, (ERR, rf"3x3 pixels, too small.*at least {MIN_SIDE} px")),
    ("1x5000 PNG", sized_png(1, 5000), prepare, (ERR, rf"1x5000 pixels, too small.*at least {MIN_SIDE} px")),
    ("1x1 PNG via CLI", sized_png(1, 1), run_cli, (ERR, rf"too small to sketch.*at least {MIN_SIDE} px")),
    (f"{MIN_SIDE}x{MIN_SIDE} PNG (the minimum)", sized_png(MIN_SIDE, MIN_SIDE), prepare, ("works", None)),
    ("text file named .png", text_as_png, load, (ERR, r"not an image Pillow can read.*check that it is a picture")),
    ("text file named .png via CLI", text_as_png, run_cli, (ERR, r"not an image")),
    ("empty file", empty_file, load, (ERR, r"empty \(0 bytes\).*save it again")),
    ("a folder given as the image", a_folder, load, (ERR, r"is a folder, not an image file; give the path")),
    ("a folder via CLI", a_folder, run_cli, (ERR, r"is a folder")),
    ("NaN in an IMAGE tensor", nan_tensor, prepare, (ERR, r"1 NaN or infinite value.*nan_to_num")),
    ("NaN tensor to clipasso.sketch", nan_tensor, api_sketch, (ERR, r"NaN or infinite.*nan_to_num")),
    ("inf in a numpy array (as_rgb)", inf_array, rgb, (ERR, r"NaN or infinite.*fix the node or code")),
    ("file name of 300 characters", long_name, load, (ERR, r"file name is too long.*rename")),
    (
        "non-UTF-8 file name (bytes)",
        non_utf8_name,
        prepare,
        ("works", lambda out: tuple(out[0].shape) == (3, 224, 224)),
    ),
    ("non-UTF-8 file name via CLI", non_utf8_name_str, run_cli, ("works", None)),
    ("symlink loop", symlink_loop, load, (ERR, r"symbolic links form a loop; fix the link")),
    ("dangling symlink", dangling_symlink, load, (ERR, r"symbolic link to .*moved_away.png, which does not exist")),
]


class _DecodeSpy:
    """Counts calls of Pillow's decoder (ImageFile.load) to show refused files were never decoded."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = ImageFile.ImageFile.load

        def load(im, *a, **k):
            self.calls += 1
            return real(im, *a, **k)

        monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("name,build,entry,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, build, entry, expected, tmp_path, capsys, monkeypatch):
    x = build(tmp_path)
    spy = _DecodeSpy(monkeypatch)
    capsys.readouterr()
    rss0 = peak_rss_mib()
    # tracemalloc slows Python code several times: a whole (1-iteration) CLI sketch is measured by maxrss only
    traced = not (entry is run_cli and expected[0] == "works")
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    error, result = None, None
    try:
        result = entry(x, tmp_path)
    except Exception as exc:  # noqa: BLE001 - checked below
        error = exc
    seconds = time.perf_counter() - t0
    peak = 0
    if traced:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    peak_mb = max(peak / 2**20, peak_rss_mib() - rss0)
    out, err = capsys.readouterr()

    kind, check = expected
    if entry is run_cli:
        message = err.strip()
        assert error is None, f"the CLI raised instead of printing an error: {error!r}"
        assert "Traceback" not in err
        if kind == ERR:
            assert result != 0
            assert message.startswith("clipasso: error: "), err
            assert re.search(check, message, re.S), message
        else:
            assert result == 0, err
        behaviour = message.splitlines()[0] if kind == ERR else "works"
    elif kind == ERR:
        assert isinstance(error, ImageError), f"expected ImageError, got {error!r}"
        message = str(error)
        assert re.search(check, message, re.S), message
        assert "; " in message, "the message should say what to do after the reason"
        behaviour = message.splitlines()[0]
    else:
        assert error is None, f"{name} should work; got {error!r}"
        if check is not None:
            assert check(result), name
        behaviour = "works"

    assert seconds < TIME_LIMIT_S, f"{name} took {seconds:.1f} s"
    limit = MEMORY_LIMIT_MB if traced else SKETCH_MEMORY_LIMIT_MB
    assert peak_mb < limit, f"{name} used {peak_mb:.0f} MB"
    if "megapixels" in behaviour:
        assert spy.calls == 0, "a picture above the pixel limit must be refused before decoding"
    ROWS.append((name, behaviour, seconds, peak_mb))


# NaN / inf IMAGE and MASK inputs of the nodes: tests/nodes/test_nodes.py (they need the real ComfyUI core).


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    where = os.environ.get("CLIPASSO_BAD_INPUT_TABLE")
    if not where or not ROWS:
        return
    lines = ["| input | behaviour | time | peak memory |", "| --- | --- | --- | --- |"]
    for name, behaviour, seconds, peak in ROWS:
        lines.append(f"| {name} | {behaviour.replace('|', '/')} | {seconds:.2f} s | {peak:.1f} MB |")
    text = "\n".join(lines) + "\n"
    if where == "-":
        sys.stdout.write("\n" + text)
    else:
        with open(where, "w", encoding="utf-8") as fh:
            fh.write(text)
