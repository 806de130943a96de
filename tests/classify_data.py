"""Generated image collections for the ``nets classify`` tests: JPEG / PNG / other formats of assorted
sizes and modes (L, RGBA, P, LA, 1, CMYK, 16-bit grey and colour, 32-bit int and float), broken
files, a missing path, and the direct ``model(preprocess(load_image))`` top-k the rows must equal.

Imported as ``from classify_data import ...`` (tests/ is on sys.path, like helpers.py)."""

from __future__ import annotations

import os
import signal
import struct
import time
import zlib

import numpy as np
from PIL import Image

import nets

INPUT = (64, 64, 3)
MODEL_OPTIONS = dict(input_shape=INPUT, alpha=0.25)          # MobileNet at 64x64, alpha 0.25: ~10 ms a batch
BROKEN = ("truncated.jpg", "text.jpg", "empty.png")
MISSING = "no_such_image.jpg"


def small_model(**kw):
    return nets.load("mobilenet", threads=1, **MODEL_OPTIONS, **kw)


def png16_rgb(path, pixels: np.ndarray):
    """A 16-bit-per-channel RGB PNG written by hand (Pillow writes none)."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_images(root, n_jpeg: int = 14) -> list[str]:
    """Writes a collection under ``root`` (some in ``root/sub``) and returns the image files written,
    broken ones included, sorted like ``expand_inputs(root, recursive=True)``."""
    root = str(root)
    os.makedirs(os.path.join(root, "sub", "deeper"), exist_ok=True)
    rng = np.random.default_rng(7)

    def pix(h, w, c=3, hi=256, dtype=np.uint8):
        # smooth gradients plus noise: JPEG-like content that decodes differently at reduced size
        y, x = np.mgrid[0:h, 0:w]
        base = (x * 255 // max(w - 1, 1) + y * 127 // max(h - 1, 1))[..., None] * np.ones(c)
        return ((base + rng.integers(0, 64, (h, w, c))) % hi).astype(dtype).squeeze()

    files = []
    for i in range(n_jpeg):
        h, w = int(rng.integers(17, 300)), int(rng.integers(17, 400))
        p = os.path.join(root, f"photo_{i:02d}.jpg")
        Image.fromarray(pix(h, w)).save(p, quality=int(rng.integers(60, 96)))
        files.append(p)
    specs = [
        ("big.jpg", lambda p: Image.fromarray(pix(375, 500)).save(p, quality=90)),
        ("exact_size.png", lambda p: Image.fromarray(pix(64, 64)).save(p)),
        ("gray.png", lambda p: Image.fromarray(pix(40, 90, 1)).save(p)),
        ("gray.jpg", lambda p: Image.fromarray(pix(120, 80, 1)).save(p)),
        ("rgba.png", lambda p: Image.fromarray(pix(70, 50, 4)).save(p)),
        ("palette.png", lambda p: Image.fromarray(pix(66, 99)).convert("P", palette=Image.ADAPTIVE).save(p)),
        ("palette.gif", lambda p: Image.fromarray(pix(30, 31)).convert("P").save(p)),
        ("la.png", lambda p: Image.merge("LA", [Image.fromarray(pix(45, 45, 1))] * 2).save(p)),
        ("bilevel.png", lambda p: Image.fromarray(pix(50, 70, 1)).convert("1").save(p)),
        ("cmyk.jpg", lambda p: Image.fromarray(pix(90, 60, 4), "CMYK").save(p)),
        ("cmyk.tif", lambda p: Image.fromarray(pix(33, 77, 4), "CMYK").save(p)),
        ("gray16.png", lambda p: Image.fromarray(pix(80, 64, 1, 65536, np.uint16)).save(p)),
        ("int32.tif", lambda p: Image.fromarray(pix(40, 40, 1, 300, np.int32)).save(p)),
        ("float32.tif", lambda p: Image.fromarray(pix(40, 50, 1, 300, np.float32)).save(p)),
        ("picture.bmp", lambda p: Image.fromarray(pix(64, 48)).save(p)),
        ("picture.webp", lambda p: Image.fromarray(pix(64, 80)).save(p)),
        (os.path.join("sub", "nested.jpg"), lambda p: Image.fromarray(pix(100, 150)).save(p)),
        (os.path.join("sub", "deeper", "rgb16.png"), lambda p: png16_rgb(p, pix(48, 40, 3, 65536, np.uint16))),
    ]
    for name, write in specs:
        p = os.path.join(root, name)
        write(p)
        files.append(p)
    with open(files[0], "rb") as f:
        data = f.read()
    for name, content in zip(BROKEN, (data[: len(data) // 2], b"this is not an image\n", b"")):
        p = os.path.join(root, name)
        with open(p, "wb") as f:
            f.write(content)
        files.append(p)
    return sorted(os.path.normpath(p) for p in files)


def direct_top(model, path, k: int = 5):
    """What ``nets classify`` must report for ``path``: top-k of a direct batch-1 model call, or None
    when ``nets.load_image`` refuses the file."""
    try:
        img = nets.load_image(path, model.input_shape[:2])
    except nets.InputError:
        return None
    return nets.top_k(model(nets.preprocess("mobilenet", img[None])), k)[0]


def assert_row_matches(row, expected, rel=1e-5):
    """``row["top"]`` equals ``expected`` (nets.top_k output): the same classes in the same order
    (two classes whose scores tie within ``rel`` may swap), probabilities within ``rel``."""
    assert row["error"] is None, row
    got = [(t["index"], t["label"], t["prob"]) for t in row["top"]]
    assert len(got) == len(expected)
    for (gi, gl, gp), (ei, el, ep) in zip(got, expected):
        assert abs(gp - ep) <= rel * max(abs(ep), 1e-12), (row["path"], got, expected)
        if gi != ei:
            others = {i: p for i, _, p in expected}
            assert gi in others and abs(others[gi] - ep) <= rel * ep, (row["path"], got, expected)
        else:
            assert gl == el


def wait_for(predicate, timeout: float = 600.0, what: str = "condition"):
    """Polls ``predicate``; the long default covers a first run that compiles the kernels on a loaded
    machine (a passing wait ends as soon as the predicate holds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def fifo_reader_pids(fifo: str, pids) -> list[int]:
    """The processes among ``pids`` that hold ``fifo`` open (Linux /proc)."""
    target = os.path.realpath(fifo)
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


def open_fifo_writer(fifo: str, timeout: float = 600.0, quiet: bool = False) -> int:
    """Opens the write end of ``fifo`` once a reader waits on it (which lets that reader's open()
    return, so it shows in /proc); returns the fd (-1 when ``quiet`` and no reader came in time)."""
    fd = []

    def ready():
        try:
            fd.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return True
        except OSError:
            return False
    try:
        wait_for(ready, timeout, f"a reader of {fifo}")
    except AssertionError:
        if quiet:
            return -1
        raise
    return fd[0]


def close_fd(fd: int):
    if fd >= 0:
        os.close(fd)


def kill(pid: int):
    os.kill(pid, signal.SIGKILL)
