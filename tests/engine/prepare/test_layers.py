"""Scene layers (clipasso.prepare.layers): the matte of a real photo (rembg's bundled u2netp) splits it into
the object on white and the background with the object's hole inpainted (scikit-image's biharmonic fill)."""

import pytest
import torch

from clipasso.prepare.layers import LayerError, grow, hole_margin, inpaint, split_layers
from clipasso.prepare.target import prepare_picture
from clipasso.settings import PrepareSettings

skdata = pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "coffee", "chelsea")


@pytest.fixture(scope="module")
def photos():
    """picture [3,224,224] with its background and its u2netp matte, per photo."""
    out = {}
    for name in PHOTOS:
        picture, mask, _ = prepare_picture(
            getattr(skdata, name)(), PrepareSettings(framing="pad"), keep_background=True
        )
        out[name] = (picture, mask)
    return out


def _steps(image: torch.Tensor, hole: torch.Tensor):
    """Mean colour step between horizontal/vertical neighbours across the hole's edge, and between neighbours
    both outside it (the picture's own texture)."""
    seam, texture = [], []
    for dim in (1, 2):
        a, b = image.narrow(dim, 0, image.shape[dim] - 1), image.narrow(dim, 1, image.shape[dim] - 1)
        ha, hb = hole.narrow(dim - 1, 0, hole.shape[dim - 1] - 1), hole.narrow(dim - 1, 1, hole.shape[dim - 1] - 1)
        step = (a - b).abs().mean(0)
        seam.append(step[ha != hb])
        texture.append(step[~ha & ~hb])
    return float(torch.cat(seam).mean()), float(torch.cat(texture).mean())


def _ring(hole: torch.Tensor, width: int = 4) -> torch.Tensor:
    return (grow(hole, width) - hole).bool()


@pytest.mark.parametrize("name", PHOTOS)
def test_real_photo_splits_into_object_and_inpainted_background(photos, name):
    picture, mask = photos[name]
    assert mask is not None and 0.02 < float(mask.mean()) < 0.9, "u2netp finds the photo's object"
    layers = split_layers(picture, mask)
    assert layers.names == ("background", "foreground")
    fg, bg, hole = layers.foreground, layers.background, layers.hole.bool()
    # foreground: the object's own pixels, white elsewhere (what background removal makes)
    m = mask.bool()
    assert torch.equal(fg[:, m], picture[:, m])
    assert bool((fg[:, ~m] == 1.0).all())
    # the hole covers the object with a margin; outside it the background is the picture, unchanged
    assert bool(hole[m].all()) and int(hole.sum()) > int(m.sum())
    assert torch.equal(bg[:, ~hole], picture[:, ~hole])
    # the hole is filled from its surroundings: not white paper, close to the colours around it
    fill = bg[:, hole]
    assert float((fill > 0.98).all(0).float().mean()) < 0.5, "the hole is not left white"
    around = picture[:, _ring(layers.hole)]  # the fill stays within the colours around the hole
    low, high = around.quantile(0.01, dim=1), around.quantile(0.99, dim=1)
    inside = ((fill >= low[:, None] - 0.05) & (fill <= high[:, None] + 0.05)).float().mean()
    assert float(inside) > 0.98
    seam, texture = _steps(bg, hole)  # the fill meets the picture without a seam
    assert seam < 2 * texture + 0.02, (seam, texture)


@pytest.mark.parametrize("name", PHOTOS)
def test_the_objects_pixels_never_reach_the_background_target(photos, name):
    """Whatever the object looks like, the background target is the same: its fill comes from outside the hole."""
    picture, mask = photos[name]
    first = split_layers(picture, mask)
    noise = torch.rand(picture.shape, generator=torch.Generator().manual_seed(1))
    other = torch.where(mask.bool()[None], noise, picture)  # another object, same place
    second = split_layers(other, mask)
    assert torch.equal(first.background, second.background)
    assert not torch.equal(first.foreground, second.foreground)


def test_a_soft_red_object_leaves_no_red_in_the_green_background():
    h = w = 96
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    r = ((yy - 48) ** 2 + (xx - 40) ** 2).sqrt()
    cover = (22 - r).clamp(0, 1.5) / 1.5  # an antialiased disc: its edge pixels are part red
    green = torch.stack([0.1 + 0.2 * xx / w, 0.6 + 0.0 * xx, 0.2 + 0.1 * yy / h])
    red = torch.tensor([0.9, 0.05, 0.05]).view(3, 1, 1)
    picture = green * (1 - cover) + red * cover
    layers = split_layers(picture, cover)  # the matte cut at 0.5 misses the disc's outer edge
    assert float(layers.background[0].max()) <= float(green[0].max()) + 0.01
    assert float((layers.background - green).abs().max()) < 0.05


def test_no_object_is_one_background_layer_and_a_full_object_one_foreground_layer():
    pic = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0))
    for mask in (None, torch.zeros(40, 50)):
        layers = split_layers(pic, mask)
        assert layers.names == ("background",)
        assert torch.equal(layers.background, pic) and layers.foreground is None
        assert bool((layers.region("background") == 1).all())
        with pytest.raises(LayerError, match="no foreground layer"):
            layers.region("foreground")
    speck = torch.zeros(40, 50)
    speck[3, 4] = 1.0  # 1 pixel of 2000: below the 0.5 % a layer needs
    assert split_layers(pic, speck).names == ("background",)
    full = split_layers(pic, torch.ones(40, 50))
    assert full.names == ("foreground",) and torch.equal(full.foreground, pic)


def test_inpaint_keeps_the_picture_outside_the_hole_and_solves_large_pictures_small():
    pic = torch.rand(3, 300, 200, generator=torch.Generator().manual_seed(2))
    hole = torch.zeros(300, 200)
    hole[100:180, 60:140] = 1
    out = inpaint(pic, hole)
    assert out.shape == pic.shape
    assert torch.equal(out[:, hole == 0], pic[:, hole == 0])
    assert float((out[:, hole == 1] - pic[:, hole == 1]).abs().mean()) > 0.05  # the noise inside is replaced
    assert torch.equal(inpaint(pic, torch.zeros(300, 200)), pic)
    assert hole_margin(224, 224) == 3 and hole_margin(20, 20) == 2


def test_bad_input_is_a_clear_error():
    pic = torch.rand(3, 32, 32)
    with pytest.raises(LayerError, match="mask is 16x16 but the picture is 32x32"):
        split_layers(pic, torch.ones(16, 16))
    with pytest.raises(LayerError, match="values in 0..1"):
        split_layers(pic, torch.full((32, 32), 2.0))
    with pytest.raises(LayerError, match="one 2-D matte"):
        split_layers(pic, torch.ones(2, 32, 32))
    bad = pic.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(LayerError, match="NaN"):
        split_layers(bad, None)
    with pytest.raises(LayerError, match="RGB in 0..1"):
        split_layers(pic * 3, None)
    with pytest.raises(LayerError, match="whole picture"):
        inpaint(pic, torch.ones(32, 32))
    with pytest.raises(LayerError, match="margin"):
        split_layers(pic, None, margin=-1)
