"""What ``nets classify`` reads: files, folders and glob patterns expanded into one ordered list of
paths, each once.

Order is the order of the arguments; inside a folder or a pattern, sorted by path, so two runs over
the same tree list the same paths in the same order (``--resume`` and the Dask batches rely on it).
Paths are normalised (``./a//b.jpg`` -> ``a/b.jpg``) but not made absolute: the output keeps the
paths as the user wrote them. A file named explicitly is taken whatever its extension; a path that
does not exist is kept, and gets a row with its error like any unreadable image.
"""

from __future__ import annotations

import glob
import os

from nets.errors import InputError

# what Pillow decodes and people keep photos in; folders and patterns yield only these
IMAGE_EXTENSIONS = frozenset((".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                              ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k"))
GLOB_CHARS = frozenset("*?[")


def is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _walk(folder: str, recursive: bool) -> list[str]:
    if not recursive:
        with os.scandir(folder) as it:
            return sorted(os.path.join(folder, e.name) for e in it if e.is_file() and is_image_name(e.name))
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        found.extend(os.path.join(root, n) for n in names if is_image_name(n))
    return sorted(found)


def expand_inputs(inputs, recursive: bool = False) -> list[str]:
    """Image paths from files, folders (their image files; subfolders too with ``recursive``) and glob
    patterns (``**`` crosses folders with ``recursive``), in argument order, duplicates dropped.

    A pattern that matches nothing and a folder without images are kept as a path of their own (a
    row with an error), so every argument shows up in the output."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths: list[str] = []
    for item in inputs:
        text = os.fspath(item)
        if not text:
            raise InputError("an input path is empty")
        if os.path.isdir(text):
            try:
                found = _walk(text, recursive)
            except OSError as e:
                raise InputError(f"cannot list folder {text!r}: {e.strerror or e}") from None
            paths.extend(found or [text])
        elif GLOB_CHARS & set(text) and not os.path.exists(text):
            found = sorted(p for p in glob.glob(text, recursive=recursive) if os.path.isfile(p) and is_image_name(p))
            paths.extend(found or [text])
        else:
            paths.append(text)
    return list(dict.fromkeys(os.path.normpath(p) for p in paths))
