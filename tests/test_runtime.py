"""The runtime (passes, planner, executor) against the layer-by-layer interpreter."""

import numpy as np
import pytest
from helpers import fill_weights, rel_err, toy_graph  # noqa: F401 (toy_graph: also imported from here)

from nets.errors import InputError, ModelError
from nets.graph.builder import GraphBuilder
from nets.graph.interpret import interpret
from nets.graph.passes import optimize
from nets.runtime.model import Model
from nets.runtime.planner import plan_memory


def test_passes_fuse_and_keep_records():
    g = fill_weights(toy_graph())
    opt = optimize(g)
    ops = [n.op for n in opt.nodes]
    assert "batch_norm" not in ops and "zero_pad" not in ops and "dropout" not in ops
    assert "add" not in ops and "activation" not in ops
    conv0 = opt.node("conv0")
    assert conv0.fused == ["pad0", "bn0", "relu0"] and conv0.attrs["pad"] == (0, 1, 0, 1)
    assert opt.node("pool").fused == ["pool_pad"] and opt.node("pool").attrs["pad"] == (1, 1, 1, 1)
    short = opt.node("short")
    assert short.attrs.get("residual") is None
    sep = opt.node("sep")
    assert sep.attrs["residual"] == "short_bn" and sep.attrs["act"] == "relu"
    assert {"sep_bn", "add", "add_relu"} <= set(sep.fused)
    assert opt.node("post_bn").op == "channel_affine"
    # depthwise + the 1x1 conv reading it: one node under the 1x1's name
    pw2 = opt.node("pw2")
    assert pw2.op == "depthwise_pointwise" and pw2.fused[:3] == ["dw2", "dw2_bn", "dw2_relu"]
    assert pw2.attrs["dw_act"] == "relu6" and pw2.attrs["act"] == "relu6" and pw2.inputs == [sep.output]
    assert sep.op == "depthwise_pointwise" and sep.fused[0] == "sep/depthwise"
    assert opt.node("dw").op == "depthwise_conv2d"        # multiplier 2 and no 1x1 after it: alone
    assert optimize(g, fuse=False).node("pw2").op == "conv2d"
    sep2 = opt.node("sep2")
    assert sep2.attrs["in_act"] == "relu" and sep2.fused[:2] == ["pre_relu", "sep2/depthwise"]
    assert sep2.inputs == [short.output]
    # every source layer is either a node of the optimised graph or recorded as fused into one
    kept = {n.name for n in opt.nodes} | {f for n in opt.nodes for f in n.fused}
    assert {n.name for n in g.nodes} <= kept


def test_planner_reuses_memory_and_slices_concat():
    g = optimize(fill_weights(toy_graph()))
    plan = plan_memory(g, batch=2)
    assert plan.peak_bytes < plan.naive_bytes
    out = {n.name: n.output for n in g.nodes}           # a fused node writes its last layer's value
    assert plan.slices[out["dw"]] == ("mixed", 0)
    assert plan.slices[out["c71"]] == ("mixed", 16 * 2)
    assert plan.slices[out["avg_conv"]] == ("mixed", 16 * 2 + 6)
    assert plan.slices[out["pw2"]] == ("mixed", 16 * 2 + 6 + 7 + 5)
    assert out["c17"] not in plan.slices     # read by two layers: copied into the concat
    # buffers alive at the same time never overlap
    roots = list(plan.offsets)
    for i, a in enumerate(roots):
        for b_ in roots[i + 1:]:
            la, lb = plan.lifetimes[a], plan.lifetimes[b_]
            if la[0] <= lb[1] and lb[0] <= la[1]:
                oa, ob = plan.offsets[a], plan.offsets[b_]
                assert oa + plan.sizes[a] <= ob or ob + plan.sizes[b_] <= oa, (a, b_)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("top", [True, False])
def test_reference_backend_matches_interpreter(batch, top):
    g = fill_weights(toy_graph(top))
    x = np.random.default_rng(1).normal(size=(batch, 19, 17, 3)).astype(np.float32)
    want = interpret(g, x)[g.outputs[0]]
    model = Model(g, device="reference")
    got = model(x)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-5
    again = model(x)                        # steady state reuses the arena: same answer
    np.testing.assert_array_equal(again, got)


def test_cpu_backend_matches_interpreter():
    g = fill_weights(toy_graph())
    x = np.random.default_rng(2).normal(size=(2, 19, 17, 3)).astype(np.float32)
    want = interpret(g, x)[g.outputs[0]]
    for threads in (1, 2):
        got = Model(g, device="cpu", threads=threads)(x)
        assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-5


def test_bad_inputs_are_named():
    model = Model(fill_weights(toy_graph()), device="reference")
    with pytest.raises(InputError, match=r"float32.*float64"):
        model(np.zeros((1, 19, 17, 3)))
    with pytest.raises(InputError, match="preprocess"):
        model(np.zeros((1, 19, 17, 3), np.uint8))
    with pytest.raises(InputError, match=r"\(N, 19, 17, 3\).*\(1, 17, 19, 3\)"):
        model(np.zeros((1, 17, 19, 3), np.float32))
    with pytest.raises(InputError, match="batch axis"):
        model(np.zeros((19, 17, 3), np.float32))
    with pytest.raises(InputError, match="NaN"):
        model(np.full((1, 19, 17, 3), np.nan, np.float32))


def test_missing_weights_and_bad_threads():
    with pytest.raises(ModelError, match="not loaded"):
        Model(toy_graph(), device="reference")
    with pytest.raises(ModelError, match="threads"):
        Model(fill_weights(toy_graph()), device="cpu", threads=999)


def test_pool_padding_as_large_as_the_window_is_refused():
    b = GraphBuilder("p")
    x = b.input((8, 8, 4), name="in")
    with pytest.raises(ModelError, match=r"layer 'pool'.*as large as the 2x2 window"):
        b.max_pool2d(x, 2, 1, padding=(2, 0, 0, 0), name="pool")


def stage_boundary(size=15, stride=2, extra_reader=False):
    """ResNet's last block of a stage, then the next stage's strided 1x1 shortcut and first conv."""
    b = GraphBuilder("stage")
    x = b.input((size, size + 2, 8), name="in")
    r = b.relu(b.batch_norm(b.conv2d(x, 16, 1, name="stem"), name="stem_bn"), name="stem_relu")
    y = b.relu(b.batch_norm(b.conv2d(r, 8, 1, name="b_1"), name="b_1_bn"), name="b_1_relu")
    y = b.relu(b.batch_norm(b.conv2d(y, 8, 3, padding="same", name="b_2"), name="b_2_bn"), name="b_2_relu")
    y = b.batch_norm(b.conv2d(y, 16, 1, name="b_3"), name="b_3_bn")
    out = b.relu(b.add([r, y], name="b_add"), name="b_out")
    short = b.conv2d(out, 24, 1, strides=stride, name="next_0")
    main = b.conv2d(out, 24, 1, strides=stride, name="next_1")
    z = b.add([short, main], name="next_add")
    if extra_reader:             # a reader at full resolution: nothing may be subsampled
        full = b.conv2d(out, 24, 1, name="full")
        z = b.add([b.global_avg_pool(z, name="gap_z"), b.global_avg_pool(full, name="gap_full")], name="both")
    return fill_weights(b.build(z), seed=3)


@pytest.mark.parametrize("size,stride", [(15, 2), (16, 2), (13, 3)])
def test_subsample_early_computes_only_what_strided_readers_read(size, stride):
    g = stage_boundary(size, stride)
    x = np.random.default_rng(2).normal(size=(2,) + g.shapes[g.inputs[0]]).astype(np.float32)
    want = interpret(g, x)[g.outputs[0]]
    model = Model(g, threads=1)
    opt = model.graph
    sub = -(-size // stride), -(-(size + 2) // stride)
    # the stride moved up to the 3x3 conv; the block's last conv and the next stage's run at stride 1
    conv2 = next(n for n in opt.nodes if n.name == "b_2")
    assert tuple(conv2.attrs["strides"]) == (stride, stride) and opt.shapes[conv2.output][:2] == sub
    for name in ("b_3", "next_0", "next_1"):
        node = next(n for n in opt.nodes if n.name == name)
        assert tuple(node.attrs["strides"]) == (1, 1), name
    pool = next(n for n in opt.nodes if n.name == "b_3/residual_subsample")
    assert pool.op == "max_pool2d" and opt.shapes[pool.output][:2] == sub
    assert rel_err(model(x), want) < 1e-5
    ref_model = Model(g, device="reference")
    assert rel_err(ref_model(x), want) < 1e-5


def test_subsample_early_leaves_values_read_at_full_resolution():
    g = stage_boundary(extra_reader=True)
    x = np.random.default_rng(2).normal(size=(2,) + g.shapes[g.inputs[0]]).astype(np.float32)
    model = Model(g, threads=1)
    assert all(tuple(n.attrs["strides"]) == (1, 1) for n in model.graph.nodes
               if n.op == "conv2d" and n.name not in ("next_0", "next_1"))
    assert not any("subsample" in n.name for n in model.graph.nodes)
    assert rel_err(model(x), interpret(g, x)[g.outputs[0]]) < 1e-5
