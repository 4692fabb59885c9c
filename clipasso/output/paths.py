"""Output paths checked before any work starts: the right extension, a writable folder, never the input."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ClipassoError


class OutputPathError(ClipassoError, ValueError):
    """An output path that cannot be written; found before any work starts."""


NAME_MAX = 255


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return os.path.abspath(a) == os.path.abspath(b)


def check_output_paths(outputs, inputs=()) -> None:
    """Raise `OutputPathError` for the first unusable output. ``outputs``: (flag, path, suffixes, hint)
    with ``suffixes`` the accepted extensions (lower case) and ``hint`` what to use instead; ``inputs``:
    paths that no output may overwrite."""
    from ..atomic import probe_folder

    seen = []
    probed = set()
    for flag, value, suffixes, hint in outputs:
        if value is None:
            continue
        p = Path(value)
        if len(os.fsencode(p.name)) > NAME_MAX:
            raise OutputPathError(
                f"{flag}: the file name is too long ({len(os.fsencode(p.name))} bytes, at most "
                f"{NAME_MAX}); choose a shorter name"
            )
        if str(value).endswith(("/", os.sep)) or (p.exists() and p.is_dir()):
            raise OutputPathError(
                f"{flag} names a folder: {value}; give a file name in it, such as {p / ('sketch' + suffixes[0])}"
            )
        if p.suffix.lower() not in suffixes:
            got = f"'{p.suffix}'" if p.suffix else "no extension"
            raise OutputPathError(
                f"{flag} must name a {' or '.join(suffixes)} file; got {value} ({got})" + (f"; {hint}" if hint else "")
            )
        if p.is_symlink() and not p.exists():
            raise OutputPathError(f"{flag}: {value} is a broken symbolic link; remove it or choose another name")
        if p.exists() and not p.is_file():
            raise OutputPathError(f"{flag}: {value} exists and is not a regular file; choose another name")
        for src in inputs:
            if src is not None and _same_file(p, Path(src)):
                raise OutputPathError(
                    f"{flag} {value} is the input file {src}; writing it would destroy the "
                    "input: choose another output name"
                )
        for other_flag, other in seen:
            if _same_file(p, other):
                raise OutputPathError(
                    f"{flag} and {other_flag} name the same file {value}; give each output its own name"
                )
        seen.append((flag, p))
        folder = p.parent if str(p.parent) else Path(".")
        if not folder.exists():
            raise OutputPathError(f"the folder for {value} does not exist; create it first")
        if not folder.is_dir():
            raise OutputPathError(f"the folder for {value} ({folder}) is not a folder")
        key = str(folder.resolve())
        if key not in probed:
            try:
                probe_folder(folder)
            except OSError as exc:
                raise OutputPathError(
                    f"{flag}: cannot write to the folder {folder} ({exc.strerror or exc}); "
                    "choose a folder you can write to"
                ) from None
            probed.add(key)
