"""Atomic output files: every SVG, PNG, GIF, WebP, JSON and Markdown file clipasso writes goes through here.

The data is written to a temporary file in the destination's own folder (so the final step is a rename
on one file system), flushed to disk, and then moved over the destination with `os.replace`. Readers
therefore see either the previous file or the complete new one, never a half-written one; a failure
(an exception, Ctrl+C, a full disk) removes the temporary file and leaves the previous file as it was.
A process killed with SIGKILL mid-write can leave a hidden ``.clipasso-*.tmp`` file behind, but never a
truncated destination.

    with atomic_path("out.png") as tmp:      # a path with the same extension, for writers that take a name
        image.save(tmp)
    with atomic_open("out.svg", "w") as f:   # a file object
        f.write(text)
    write_text_atomic("out.json", text)
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]
TEMP_PREFIX = ".clipasso-"


def _create_temp(folder: Path, suffix: str) -> Path:
    """A new, empty file in ``folder`` (mode 0o666 less the umask, as an ordinary file would get)."""
    for _ in range(100):
        candidate = folder / f"{TEMP_PREFIX}{secrets.token_hex(6)}.tmp{suffix}"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"cannot find a free temporary file name in {folder}")  # pragma: no cover


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. a platform without O_RDONLY on files being replaced
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync; the rename is still atomic
        pass
    finally:
        os.close(fd)


def probe_folder(folder: PathLike) -> None:
    """Raise OSError when a file cannot be created in ``folder`` (creates and removes a temporary one)."""
    _remove(_create_temp(Path(folder), ""))


@contextmanager
def atomic_path(dest: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``dest`` with the same extension; on a clean exit it replaces
    ``dest``, on any exception (KeyboardInterrupt included) it is removed and ``dest`` is untouched."""
    dest = Path(dest)
    folder = dest.parent if str(dest.parent) else Path(".")
    tmp = _create_temp(folder, dest.suffix)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_open(dest: PathLike, mode: str = "w", encoding: str = "utf-8") -> Iterator:
    """`open` for writing (``"w"`` text or ``"wb"`` binary), atomically as `atomic_path`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(dest) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": encoding})) as f:
            yield f


def write_text_atomic(dest: PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(dest, "w", encoding=encoding) as f:
        f.write(text)
    return Path(dest)


def save_image_atomic(image, dest: PathLike, **options) -> Path:
    """``PIL.Image.save`` to ``dest`` atomically (the format follows ``dest``'s extension)."""
    from PIL import Image

    dest = Path(dest)
    fmt = options.pop("format", None) or Image.registered_extensions().get(dest.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {dest.name}: use .png, .jpg, .webp or .gif")
    with atomic_open(dest, "wb") as f:
        image.save(f, format=fmt, **options)
    return dest


__all__ = ["atomic_path", "atomic_open", "write_text_atomic", "save_image_atomic", "probe_folder", "TEMP_PREFIX"]
