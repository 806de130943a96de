"""Shared test helpers: error measures, seeded inputs, Numba thread counts, the toy graph and its weights,
loading a bench/ or tools/ script as a module.

Imported as ``from helpers import ...`` (``tests/`` is on ``sys.path`` through pytest's rootdir
conftest). One copy of each helper, used by every test module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import pathlib

import numpy as np

from nets.graph.builder import GraphBuilder

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script(relpath: str):
    """A script of bench/ or tools/ (not a package) imported as a module, e.g. ``"bench/compare_ort.py"``."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rel_err(got, want, scale_of=None) -> float:
    """max|got - want| / max|scale_of| (``scale_of`` defaults to ``want``; 0 for empty arrays).

    Ops with an activation pass the pre-activation reference as ``scale_of``: a relu that zeroes
    most of a small output would otherwise divide float32 rounding by a tiny maximum."""
    want = np.asarray(want, np.float64)
    if not want.size:
        return 0.0
    scale = np.abs(np.asarray(want if scale_of is None else scale_of, np.float64)).max()
    return float(np.abs(np.asarray(got, np.float64) - want).max() / max(scale, 1e-30))


def rand(rng, *shape, lo=-3.0, hi=3.0) -> np.ndarray:
    """Uniform float32 values from ``rng`` (a ``np.random.Generator`` or an int seed)."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    return rng.uniform(lo, hi, shape).astype(np.float32)


def normal(*shape, seed=0) -> np.ndarray:
    """Standard-normal float32 values from a fixed seed."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@contextlib.contextmanager
def numba_threads(k):
    """Run the block with ``k`` Numba threads (at most NUMBA_NUM_THREADS), then restore the count the
    calling thread had: a test that changes it must not leave it changed for the next test."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(k, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


# ----------------------------------------------------------------------------- graphs


def fill_weights(g, seed=0):
    rng = np.random.default_rng(seed)
    for n in g.nodes:
        for k, shape in n.weight_shapes.items():
            if k in ("gamma", "moving_variance"):
                n.weights[k] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            elif k in ("beta", "moving_mean", "bias"):
                n.weights[k] = rng.normal(0, 0.2, shape).astype(np.float32)
            else:
                fan_in = int(np.prod(shape[:-1])) if k != "depthwise_kernel" else shape[0] * shape[1]
                n.weights[k] = (rng.normal(0, 1, shape) * np.sqrt(2 / fan_in)).astype(np.float32)
    return g


def toy_graph(top=True):
    """Every op and fusion the six networks use, on small odd shapes."""
    b = GraphBuilder("toy")
    x = b.input((19, 17, 3), name="input_1")
    x = b.zero_pad(x, ((0, 1), (0, 1)), name="pad0")
    x = b.conv2d(x, 12, 3, strides=2, use_bias=False, name="conv0")
    x = b.batch_norm(x, epsilon=1e-3, name="bn0")
    x = b.relu(x, max_value=6.0, name="relu0")
    y = b.zero_pad(x, 1, name="pool_pad")
    y = b.max_pool2d(y, 3, 1, name="pool")
    s = b.conv2d(x, 16, 1, name="short")
    s = b.batch_norm(s, name="short_bn")
    z = b.separable_conv2d(y, 16, 3, padding="same", use_bias=False, name="sep")
    z = b.batch_norm(z, scale=False, name="sep_bn")
    z = b.add([z, s], name="add")
    z = b.activation(z, "relu", name="add_relu")
    d = b.depthwise_conv2d(z, 3, padding="same", depth_multiplier=2, name="dw")
    d = b.batch_norm(d, name="dw_bn")
    d = b.relu(d, name="dw_relu")
    c1 = b.conv2d(z, 5, (1, 7), padding="same", activation="relu", name="c17")
    c2 = b.conv2d(c1, 6, (7, 1), padding="same", activation="relu", name="c71")
    c3 = b.avg_pool2d(z, 3, 1, padding="same", name="avg")
    c4 = b.conv2d(c3, 7, 1, name="avg_conv")
    inner = b.concat([c2, c4], name="inner_cat")
    e = b.depthwise_conv2d(z, 3, padding="same", use_bias=False, name="dw2")     # MobileNet's pair
    e = b.batch_norm(e, name="dw2_bn")
    e = b.relu(e, max_value=6.0, name="dw2_relu")
    e = b.conv2d(e, 9, 1, use_bias=False, name="pw2")
    e = b.batch_norm(e, name="pw2_bn")
    e = b.relu(e, max_value=6.0, name="pw2_relu")
    q = b.activation(s, "relu", name="pre_relu")     # Xception: its input is also a residual ("add")
    q = b.separable_conv2d(q, 4, 3, padding="same", use_bias=False, name="sep2")
    m = b.concat([d, inner, c1, e, q], name="mixed")
    m = b.batch_norm(m, name="post_bn")         # not after a conv: stays a channel affine
    if not top:
        return b.build(m)
    g = b.global_avg_pool(m, keepdims=True, name="gap")
    g = b.dropout(g, 0.5, name="drop")
    g = b.flatten(g, name="flat")
    out = b.dense(g, 11, activation="softmax", name="predictions")
    return b.build(out)


def seeded_rng(*key) -> np.random.Generator:
    """A generator seeded from ``key`` (a test's name and parameters): the same data on every run and
    on every backend (GPU and its host emulator), so a failure reproduces."""
    import zlib

    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ----------------------------------------------------------------------------- errors

def assert_clear_error(e: Exception, *names: str):
    """The message names one of ``names`` (the file, model or layer) and says what was wrong: at
    least a few words beyond the name."""
    msg = str(e)
    found = [n for n in names if n and n in msg]
    assert found, f"{msg!r} names none of {names}"
    rest = msg
    for n in found:
        rest = rest.replace(n, "")
    assert sum(ch.isalpha() for ch in rest) >= 12, f"{msg!r} does not say what was wrong"


# ----------------------------------------------------------------------------- kernel workspaces

def saved_plan(packed):
    """The kernel arguments a kernel saved for ``packed`` in the current workspace (None if none)."""
    import kernels

    held = kernels.current_workspace().plans.get(id(packed))
    return None if held is None else held[1]


def scratch_keys(prefix: str) -> list:
    """Keys of the current workspace's buffers whose name starts with ``prefix`` (e.g. "conv.pad")."""
    import kernels

    return [k for k in kernels.current_workspace().buffers if k[0].startswith(prefix)]
