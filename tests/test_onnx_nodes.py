"""Single-node ONNX graphs (and the few-node idioms exporters write) for every op and attribute form the
importer supports, run on our kernels and in ONNX Runtime on the same file."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from nets.errors import UnsupportedError
from nets.io.onnx import OnnxModel, onnx_to_graph

DEVICE = "cpu"
X = (None, 8, 9, 7)                 # NCHW with a dynamic batch: 8 channels (groups of 2 and 4), odd H and W


def rand(*shape, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def model(nodes, inits=None, x_shape=X, opset=17, outputs=("y",)):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    ys = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    g = helper.make_graph(nodes, "g", [x], ys, initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def node(op, inputs, output="y", **attrs):
    outputs = [output] if isinstance(output, str) else list(output)
    return helper.make_node(op, inputs, outputs, name=f"the_{op}_{outputs[0]}", **attrs)


def check(data, x_shape=X, tol=1e-5, batches=(1, 3), scale=2.0):
    graph, interface = onnx_to_graph(data, name="node.onnx")
    ours = OnnxModel(graph, interface, device=DEVICE)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for n in batches:
        x = rand(n, *x_shape[1:], seed=n, scale=scale)
        want = sess.run(None, {"x": x})
        got = ours(x)
        got = got if isinstance(got, list) else [got]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape, (g.shape, w.shape)
            err = float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), 1e-30))
            assert err <= tol, err
    return ours


def ops(m):
    return {n.op for n in m.source_graph.nodes}


# ----------------------------------------------------------------------------- convolutions and pooling

@pytest.mark.parametrize("pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("group,cout,bias", [(1, 5, True), (2, 6, False), (4, 8, True), (8, 8, True), (8, 16, False)])
def test_conv(pad, group, cout, bias):
    attrs = dict(kernel_shape=[3, 2], strides=[2, 1], auto_pad=pad, group=group)
    if pad == "NOTSET":
        attrs["pads"] = [1, 0, 2, 1]
    inits = {"w": rand(cout, 8 // group, 3, 2, seed=1, scale=0.3)}
    if bias:
        inits["b"] = rand(cout, seed=2)
    m = check(model([node("Conv", ["x", "w", "b"] if bias else ["x", "w"], **attrs)], inits))
    assert ops(m) & {"conv2d", "depthwise_conv2d"}


@pytest.mark.parametrize("pad", ["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("kind", ["MaxPool", "AveragePool_incl", "AveragePool_excl"])
@pytest.mark.parametrize("ceil", [0, 1])
def test_pool(kind, pad, ceil):
    op, _, incl = kind.partition("_")
    attrs = dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad=pad, ceil_mode=ceil)
    if pad == "NOTSET":
        attrs["pads"] = [1, 0, 1, 1]
    if op == "AveragePool":
        attrs["count_include_pad"] = int(incl == "incl")
    data = model([node(op, ["x"], **attrs)])
    try:
        onnx_to_graph(data)
    except UnsupportedError as e:   # a window the ceiling adds: does its padding count? (ONNX Runtime: partly)
        assert ceil and incl == "incl" and "ceil_mode=1 with count_include_pad=1" in str(e)
        return
    check(data)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op):
    check(model([node(op, ["x"])]))


@pytest.mark.parametrize("op,opset", [("ReduceMean", 13), ("ReduceMean", 18), ("ReduceMax", 13), ("ReduceMax", 18)])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", [[2, 3], [-1, -2]])
def test_reduce_over_height_width(op, opset, keepdims, axes):
    attrs, inits, ins = {"keepdims": keepdims}, {}, ["x"]
    if opset < 18:
        attrs["axes"] = axes
    else:
        inits["axes"], ins = np.array(axes, np.int64), ["x", "axes"]
    check(model([node(op, ins, **attrs)], inits, opset=opset))


# ----------------------------------------------------------------------------- element-wise

CONSTS = {"scalar": np.float32(1.5), "per_channel": rand(8, 1, 1, seed=3), "per_channel_4d": rand(1, 8, 1, 1, seed=4)}


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("const", sorted(CONSTS))
@pytest.mark.parametrize("const_first", [False, True])
def test_arithmetic_with_constants(op, const, const_first):
    c = CONSTS[const] if op != "Div" else 1.0 + np.abs(CONSTS[const])
    ins = ["c", "x"] if const_first else ["x", "c"]
    data = model([node(op, ins)], {"c": c})
    if op == "Div" and const_first:
        with pytest.raises(UnsupportedError, match="Div of a constant by a tensor"):
            onnx_to_graph(data)
        return
    check(data)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("form", ["same_shape", "per_channel", "per_channel_first", "nhwc_per_channel"])
def test_arithmetic_between_computed_tensors(op, form):
    """Squeeze-excite's scale: (N, C, H, W) op (N, C, 1, 1), in either order, also on NHWC-transposed maps."""
    nodes = [node("Relu", ["x"], "r")]
    if form == "same_shape":
        a, b = "x", "r"
    elif form == "nhwc_per_channel":
        nodes += [node("Transpose", ["x"], "t", perm=[0, 2, 3, 1]), node("ReduceMean", ["t"], "s", axes=[1, 2]),
                  node("Sigmoid", ["s"], "g")]
        nodes += [node(op, ["t", "g"], "m"), node("Transpose", ["m"], "y", perm=[0, 3, 1, 2])]
        check(model(nodes))
        return
    else:
        nodes += [node("GlobalAveragePool", ["r"], "p"), node("Sigmoid", ["p"], "g")]
        a, b = ("x", "g") if form == "per_channel" else ("g", "x")
    m = check(model(nodes + [node(op, [a, b])]))
    assert ("mul" if op == "Mul" else "add") in ops(m)


def test_sum_of_three_and_a_constant():
    nodes = [node("Relu", ["x"], "r"), node("Sigmoid", ["x"], "s"), node("Neg", ["x"], "n"),
             node("Sum", ["x", "r", "s", "n", "c"])]
    m = check(model(nodes, {"c": rand(8, 1, 1, seed=5)}))
    assert [n.op for n in m.source_graph.nodes].count("add") == 3


ACTS = {
    "Relu": {}, "Sigmoid": {}, "Tanh": {}, "HardSwish": {}, "HardSigmoid": {}, "HardSigmoid_keras": {"alpha": 1 / 6},
    "HardSigmoid_custom": {"alpha": 0.3, "beta": 0.4}, "LeakyRelu": {"alpha": 0.2}, "Gelu": {},
    "Gelu_tanh": {"approximate": "tanh"},
}


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("on", ["map", "vector"])
def test_activation_nodes(act, on):
    op = act.split("_")[0]
    pre = [node("Flatten", ["x"], "f")] if on == "vector" else []
    check(model(pre + [node(op, ["f" if pre else "x"], **ACTS[act])], opset=20), scale=4.0)


@pytest.mark.parametrize("opset", [6, 11, 13])
@pytest.mark.parametrize("bounds", [(0.0, 6.0), (0.0, None)])
def test_clip(opset, bounds):
    lo, hi = bounds
    if opset < 11:
        n = node("Clip", ["x"], min=lo, **({} if hi is None else {"max": hi}))
        check(model([n], opset=opset), scale=5.0)
        return
    inits = {"lo": np.float32(lo)} | ({} if hi is None else {"hi": np.float32(hi)})
    check(model([node("Clip", ["x", "lo", "hi"] if hi is not None else ["x", "lo"])], inits, opset=opset), scale=5.0)


@pytest.mark.parametrize("opset,axis", [(11, 1), (13, 1), (13, -1)])
def test_softmax_on_vectors(opset, axis):
    check(model([node("Flatten", ["x"], "f"), node("Softmax", ["f"], axis=axis)], opset=opset))


def _c(name, v):
    return node("Constant", [], name, value=numpy_helper.from_array(np.asarray(v, np.float32), name))


ARITHMETIC = {   # activation -> the nodes exporters write for it (input x, output y)
    "gelu_div_first": [_c("k", np.sqrt(2)), node("Div", ["x", "k"], "d"), node("Erf", ["d"], "e"),
                       _c("one", 1), node("Add", ["e", "one"], "p"), node("Mul", ["x", "p"], "m"), _c("h", 0.5),
                       node("Mul", ["m", "h"])],
    "gelu_half_first": [_c("h", 0.5), node("Mul", ["x", "h"], "xh"), _c("k", 1 / np.sqrt(2)),
                        node("Mul", ["x", "k"], "d"), node("Erf", ["d"], "e"), _c("one", 1),
                        node("Add", ["one", "e"], "p"), node("Mul", ["xh", "p"])],
    "gelu_tanh_pow": [_c("three", 3), node("Pow", ["x", "three"], "c"), _c("a", 0.044715),
                      node("Mul", ["c", "a"], "ca"),
                      node("Add", ["x", "ca"], "i"), _c("s", np.sqrt(2 / np.pi)), node("Mul", ["i", "s"], "is"),
                      node("Tanh", ["is"], "t"), _c("one", 1), node("Add", ["t", "one"], "p"), _c("h", 0.5),
                      node("Mul", ["x", "h"], "xh"), node("Mul", ["xh", "p"])],
    "gelu_tanh_cube": [node("Mul", ["x", "x"], "x2"), node("Mul", ["x2", "x"], "c"), _c("a", 0.044715),
                       node("Mul", ["a", "c"], "ca"), node("Add", ["ca", "x"], "i"), _c("s", np.sqrt(2 / np.pi)),
                       node("Mul", ["s", "i"], "is"), node("Tanh", ["is"], "t"), _c("one", 1),
                       node("Add", ["t", "one"], "p"), node("Mul", ["p", "x"], "m"), _c("h", 0.5),
                       node("Mul", ["m", "h"])],
    "silu": [node("Sigmoid", ["x"], "s"), node("Mul", ["x", "s"])],
    "hard_sigmoid_keras": [_c("three", 3), node("Add", ["x", "three"], "a"), _c("z", 0), _c("six", 6),
                           node("Clip", ["a", "z", "six"], "c"), _c("k", 1 / 6), node("Mul", ["c", "k"])],
    "hard_swish_keras": [_c("three", 3), node("Add", ["x", "three"], "a"), _c("six", 6),
                         node("Clip", ["a", "", "six"], "c0"), node("Relu", ["c0"], "c"), _c("k", 6),
                         node("Div", ["c", "k"], "hs"), node("Mul", ["x", "hs"])],
    "hard_swish_of_hard_sigmoid": [node("HardSigmoid", ["x"], "s", alpha=1 / 6), node("Mul", ["s", "x"])],
}
ARITHMETIC_ACT = {"gelu_div_first": "gelu", "gelu_half_first": "gelu", "gelu_tanh_pow": "gelu_tanh",
                  "gelu_tanh_cube": "gelu_tanh", "silu": "silu", "hard_sigmoid_keras": "hard_sigmoid",
                  "hard_swish_keras": "hard_silu", "hard_swish_of_hard_sigmoid": "hard_silu"}


@pytest.mark.parametrize("case", sorted(ARITHMETIC))
def test_activations_written_as_arithmetic_become_one_node(case):
    body = []
    for n in ARITHMETIC[case]:          # on the output of a Relu and a Cast (Keras' Casts are seen through)
        body.append(helper.make_node(n.op_type, ["xc" if i == "x" else i for i in n.input], n.output, name=n.name))
        body[-1].attribute.extend(n.attribute)
    data = model([node("Relu", ["x"], "x0"), node("Cast", ["x0"], "xc", to=TensorProto.FLOAT)] + body)
    m = check(data, scale=4.0)
    acts = [n.attrs.get("act") for n in m.source_graph.nodes if n.op == "activation"]
    assert acts == ["relu", ARITHMETIC_ACT[case]], acts


def test_an_intermediate_used_elsewhere_keeps_the_arithmetic():
    """x * sigmoid(x) where sigmoid(x) is also an output: both stay (nothing is lost)."""
    nodes = [node("Sigmoid", ["x"], "s"), node("Mul", ["x", "s"])]
    data = model(nodes, outputs=("y", "s"))
    m = check(data)
    assert {n.op for n in m.source_graph.nodes} >= {"mul", "activation"}


# ----------------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("eps", [1e-5, 1e-3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("where", ["nhwc_map", "vector", "vector_axis1"])
def test_layer_normalization(where, bias, eps):
    ins = ["t", "g", "b"] if bias else ["t", "g"]
    inits = {"g": rand(8, seed=6), "b": rand(8, seed=7)}
    if where == "nhwc_map":             # torch's LayerNorm2d: Transpose -> LN -> Transpose
        nodes = [node("Transpose", ["x"], "t", perm=[0, 2, 3, 1]), node("LayerNormalization", ins, "n", epsilon=eps),
                 node("Transpose", ["n"], "y", perm=[0, 3, 1, 2])]
    else:
        nodes = [node("GlobalAveragePool", ["x"], "p"), node("Flatten", ["p"], "t"),
                 node("LayerNormalization", ins, epsilon=eps, axis=1 if where == "vector_axis1" else -1)]
    m = check(model(nodes, inits))
    assert "layer_norm" in ops(m)


def test_layer_normalization_over_a_non_channel_axis_is_refused():
    nodes = [node("LayerNormalization", ["x", "g"], axis=-1)]
    with pytest.raises(UnsupportedError, match="the_LayerNormalization.*only the channel axis"):
        onnx_to_graph(model(nodes, {"g": rand(7, seed=1)}))


@pytest.mark.parametrize("size,alpha,beta,bias", [(3, 1e-4, 0.75, 1.0), (7, 0.01, 0.5, 2.0), (5, 0.1, 0.75, 1.0)])
def test_lrn(size, alpha, beta, bias):
    check(model([node("LRN", ["x"], size=size, alpha=alpha, beta=beta, bias=bias)]), scale=3.0)


@pytest.mark.parametrize("on", ["map", "vector"])
def test_batch_normalization(on):
    pre = [node("Flatten", ["x"], "f")] if on == "vector" else []
    c = 8 if on == "map" else 8 * 9 * 7
    inits = {"s": rand(c, seed=1), "b": rand(c, seed=2), "m": rand(c, seed=3), "v": 0.5 + rand(c, seed=4) ** 2}
    check(model(pre + [node("BatchNormalization", ["f" if pre else "x", "s", "b", "m", "v"], epsilon=1e-3)], inits))


# ----------------------------------------------------------------------------- layout

@pytest.mark.parametrize("form", ["flatten", "flatten_neg_axis", "reshape_minus1", "reshape_0_minus1",
                                  "reshape_minus1_allowzero", "reshape_minus1_map", "squeeze_unsqueeze_13",
                                  "squeeze_unsqueeze_11", "unsqueeze_twice", "shape_gather_concat"])
def test_flatten_reshape_squeeze(form):
    f = 8 * 9 * 7
    inits, opset = {"w": rand(f, 3, seed=8, scale=0.1)}, 17
    if form == "flatten":
        nodes = [node("Flatten", ["x"], "v", axis=1)]
    elif form == "flatten_neg_axis":
        nodes = [node("Flatten", ["x"], "v", axis=-3)]
    elif form.startswith("reshape_minus1") or form == "reshape_0_minus1":
        target = {"reshape_minus1": [-1, f], "reshape_0_minus1": [0, -1], "reshape_minus1_allowzero": [-1, f],
                  "reshape_minus1_map": [-1, 8 * 9, 7, 1]}[form]
        inits["s"] = np.array(target, np.int64)
        nodes = [node("Reshape", ["x", "s"], "v", allowzero=int(form.endswith("allowzero")))]
        if form.endswith("map"):            # a map of another shape in between
            inits["s2"] = np.array([-1, f], np.int64)
            nodes = [node("Reshape", ["x", "s"], "m"), node("Relu", ["m"], "r"), node("Reshape", ["r", "s2"], "v")]
    elif form == "shape_gather_concat":     # Keras: Reshape(x, Concat(Unsqueeze(Shape(x)[0]), [-1]))
        inits |= {"zero": np.array(0, np.int64), "zeros": np.array([0], np.int64), "m1": np.array([-1], np.int64)}
        nodes = [node("Shape", ["x"], "sh"), node("Gather", ["sh", "zero"], "n", axis=0),
                 node("Unsqueeze", ["n", "zeros"], "n1"), node("Concat", ["n1", "m1"], "tg", axis=0),
                 node("Reshape", ["x", "tg"], "v")]
    else:                                   # pool -> (N, C, 1, 1) -> squeeze -> (N, C) -> unsqueeze ...
        opset = 11 if form.endswith("11") else 17
        inits = {"w": rand(8, 3, seed=8)}
        ax = {"axes": [2, 3]} if opset < 13 else {}
        if opset >= 13:
            inits["a"], inits["a1"] = np.array([2, 3], np.int64), np.array([-1], np.int64)
        sq = ["p", "a"] if opset >= 13 else ["p"]
        nodes = [node("GlobalAveragePool", ["x"], "p"), node("Squeeze", sq, "s", **ax)]
        if form == "unsqueeze_twice":       # (N, C) -> (N, C, 1) -> (N, C, 1, 1): a rank-3 view in between
            nodes += [node("Unsqueeze", ["s", "a1"], "u1"), node("Unsqueeze", ["u1", "a1"], "u2"),
                      node("Mul", ["x", "u2"], "m"), node("GlobalMaxPool", ["m"], "q"), node("Flatten", ["q"], "v")]
        else:
            nodes += [node("Unsqueeze", ["s", "a"] if opset >= 13 else ["s"], "u", **ax), node("Flatten", ["u"], "v")]
    check(model(nodes + [node("MatMul", ["v", "w"])], inits, opset=opset))


def test_reshape_that_moves_the_batch_axis_is_refused():
    data = model([node("Reshape", ["x", "s"])], {"s": np.array([-1, 8 * 9], np.int64)})
    with pytest.raises(UnsupportedError, match="the_Reshape.*moves the batch axis"):
        onnx_to_graph(data)


@pytest.mark.parametrize("groups", [2, 4])
def test_channel_shuffle_is_a_channel_gather(groups):
    """ShuffleNet: Reshape (N, g, C/g, H, W) -> Transpose -> Reshape (N, C, H, W), as dynamo writes it."""
    inits = {"s5": np.array([-1, groups, 8 // groups, 9, 7], np.int64), "s4": np.array([-1, 8, 9, 7], np.int64)}
    nodes = [node("Reshape", ["x", "s5"], "r"), node("Transpose", ["r"], "t", perm=[0, 2, 1, 3, 4]),
             node("Reshape", ["t", "s4"], "y")]
    m = check(model(nodes, inits))
    assert [n.op for n in m.source_graph.nodes] == ["input", "channel_gather"]


@pytest.mark.parametrize("form", ["split_equal", "split_attr_11", "split_input_13", "num_outputs_18"])
def test_split_channels(form):
    opset = {"split_equal": 13, "split_attr_11": 11, "split_input_13": 13, "num_outputs_18": 18}[form]
    attrs, ins, inits, outs = {"axis": 1}, ["x"], {}, ("a", "b", "c")
    if form == "split_attr_11":
        attrs["split"] = [3, 1, 4]
    elif form == "split_input_13":
        inits["s"], ins = np.array([2, 5, 1], np.int64), ["x", "s"]
    elif form == "num_outputs_18":
        attrs["num_outputs"] = 3                    # 8 = 3 + 3 + 2
    else:
        outs = ("a", "b")
    check(model([node("Split", ins, outs, **attrs)], inits, opset=opset, outputs=outs))


@pytest.mark.parametrize("form", ["channels", "channels_step2", "channels_reversed", "height_width", "neg_axes",
                                  "opset9_attrs", "vector"])
def test_slice(form):
    big = np.iinfo(np.int64).max
    cases = {   # starts, ends, axes, steps
        "channels": ([2], [6], [1], [1]), "channels_step2": ([1], [big], [1], [2]),
        "channels_reversed": ([-1], [-big], [1], [-1]), "height_width": ([1, 0], [-1, 5], [2, 3], [1, 1]),
        "neg_axes": ([0, 2, 1], [big, 9, -1], [0, -3, -1], [1, 1, 1]), "vector": ([5], [60], [1], [1]),
    }
    if form == "opset9_attrs":
        check(model([node("Slice", ["x"], starts=[1, 2], ends=[7, 8], axes=[1, 2])], opset=9))
        return
    starts, ends, axes, steps = (np.array(v, np.int64) for v in cases[form])
    pre = [node("Flatten", ["x"], "f")] if form == "vector" else []
    nodes = pre + [node("Slice", ["f" if pre else "x", "s", "e", "a", "st"])]
    check(model(nodes, {"s": starts, "e": ends, "a": axes, "st": steps}))


def test_gather_channels():
    check(model([node("Gather", ["x", "i"], axis=1)], {"i": np.array([3, 0, 7, 3], np.int64)}))


def test_concat_channels_and_matmul_on_nhwc_maps():
    """Keras' Dense on a 4-D map (ConvNeXt): MatMul on the NHWC tensor, then a bias Add."""
    nodes = [node("Relu", ["x"], "r"), node("Concat", ["x", "r"], "c", axis=1),
             node("Transpose", ["c"], "t", perm=[0, 2, 3, 1]), node("MatMul", ["t", "w"], "m"),
             node("Add", ["m", "b"], "a"), node("Transpose", ["a"], "y", perm=[0, 3, 1, 2])]
    check(model(nodes, {"w": rand(16, 5, seed=9), "b": rand(5, seed=10)}))
