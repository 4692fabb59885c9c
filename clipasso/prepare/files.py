"""Checks of an input image's path that need neither torch nor Pillow, so that the command line can refuse a
missing or unusable input before it imports the engine. `clipasso.prepare.images` re-exports them (the same
objects): ``from clipasso.prepare.images import ImageError, check_image_path`` keeps working."""

from __future__ import annotations

import os

from ..errors import ClipassoError


class ImageError(ClipassoError, ValueError):
    """An input image that cannot be used; the message says why and what to do."""


def shown_path(path) -> str:
    """A file name fit for a message: non-UTF-8 bytes escaped, very long names shortened."""
    name = os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return name if len(name) <= 160 else f"{name[:100]}...{name[-40:]} ({len(name)} characters)"


def check_image_path(path) -> os.stat_result:
    """The file's stat if ``path`` can be an image file; `ImageError` saying what to do otherwise (missing,
    a dangling link, a link loop, a name too long, no permission, a folder, not a regular file)."""
    import errno
    import stat

    path = os.fspath(path)
    shown = shown_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageError(
                f"image file not found: {shown} is a symbolic link to "
                f"{shown_path(os.readlink(path))}, which does not exist; fix the link or give the "
                "picture itself"
            ) from None
        raise ImageError(f"image file not found: {shown}; check the name and the folder") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError(
                f"cannot open {shown}: its symbolic links form a loop; fix the link or give the picture itself"
            ) from None
        if exc.errno == errno.ENAMETOOLONG:
            raise ImageError(
                f"cannot open {shown}: the file name is too long for this system; rename the file "
                "or its folders to something shorter"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise ImageError(f"no permission to read {shown}; check its permissions") from None
        raise ImageError(f"cannot open {shown}: {exc.strerror or exc}; check the path") from None
    except ValueError as exc:  # an embedded NUL character
        raise ImageError(f"invalid image file name {shown!r}: {exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{shown} is a folder, not an image file; give the path of one picture in it")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{shown} is not a regular file (a device, pipe or socket); save the picture to a file")
    return st


__all__ = ["ImageError", "check_image_path", "shown_path"]
