"""Input images: every form users hand us, and bad ones."""

import numpy as np
import pytest
import torch
from PIL import Image

from clipasso.prepare.images import ImageError, alpha_of, as_rgb, fit_square, load_image_file, square_box, to_pil


def test_forms_and_layouts():
    arr = (np.random.default_rng(0).random((5, 7, 3)) * 255).astype(np.uint8)
    ref = torch.from_numpy(arr).float().permute(2, 0, 1) / 255
    torch.testing.assert_close(as_rgb(arr), ref)
    torch.testing.assert_close(as_rgb(Image.fromarray(arr)), ref)
    torch.testing.assert_close(as_rgb(torch.from_numpy(arr).float()[None] / 255), ref)  # ComfyUI BHWC
    torch.testing.assert_close(as_rgb(ref), ref)  # CHW
    torch.testing.assert_close(as_rgb(ref * 255), ref, atol=1e-6, rtol=0)  # float 0..255
    one = torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1)
    torch.testing.assert_close(as_rgb(one, layout="chw"), one)  # 1-pixel CHW
    torch.testing.assert_close(as_rgb(one.view(1, 1, 3), layout="hwc"), one)
    with pytest.raises(ImageError, match="layout"):
        as_rgb(one, layout="xyz")


def test_grey_and_alpha_are_composited_over_white():
    grey = np.full((4, 4), 0.25, np.float32)
    assert torch.allclose(as_rgb(grey), torch.full((3, 4, 4), 0.25))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom transparent
    out = as_rgb(rgba)
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(out[:, 3, 0], torch.ones(3))
    assert torch.allclose(as_rgb(rgba, background=0.0)[:, 3, 0], torch.zeros(3))
    a = alpha_of(Image.fromarray(rgba))
    assert a.shape == (4, 4) and float(a[0, 0]) == 1.0 and float(a[3, 0]) == 0.0
    assert alpha_of(np.zeros((4, 4, 3))) is None
    la = Image.fromarray(np.stack([np.full((3, 3), 0, np.uint8), np.full((3, 3), 0, np.uint8)], -1), "LA")
    assert torch.allclose(as_rgb(la), torch.ones(3, 3, 3))


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((0, 5, 3)), "empty"),
        (np.zeros((5, 5, 7)), "channels"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.full((4, 4, 3), -3.0, np.float32), "0..1"),
        (torch.zeros(2, 4, 4, 3), "batch of 2"),
        (np.zeros((2, 2, 2, 2, 2)), "dimensions"),
        (np.array(["a"]), "dtype"),
        ("no-such-file.png", "not found"),
        (object(), "cannot read an image"),
    ],
)
def test_bad_images_are_refused_clearly(bad, match):
    with pytest.raises(ImageError, match=match):
        as_rgb(bad)


def test_huge_and_unreadable_files(tmp_path):
    with pytest.raises(ImageError, match="megapixels"):
        as_rgb(torch.zeros(1, 1, 3), max_pixels=0)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(ImageError, match="not an image"):
        load_image_file(junk)


def test_fit_square_pads_centred_and_never_stretches():
    img = torch.zeros(3, 20, 40)
    sq = fit_square(img, size=40, fill=1.0)
    assert sq.shape == (3, 40, 40)
    assert float(sq[:, :10].min()) == 1.0 and float(sq[:, 10:30].max()) == 0.0 and float(sq[:, 30:].min()) == 1.0
    assert square_box(20, 40) == (40, 10, 0)
    small = fit_square(img, size=20)
    assert small.shape == (3, 20, 20)
    assert to_pil(sq).size == (40, 40)


@pytest.mark.parametrize(
    "mode,make,expect_mode,expect_grey",
    [
        ("I;16", lambda: Image.fromarray(np.full((4, 4), 65535, np.uint16)), "L", 1.0),
        ("I;16B", lambda: Image.frombytes("I;16B", (4, 4), np.full((4, 4), 32896, ">u2").tobytes()), "L", 128 / 255),
        ("I 16-bit values", lambda: Image.fromarray(np.full((4, 4), 65535, np.int32), "I"), "L", 1.0),
        ("I 8-bit values", lambda: Image.fromarray(np.full((4, 4), 51, np.int32), "I"), "L", 0.2),
        ("F", lambda: Image.fromarray(np.full((4, 4), 0.25, np.float32), "F"), "F", 0.25),
        ("1", lambda: Image.new("1", (4, 4), 1), "L", 1.0),
        ("CMYK", lambda: Image.new("CMYK", (4, 4), (0, 0, 0, 255)), "RGB", 0.0),
        ("P", lambda: Image.new("P", (4, 4), 0), "RGB", 0.0),
    ],
)
def test_plain_mode_keeps_what_a_sketch_needs(mode, make, expect_mode, expect_grey):
    from clipasso.prepare.images import plain_mode

    img = make()
    assert plain_mode(img).mode == expect_mode
    torch.testing.assert_close(as_rgb(img), torch.full((3, 4, 4), float(expect_grey)), atol=1 / 255, rtol=0)


def test_palette_transparency_and_alpha_modes():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0
    a = alpha_of(p)
    assert a is not None and float(a[0, 0]) == 1.0 and float(a[1, 1]) == 0.0
    out = as_rgb(p)
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, 0, 0])) and torch.allclose(out[:, 1, 1], torch.ones(3))
    assert alpha_of(Image.new("P", (4, 4), 0)) is None
    assert alpha_of(Image.new("LA", (4, 4), (0, 128))) is not None


def test_sketch_size_minimum_and_file_checks(tmp_path):
    from clipasso.prepare.images import MIN_SIDE, check_sketch_size

    check_sketch_size(MIN_SIDE, MIN_SIDE)
    with pytest.raises(ImageError, match=f"at least {MIN_SIDE} px"):
        check_sketch_size(MIN_SIDE - 1, 500)
    with pytest.raises(ImageError, match="file contents, not a file name"):
        load_image_file(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ImageError, match="must be a str, bytes or path"):
        load_image_file(3)
    p = tmp_path / "ok.png"
    Image.new("RGB", (10, 10), "red").save(p)
    img = load_image_file(p)
    assert img.size == (10, 10) and img.mode == "RGB"
    with pytest.raises(ImageError, match="megapixel limit"):
        load_image_file(p, max_pixels=99)
