"""Build pydiffvg (CPU only) from the source tarball in ``../shared/third_party/``, outside the repository.

diffvg is not on PyPI. Its source (BachiLi/diffvg at 85802a7, Apache-2.0) lies beside the repository
in ``../shared/third_party/diffvg-85802a7.tar.gz``; the recipe is in that folder's README:
- Debian's ``libthrust-dev`` headers (CI's ``.ci/run`` installs them with apt);
- PyPI's pybind11 source unpacked as ``pybind11/`` inside the diffvg tree;
- ``DIFFVG_CUDA=0 python setup.py build`` with this very interpreter first on ``PATH``;
- ``svgpathtools`` and ``cssutils`` from PyPI (pydiffvg imports them).

The build goes into ``~/.cache/clipasso-test/diffvg-<key>/site`` (``CLIPASSO_DIFFVG_DIR`` overrides the
folder), keyed by the tarball, the Python version and the torch version, and that folder is put on
``sys.path``. `ensure_diffvg()` is idempotent and cheap once done (a marker file). diffvg's code never
enters the repository.

Manual setup: ``python tests/diffvg_build.py`` prints the folder to put on ``PYTHONPATH``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from clipasso.testing.external import ensure_or_skip, run_checked

REPO = Path(__file__).resolve().parents[1]
TARBALL_NAME = "diffvg-85802a7.tar.gz"
PYBIND11 = "pybind11==3.1.0"
RUNTIME_REQUIREMENTS = {"svgpathtools": "svgpathtools", "cssutils": "cssutils"}  # module -> PyPI name


class DiffvgUnavailable(RuntimeError):
    """pydiffvg could not be built (no tarball, no compiler or thrust headers, no PyPI access...)."""


def tarball() -> Path:
    env = os.environ.get("CLIPASSO_DIFFVG_TARBALL")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO.parent / "shared" / "third_party" / TARBALL_NAME).resolve()


def cache_dir() -> Path:
    env = os.environ.get("CLIPASSO_DIFFVG_DIR")
    if env:
        return Path(env).expanduser().resolve()
    import torch

    src = tarball()
    digest = hashlib.sha256(src.read_bytes()).hexdigest() if src.is_file() else "missing"
    ident = f"{digest}|{sys.version_info[:3]}|{torch.__version__}|{PYBIND11}"
    key = hashlib.sha1(ident.encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "clipasso-test" / f"diffvg-{key}"


def _run(cmd, what, cwd=None, env=None):
    return run_checked(cmd, what, DiffvgUnavailable, cwd=cwd, env=env)


def _install_runtime_requirements() -> None:
    import importlib.util

    missing = [pkg for mod, pkg in RUNTIME_REQUIREMENTS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        _run([sys.executable, "-m", "pip", "install", "--quiet", *missing], "installing pydiffvg's requirements")


def _unpack_sdist(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")


def _build(site: Path) -> None:
    src_tar = tarball()
    if not src_tar.is_file():
        raise DiffvgUnavailable(f"the diffvg source {src_tar} is not there (../shared/third_party/ beside the repo)")
    if shutil.which("cmake") is None:
        raise DiffvgUnavailable("cmake is not installed")
    if not any(Path(p, "thrust", "version.h").is_file() for p in ("/usr/include", "/usr/local/include")):
        raise DiffvgUnavailable("the thrust headers are missing: apt-get install libthrust-dev")
    with tempfile.TemporaryDirectory(prefix="clipasso-diffvg-") as tmp:
        tmp = Path(tmp)
        _unpack_sdist(src_tar, tmp)
        trees = [p for p in tmp.iterdir() if (p / "setup.py").is_file()]
        if not trees:
            raise DiffvgUnavailable(f"{src_tar} holds no setup.py at its top level")
        tree = trees[0]
        dl = tmp / "pybind11-sdist"
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                "pybind11",
                "-d",
                dl,
                PYBIND11,
            ],
            f"downloading the {PYBIND11} source from PyPI",
        )
        sdists = list(dl.glob("pybind11-*.tar.gz"))
        if not sdists:
            raise DiffvgUnavailable(f"pip download {PYBIND11} gave no source archive")
        unpacked = tmp / "pybind11-src"
        _unpack_sdist(sdists[0], unpacked)
        pb = [p for p in unpacked.iterdir() if (p / "CMakeLists.txt").is_file()]
        if not pb:
            raise DiffvgUnavailable(f"{sdists[0].name} has no CMakeLists.txt")
        shutil.rmtree(tree / "pybind11", ignore_errors=True)
        shutil.move(str(pb[0]), str(tree / "pybind11"))
        env = dict(os.environ)
        env["DIFFVG_CUDA"] = "0"
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        staging = site.with_name(site.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _run(
            [sys.executable, "setup.py", "build", "--build-lib", str(staging), "--build-temp", str(tmp / "build")],
            "building diffvg (cmake, CPU only)",
            cwd=tree,
            env=env,
        )
        if not list(staging.glob("diffvg*.so")) or not (staging / "pydiffvg" / "__init__.py").is_file():
            raise DiffvgUnavailable(f"the diffvg build left no diffvg*.so and pydiffvg/ in {staging}")
        shutil.copy(tree / "LICENSE", staging / "DIFFVG_LICENSE")
        shutil.rmtree(site, ignore_errors=True)
        staging.rename(site)


def ensure_diffvg() -> Path:
    """Folder holding a built ``pydiffvg`` (built on first call), put first on ``sys.path``."""
    root = cache_dir()
    site = root / "site"
    marker = root / ".built"
    if not marker.is_file():
        root.mkdir(parents=True, exist_ok=True)
        _build(site)
        marker.write_text(f"{tarball()}\n{sys.version}\n")
    _install_runtime_requirements()
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    try:
        import pydiffvg  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - report any import failure the same way
        raise DiffvgUnavailable(f"pydiffvg was built in {site} but does not import: {exc!r}") from exc
    return site


def diffvg_or_skip() -> Path:
    """`ensure_diffvg()` for pytest: fails loudly on CI (CI=true), skips elsewhere."""
    return ensure_or_skip(
        ensure_diffvg,
        DiffvgUnavailable,
        "pydiffvg",
        f"built from ../shared/third_party/{TARBALL_NAME}; see that folder's README; set CLIPASSO_DIFFVG_DIR to "
        "a folder with a built pydiffvg in site/ and a .built marker to use your own",
    )


if __name__ == "__main__":
    print(ensure_diffvg())
