"""Squeeze-excite: passes.fuse_channel_scale folds the per-channel mul into the 1x1 projection that reads
its output (a scaled_conv2d node), and the kernels (kernels.cpu.scaled_conv: scaled weights, or a scaled
map where the weights are the larger; elsewhere mul then conv2d) give the unfused result."""

import numpy as np
import pytest
from helpers import fill_weights, numba_threads, rand, rel_err

import kernels.cpu as cpu
from kernels import reference as ref
from kernels.cpu import scaled_conv
from nets.graph import passes
from nets.graph.builder import GraphBuilder
from nets.runtime.model import Model


def se_block(h=10, w=9, c=24, expand=48, gate="sigmoid", act="silu", project_bn=True, residual=True, name="se"):
    """EfficientNet's MBConv (MobileNetV3's with gate hard_sigmoid, act relu): expand, depthwise, squeeze-
    excite, project (+ BN), residual."""
    b = GraphBuilder(name)
    x = b.input((h, w, c))
    y = b.conv2d(x, expand, 1, activation=act, name="expand")
    y = b.depthwise_conv2d(y, 3, padding="same", activation=act, name="dw")
    s = b.global_avg_pool(y, name="se_squeeze")
    s = b.reshape(s, (1, 1, expand), name="se_reshape")
    s = b.conv2d(s, max(1, expand // 4), 1, activation=act, name="se_reduce")
    s = b.conv2d(s, expand, 1, activation=gate, name="se_expand")
    y = b.mul([y, s], name="se_excite")
    y = b.conv2d(y, c, 1, use_bias=not project_bn, name="project")
    if project_bn:
        y = b.batch_norm(y, name="project_bn")
    if residual:
        y = b.add([y, x], name="add")
    return fill_weights(b.build(y), seed=5)


def test_pass_folds_the_gate_into_the_projection():
    g = passes.optimize(se_block())
    ops = {n.name: n for n in g.nodes}
    proj = ops["project"]
    assert proj.op == "scaled_conv2d" and "mul" not in [n.op for n in g.nodes]
    assert proj.inputs[:2] == ["dw", "se_expand"] and proj.attrs["residual"] == "input_1"
    assert proj.fused[0] == "se_excite" and "project_bn" in proj.fused and "add" in proj.fused


def test_pass_leaves_what_it_cannot_fold():
    b = GraphBuilder("no")
    x = b.input((6, 6, 8))
    s = b.reshape(b.global_avg_pool(x, name="gap"), (1, 1, 8), name="r")
    y = b.mul([x, s], activation="relu", name="gated_act")            # an activation on the product
    y1 = b.conv2d(y, 8, 1, name="pw")
    z = b.mul([x, s], name="gated_twice")                              # read by two convolutions
    z1 = b.conv2d(z, 8, 1, name="pw_a")
    z2 = b.conv2d(z, 8, 1, name="pw_b")
    v = b.mul([x, s], name="gated_3x3")                                # read by a 3x3 convolution
    v1 = b.conv2d(v, 8, 3, padding="same", name="c3")
    u = b.mul([x, x], name="same_shape")                               # not a per-channel gate
    u1 = b.conv2d(u, 8, 1, name="pw_u")
    g = passes.optimize(fill_weights(b.build([b.add([y1, z1], name="a1"), b.add([z2, v1], name="a2"), u1])))
    assert [n.op for n in g.nodes].count("mul") == 4 and "scaled_conv2d" not in [n.op for n in g.nodes]


@pytest.mark.parametrize("device", ["cpu", "reference"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind", ["efficientnet", "mobilenetv3", "small_map"])
def test_models_match_the_unfused_graph(device, batch, kind):
    """Against the unfused graph on the oracle. small_map: a 3x3 map with 96 output channels, where the
    CPU kernel scales the map (its weights are the larger)."""
    graph = {"efficientnet": lambda: se_block(),
             "mobilenetv3": lambda: se_block(gate="hard_sigmoid", act="relu", project_bn=False, residual=False),
             "small_map": lambda: se_block(3, 3, 96, 120)}[kind]()
    x = np.random.default_rng(batch).normal(0, 1, (batch,) + tuple(graph.shapes["input_1"])).astype(np.float32)
    want = Model(graph, device="reference", fuse=False)(x)
    model = Model(graph, device=device)
    assert "scaled_conv2d" in [n.op for n in model.graph.nodes]
    assert rel_err(model(x), want) <= 1e-5


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,h,w,cin,cout,res,c0", [
    (1, 15, 13, 40, 70, True, 0),          # scaled weights: 6x64 + 8x48 blocks, residual
    (2, 9, 11, 32, 24, False, 5),          # scaled weights per sample, into a channel slice
    (1, 4, 4, 160, 96, True, 3),           # 16 pixels < 128 padded channels: the map is scaled
    (3, 2, 2, 17, 10, False, 0),           # fewer pixels than a tile
])
def test_scaled_conv2d_kernel(threads, n, h, w, cin, cout, res, c0):
    rng = np.random.default_rng(cin * cout)
    x, s = rand(rng, n, h, w, cin), rand(rng, n, cin, lo=0.0, hi=1.0)
    k, b = rand(rng, 1, 1, cin, cout) / np.float32(np.sqrt(cin)), rand(rng, cout)
    r = rand(rng, n, h, w, cout) if res else None
    out = np.full((n, h, w, c0 + cout + 2), np.float32(-7.25))
    packed = cpu.pack_conv2d(k, b)
    weights_path = scaled_conv.scaled_weights_pay(packed, h * w)
    with numba_threads(threads):
        for _ in range(2):                    # the second call reuses the saved plan / the twin
            cpu.scaled_conv2d(x, s, packed, out, "silu", r, c0)
    want = ref.conv2d(ref.mul(x, s), k, b, (1, 1), (0, 0, 0, 0), "silu", r)
    assert rel_err(out[..., c0:c0 + cout], want, ref.conv2d(ref.mul(x, s), k, b, residual=r)) <= 1e-5
    assert np.all(out[..., :c0] == np.float32(-7.25)) and np.all(out[..., c0 + cout:] == np.float32(-7.25))
    assert packed.variant.startswith("scaled-weights+" if weights_path else "scaled-map+")
    assert np.array_equal(packed.weights, cpu.pack_conv2d(k, b).weights)      # the shared weights untouched
