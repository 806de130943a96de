"""Inputs that once slipped past the checks: each now gives a project error or the right numbers."""

import numpy as np
import pytest
from helpers import fill_weights

from nets.errors import ModelError, WeightsError
from nets.graph.builder import GraphBuilder
from nets.graph.interpret import interpret
from nets.runtime.model import Model


def test_zero_pad_as_wide_as_a_max_pool_window_is_not_folded():
    b = GraphBuilder("g")
    x = b.input((6, 5, 3), name="in")
    x = b.conv2d(x, 4, 1, activation="relu", name="c")
    x = b.zero_pad(x, 2, name="zp")                  # windows of nothing but padding must give 0
    x = b.max_pool2d(x, 2, 1, name="pool")
    g = fill_weights(b.build(x))
    xin = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype(np.float32)
    want = interpret(g, xin)["pool"]
    for device in ("reference", "cpu"):
        np.testing.assert_allclose(Model(g, device=device)(xin), want, rtol=1e-5, atol=1e-6)


def test_bad_batchnorm_statistics_are_refused():
    b = GraphBuilder("g")
    x = b.input((4, 4, 2), name="in")
    g = fill_weights(b.build(b.batch_norm(b.conv2d(x, 3, 1, name="c"), name="bn")))
    g.node("bn").weights["moving_variance"] = np.array([1.0, -0.5, 1.0], np.float32)
    with pytest.raises(WeightsError, match="layer 'bn'.*moving_variance"):
        Model(g, device="reference")
    g.node("bn").weights["moving_variance"] = np.ones(3, np.float32)
    g.node("bn").weights["beta"] = np.array([0, np.nan, 0], np.float32)
    with pytest.raises(WeightsError, match="layer 'bn'.*NaN"):
        Model(g, device="reference")


def test_two_inputs_and_bad_reshape_targets_are_refused():
    b = GraphBuilder("g")
    x = b.input((4, 4, 2), name="a")
    y = b.input((4, 4, 2), name="b")
    with pytest.raises(ModelError, match="2 inputs"):
        Model(b.build(b.add([x, y], name="s")), device="reference")
    with pytest.raises(ModelError, match="at most one -1"):
        b.reshape(x, (-1, -1, 2), name="r")


def test_weights_stored_outside_the_file_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    from nets.io.keras import load_h5_weights

    b = GraphBuilder("g")
    x = b.input((4, 4, 2), name="in")
    g = b.build(b.conv2d(x, 3, 1, use_bias=False, name="c"))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    path = tmp_path / "w.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"c"]
        grp = f.create_group("c")
        grp.attrs["weight_names"] = [b"c/kernel:0"]
        grp.create_dataset("c/kernel:0", shape=(1, 1, 2, 3), dtype="f4", external=[(str(secret), 0, 24)])
    with pytest.raises(WeightsError, match="outside this file"):
        load_h5_weights(g, path)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"c"]
        f["c"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/c")
    with pytest.raises(WeightsError, match="link to another file"):
        load_h5_weights(g, path)
