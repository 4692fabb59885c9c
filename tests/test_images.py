"""Input images: every form users hand us, and bad ones."""
import numpy as np
import pytest
import torch
from PIL import Image

from clipasso.images import ImageError, alpha_of, as_rgb, fit_square, load_image_file, square_box, to_pil


def test_forms_and_layouts():
    arr = (np.random.default_rng(0).random((5, 7, 3)) * 255).astype(np.uint8)
    ref = torch.from_numpy(arr).float().permute(2, 0, 1) / 255
    torch.testing.assert_close(as_rgb(arr), ref)
    torch.testing.assert_close(as_rgb(Image.fromarray(arr)), ref)
    torch.testing.assert_close(as_rgb(torch.from_numpy(arr).float()[None] / 255), ref)   # ComfyUI BHWC
    torch.testing.assert_close(as_rgb(ref), ref)                                          # CHW
    torch.testing.assert_close(as_rgb(ref * 255), ref, atol=1e-6, rtol=0)                 # float 0..255
    one = torch.tensor([0.2, 0.4, 0.6]).view(3, 1, 1)
    torch.testing.assert_close(as_rgb(one, layout="chw"), one)                            # 1-pixel CHW
    torch.testing.assert_close(as_rgb(one.view(1, 1, 3), layout="hwc"), one)
    with pytest.raises(ImageError, match="layout"):
        as_rgb(one, layout="xyz")


def test_grey_and_alpha_are_composited_over_white():
    grey = np.full((4, 4), 0.25, np.float32)
    assert torch.allclose(as_rgb(grey), torch.full((3, 4, 4), 0.25))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255      # top half opaque red, bottom transparent
    out = as_rgb(rgba)
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(out[:, 3, 0], torch.ones(3))
    assert torch.allclose(as_rgb(rgba, background=0.0)[:, 3, 0], torch.zeros(3))
    a = alpha_of(Image.fromarray(rgba))
    assert a.shape == (4, 4) and float(a[0, 0]) == 1.0 and float(a[3, 0]) == 0.0
    assert alpha_of(np.zeros((4, 4, 3))) is None
    la = Image.fromarray(np.stack([np.full((3, 3), 0, np.uint8), np.full((3, 3), 0, np.uint8)], -1), "LA")
    assert torch.allclose(as_rgb(la), torch.ones(3, 3, 3))


@pytest.mark.parametrize("bad,match", [
    (np.zeros((0, 5, 3)), "empty"),
    (np.zeros((5, 5, 7)), "channels"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    (np.full((4, 4, 3), -3.0, np.float32), "0..1"),
    (torch.zeros(2, 4, 4, 3), "batch of 2"),
    (np.zeros((2, 2, 2, 2, 2)), "dimensions"),
    (np.array(["a"]), "dtype"),
    ("no-such-file.png", "not found"),
    (object(), "cannot read an image"),
])
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
