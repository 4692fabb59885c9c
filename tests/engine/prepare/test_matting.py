"""Background removal with rembg's real U²-Net-p weights (the copy shipped in clipasso/data), no mocks.

Nothing here needs ../shared or U2NET_HOME: a fresh clone's test run uses the bundled file."""

import hashlib
import os
import shutil

import numpy as np
import pytest
import torch

from clipasso.prepare import matting
from clipasso.prepare.matting import (
    Matting,
    MattingError,
    MattingWarning,
    MattingWeightsNotFoundError,
    remove_background,
)

torch.set_num_threads(2)

BUNDLED = os.path.join(matting.BUNDLED_DIR, "u2netp.onnx")
U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"  # the checksum rembg verifies for its download


@pytest.fixture(autouse=True)
def no_user_folders(monkeypatch, tmp_path):
    """Each test starts with rembg pointed at an empty home and no CLIPASSO_MODELS_DIR, so only what the
    test sets up (or the bundled copy) can be found."""
    monkeypatch.delenv(matting.MODELS_DIR_ENV, raising=False)
    monkeypatch.delenv("REMBG_HOME", raising=False)
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "empty-rembg-home"))


@pytest.fixture(scope="module")
def weights_dir():
    """The folder of the bundled u2netp.onnx (a folder the tests may pass as models_dir)."""
    assert os.path.isfile(BUNDLED), "clipasso/data/u2netp.onnx is part of the package"
    return matting.BUNDLED_DIR


@pytest.fixture(scope="module")
def photos():
    from skimage import data

    return {"chelsea": data.chelsea(), "coffee": data.coffee(), "astronaut": data.astronaut()}


@pytest.fixture(scope="module")
def matted(photos, weights_dir):
    return {name: remove_background(img, models_dir=weights_dir, allow_download=False) for name, img in photos.items()}


def corner_means(mask, k=12):
    return [
        float(mask[:k, :k].mean()),
        float(mask[:k, -k:].mean()),
        float(mask[-k:, :k].mean()),
        float(mask[-k:, -k:].mean()),
    ]


def test_shapes_and_types_at_input_resolution(matted, photos):
    for name, m in matted.items():
        h, w = photos[name].shape[:2]
        assert isinstance(m, Matting) and m.found and m.model == "u2netp"
        assert tuple(m.image.shape) == (3, h, w) and tuple(m.mask.shape) == (h, w)
        assert m.image.dtype == torch.float32 and m.mask.dtype == torch.float32
        assert set(torch.unique(m.mask).tolist()) <= {0.0, 1.0}


def test_cat_mask_covers_the_cat_not_the_corners(matted):
    mask = matted["chelsea"].mask  # 300 x 451, the cat's head fills the middle
    assert float(mask[100:200, 150:300].mean()) > 0.95
    tl, tr, bl, br = corner_means(mask)  # its body reaches the bottom-left corner
    assert max(tl, tr, br) < 0.05


def test_coffee_cup_mask(matted):
    mask = matted["coffee"].mask  # 400 x 600, the cup is in the middle
    assert float(mask[150:250, 200:400].mean()) > 0.9
    assert max(corner_means(mask)) < 0.05
    assert 0.2 < float(mask.mean()) < 0.8


def test_astronaut_mask_keeps_the_person_and_drops_the_top_corners(matted):
    mask = matted["astronaut"].mask  # 512 x 512; the suit reaches the bottom edge
    assert float(mask[150:300, 180:300].mean()) > 0.9  # face and helmet
    assert max(corner_means(mask)[:2]) < 0.05


def test_composite_is_white_off_the_object_and_the_photo_on_it(matted, photos):
    for name, m in matted.items():
        rgb = torch.from_numpy(photos[name].astype(np.float32) / 255.0).permute(2, 0, 1)
        off, on = m.mask == 0, m.mask == 1
        assert bool(off.any()) and bool(on.any())
        assert torch.equal(m.image[:, off], torch.ones_like(m.image[:, off]))
        assert torch.allclose(m.image[:, on], rgb[:, on], atol=1e-6)


def test_soft_mask_and_threshold(photos, weights_dir):
    img = photos["coffee"]
    soft = remove_background(img, soft=True, models_dir=weights_dir, allow_download=False)
    assert float(soft.mask.min()) >= 0 and float(soft.mask.max()) <= 1
    assert bool(((soft.mask > 0.05) & (soft.mask < 0.95)).any())  # really soft at the boundary
    assert torch.equal(soft.mask, soft.soft_mask)
    assert torch.allclose(
        soft.image, torch.from_numpy(img / 255.0).permute(2, 0, 1).float() * soft.mask + (1 - soft.mask), atol=1e-6
    )
    low = remove_background(img, threshold=0.1, models_dir=weights_dir, allow_download=False).mask
    high = remove_background(img, threshold=0.9, models_dir=weights_dir, allow_download=False).mask
    assert float(low.sum()) > float(high.sum())
    assert bool((high <= low).all())
    assert torch.equal(high, (soft.soft_mask >= 0.9).float())


def test_u2net_home_wins_over_the_bundled_copy_and_sessions_are_cached(monkeypatch, tmp_path):
    home = tmp_path / "my-rembg"
    home.mkdir()
    shutil.copy(BUNDLED, home / "u2netp.onnx")
    monkeypatch.setenv("U2NET_HOME", str(home))
    assert matting.find_weights("u2netp") == str(home / "u2netp.onnx")
    paths = matting.candidate_paths("u2netp")
    assert paths.index(str(home / "u2netp.onnx")) < paths.index(BUNDLED) == len(paths) - 1
    a = matting.get_session("u2netp", allow_download=False)
    b = matting.get_session("u2netp", allow_download=False)
    assert a is b


def test_bundled_file_is_rembgs_u2netp_and_the_last_fallback():
    with open(BUNDLED, "rb") as f:
        assert hashlib.md5(f.read()).hexdigest() == U2NETP_MD5
    assert matting.bundled_weights("u2netp") == BUNDLED and matting.bundled_weights("u2net") is None
    assert matting.find_weights("u2netp") == BUNDLED  # nothing else on disk (empty U2NET_HOME)
    assert matting.candidate_paths("u2netp")[-1] == BUNDLED
    notice = os.path.join(matting.BUNDLED_DIR, "LICENSE-u2netp.txt")
    text = open(notice, encoding="utf-8").read()
    assert "Apache License" in text and U2NETP_MD5 in text and "Qin" in text


def test_bundled_file_needs_no_network(monkeypatch, photos):
    """With the file on disk, neither rembg's downloader nor any socket is touched, downloads allowed or not."""
    import socket

    import pooch

    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(pooch, "retrieve", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    matting.clear_sessions()
    m = remove_background(photos["coffee"][::4, ::4], allow_download=True)
    assert m.found and m.model == "u2netp"


def test_clipasso_models_dir_is_searched_before_rembgs_places(monkeypatch, tmp_path):
    first, second, home = tmp_path / "one", tmp_path / "two", tmp_path / "home"
    for d in (first, second, home):
        d.mkdir()
    shutil.copy(BUNDLED, second / "u2netp.onnx")
    shutil.copy(BUNDLED, home / "u2netp.onnx")
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setenv(matting.MODELS_DIR_ENV, os.pathsep.join([str(first), str(second)]))
    assert matting.find_weights("u2netp") == str(second / "u2netp.onnx")
    paths = matting.candidate_paths("u2netp")
    assert (
        paths.index(str(first / "u2netp.onnx"))
        < paths.index(str(second / "u2netp.onnx"))
        < paths.index(str(home / "u2netp.onnx"))
    )
    # an explicit models_dir comes before the environment's folders
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    shutil.copy(BUNDLED, explicit / "u2netp.onnx")
    assert matting.find_weights("u2netp", str(explicit)) == str(explicit / "u2netp.onnx")
    assert matting.candidate_paths("u2netp", [str(explicit)])[0] == str(explicit / "u2netp.onnx")


def test_full_u2net_is_offered_and_its_missing_file_is_a_clear_error(tmp_path, photos):
    """The original CLIPasso's network; too big to ship (176 MB), so only its absence is tested here."""
    assert "u2net" in matting.MATTING_MODELS and "u2net" in matting.available_models()
    folder = tmp_path / "models"
    with pytest.raises(MattingWeightsNotFoundError) as err:
        remove_background(photos["coffee"], model="u2net", models_dir=str(folder), allow_download=False)
    msg = str(err.value)
    assert "u2net.onnx" in msg and str(folder) in msg and "CLIPASSO_MODELS_DIR" in msg
    assert "'u2netp', which ships with clipasso" in msg
    assert matting.BUNDLED_DIR not in msg  # users are not told to put files into the package


def test_missing_weights_name_the_file_and_folder(tmp_path, photos):
    folder = tmp_path / "comfy-models"
    with pytest.raises(MattingWeightsNotFoundError) as err:
        remove_background(photos["coffee"], model="silueta", models_dir=str(folder), allow_download=False)
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert "silueta.onnx" in msg and str(folder) in msg and "U2NET_HOME" in msg
    assert not folder.exists()  # nothing was created or downloaded


def test_models_dir_in_rembg_layout(tmp_path, weights_dir, photos):
    layout = tmp_path / "models" / "u2netp"
    layout.mkdir(parents=True)
    shutil.copy(os.path.join(weights_dir, "u2netp.onnx"), layout / "u2netp.onnx")
    assert matting.find_weights("u2netp", str(tmp_path)) == str(layout / "u2netp.onnx")
    m = remove_background(photos["chelsea"][::4, ::4], models_dir=str(tmp_path), allow_download=False)
    assert m.found and float(m.mask[25:50, 37:75].mean()) > 0.9


def test_alpha_input_is_its_own_mask():
    # silueta is on disk nowhere: had the model run, this would fail
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[10:30, 10:40, 3] = 255
    m = remove_background(rgba, model="silueta", allow_download=False)
    assert m.model == "alpha"
    assert float(m.mask[10:30, 10:40].min()) == 1 and float(m.mask.sum()) == 20 * 30
    assert float(m.image[:, 0, 0].min()) == 1.0


def test_nothing_found_keeps_the_whole_image_and_says_so():
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent: an empty mask
    with pytest.warns(MattingWarning, match="found no object"):
        m = remove_background(rgba, allow_download=False)
    assert not m.found
    assert float(m.mask.min()) == 1 and torch.equal(m.image, torch.ones(3, 16, 16))


def test_bad_arguments(weights_dir):
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(MattingError, match="unknown background-removal model 'nope'.*u2netp"):
        remove_background(img, model="nope", models_dir=weights_dir)
    for bad in (0, 1, 1.5, "0.5", True):
        with pytest.raises(MattingError, match="threshold"):
            remove_background(img, threshold=bad, models_dir=weights_dir)
    with pytest.raises(ValueError, match="empty"):
        remove_background(np.zeros((0, 5, 3), np.uint8), models_dir=weights_dir)


def test_broken_weights_file_is_a_clear_error(tmp_path):
    (tmp_path / "u2netp.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(MattingError, match="truncated"):
        remove_background(np.zeros((8, 8, 3), np.uint8), models_dir=str(tmp_path), allow_download=False)


def test_weights_found_in_any_of_several_folders(tmp_path):
    """ComfyUI hands a list of model folders (extra_model_paths.yaml); each one is searched."""
    from clipasso.prepare.matting import candidate_paths, find_weights

    src = BUNDLED
    empty, full = tmp_path / "a", tmp_path / "b"
    empty.mkdir()
    full.mkdir()
    shutil.copy(src, full / "u2netp.onnx")
    paths = candidate_paths("u2netp", [str(empty), str(full)])
    assert paths[0] == str(empty / "u2netp.onnx") and str(full / "u2netp.onnx") in paths
    assert find_weights("u2netp", [str(empty), str(full)]) == str(full / "u2netp.onnx")


def test_u2net_family_runs_without_rembg_and_gives_rembg_s_masks():
    """u2netp on disk runs through onnxruntime directly (no rembg import, whose first import compiles for
    about 40 s), with exactly the mask rembg's own session makes."""
    import subprocess
    import sys

    from PIL import Image

    from clipasso.prepare.matting import U2NetSession, bundled_weights, clear_sessions, get_session

    clear_sessions()
    session = get_session("u2netp", allow_download=False)
    assert isinstance(session, U2NetSession)
    from skimage import data

    from clipasso.pipeline import EXAMPLE_IMAGE

    rng = np.random.default_rng(0)
    pictures = [
        Image.fromarray(rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)),
        Image.open(EXAMPLE_IMAGE).convert("RGB"),
        Image.fromarray(data.chelsea()),
    ]
    with matting._rembg_home(os.path.dirname(bundled_weights("u2netp"))):
        from rembg import new_session

        theirs = new_session("u2netp")
    for pic in pictures:
        ours = np.asarray(session.predict(pic)[0])
        ref = np.asarray(theirs.predict(pic)[0])
        assert ours.shape == ref.shape == (pic.height, pic.width) and np.array_equal(ours, ref)
    code = (
        "import sys; from clipasso.prepare.matting import remove_background; import torch\n"
        "m = remove_background(torch.rand(3, 64, 80), allow_download=False)\n"
        "print('REMBG', 'rembg' in sys.modules, m.mask.shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "REMBG False" in out.stdout, out.stdout + out.stderr[-2000:]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"U2NET_HOME": "u2"},
        {"REMBG_HOME": "rb"},
        {"XDG_DATA_HOME": "xdg"},
        {"XDG_DATA_HOME": "xdg", "REMBG_HOME": "rb"},
    ],
)
def test_rembg_folders_are_rembg_s_own(monkeypatch, tmp_path, env):
    """The folders we look in for rembg's copies equal rembg's (its session classes), without importing it."""
    from rembg.sessions import sessions_class

    for key in ("U2NET_HOME", "REMBG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(tmp_path / value))
    for model in ("u2netp", "u2net", "isnet-general-use"):
        cls = next(c for c in sessions_class if c.name() == model)
        assert matting._rembg_paths(model, f"{model}.onnx") == [
            os.path.join(cls.model_dir(), f"{model}.onnx"),
            os.path.join(cls.legacy_home(), f"{model}.onnx"),
        ]
