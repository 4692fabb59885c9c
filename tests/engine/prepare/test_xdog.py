"""XDoG ink map: original parameters, 1 = ink, Otsu and blur checked against independent code."""

import numpy as np
import pytest
import torch

from clipasso.prepare.images import as_rgb, fit_square
from clipasso.prepare.xdog import XDOG_DEFAULTS, gaussian_blur, otsu_threshold, xdog_edges, xdog_response

torch.set_num_threads(2)


def dark_square(size=96, lo=30, hi=66):
    img = torch.ones(3, size, size)
    img[:, lo:hi, lo:hi] = 0.0
    return img


def test_defaults_are_the_originals():
    assert XDOG_DEFAULTS == dict(gamma=0.98, phi=200.0, eps=-0.1, sigma=0.8, k=10.0)


def test_dark_shape_is_ink_and_paper_is_not():
    e = xdog_edges(dark_square())
    assert e.shape == (96, 96) and e.dtype == torch.float32
    assert set(torch.unique(e).tolist()) <= {0.0, 1.0}
    assert float(e[30:66, 30:66].mean()) > 0.95  # the dark object is ink (1)
    assert float(e[:20, :20].sum()) == 0 and float(e[-20:, -20:].sum()) == 0  # far paper is not


@pytest.mark.parametrize("image", [torch.ones(3, 40, 40), torch.full((3, 40, 40), 0.4), torch.ones(3, 1, 1)])
def test_flat_images_have_no_ink(image):
    e = xdog_edges(image)
    assert e.shape == image.shape[1:] and float(e.sum()) == 0


def test_real_photo_marks_dark_pixels_and_few_bright_ones():
    from skimage import data

    img = fit_square(as_rgb(data.coffee()), 224)
    e = xdog_edges(img)
    grey = (img * torch.tensor([0.2125, 0.7154, 0.0721]).view(3, 1, 1)).sum(0)
    dark = grey < 0.5
    assert 0.1 < float(e.mean()) < 0.6
    assert float(e[dark].mean()) > 0.6
    assert float(e[~dark].mean()) < 0.2


def test_accepts_hwc_uint8_arrays():
    arr = (dark_square().permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert torch.equal(xdog_edges(arr), xdog_edges(dark_square()))


def test_otsu_matches_scikit_image():
    from skimage.filters import threshold_otsu

    g = torch.Generator().manual_seed(0)
    for values in (
        torch.cat([torch.rand(500, generator=g) * 0.3, 0.6 + torch.rand(300, generator=g) * 0.4]),
        xdog_response(dark_square()).reshape(-1),
    ):
        assert otsu_threshold(values) == pytest.approx(float(threshold_otsu(values.numpy())), abs=1e-5)


def test_blur_matches_scipy():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(37, 50, generator=torch.Generator().manual_seed(1))
    for sigma in (0.8, 8.0):
        ref = gaussian_filter(x.double().numpy(), sigma, mode="nearest", truncate=4.0)
        assert np.allclose(gaussian_blur(x, sigma).numpy(), ref, atol=1e-5)


def test_soft_response_follows_the_original_formula():
    img = torch.rand(3, 30, 30, generator=torch.Generator().manual_seed(2))
    grey = (img * torch.tensor([0.2125, 0.7154, 0.0721]).view(3, 1, 1)).sum(0)
    d = gaussian_blur(grey, 0.8) - 0.98 * gaussian_blur(grey, 8.0)
    soft = torch.where(d < -0.1, torch.ones_like(d), 1 + torch.tanh(200 * d))
    soft = (soft - soft.min()) / (soft.max() - soft.min())
    assert torch.allclose(xdog_response(img), soft, atol=1e-6)
    assert torch.equal(xdog_edges(img), (soft < otsu_threshold(soft)).float())


def test_bad_parameters_and_images():
    with pytest.raises(ValueError, match="sigma and k must be positive"):
        xdog_edges(dark_square(), sigma=0)
    with pytest.raises(ValueError, match="finite"):
        xdog_edges(dark_square(), phi=float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        xdog_edges(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="0..1"):
        xdog_edges(torch.full((3, 8, 8), -3.0))
