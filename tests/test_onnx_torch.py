"""PyTorch modules exported as a user does today: ``torch.onnx.export(model, x, dynamo=True, dynamic_shapes=...)``
with a dynamic batch, loaded with ``nets.load`` and compared with torch's own output at batch 1 and 3.

Each module covers exporter idioms: ``torch.flatten(x, 1)`` as Reshape to [-1, N], squeeze-excite with
sigmoid / hard sigmoid (per-channel Mul between computed tensors), SiLU / GELU / tanh / hard swish, the same
written out by hand, LayerNorm2d (Transpose -> LN -> Transpose), grouped convolutions, ShuffleNet's channel
shuffle and split, LocalResponseNorm (decomposed by the exporter), sums, squeeze/unsqueeze, crops. An NCHW
model keeps taking and returning NCHW.
"""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nets

DEVICE = "cpu"


def export(module, shape, path):
    torch.manual_seed(0)
    module.eval()
    with torch.no_grad():            # non-trivial BatchNorm statistics (the exporter folds them into convs)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(2, *shape),), str(path), dynamo=True, verbose=False,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    return path


def check(module, shape, tmp_path, tol=1e-4):
    """Load the export, compare every output with torch at batch 1 and 3; returns the model."""
    model = nets.load(export(module, shape, tmp_path / "m.onnx"), device=DEVICE)
    assert model.layout == "NCHW" and model.interface_shape == tuple(shape)
    for n in (1, 3):
        x = np.random.default_rng(n).normal(size=(n, *shape)).astype(np.float32)
        with torch.no_grad():
            want = module(torch.from_numpy(x))
        want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
        got = model(x)
        got = got if isinstance(got, list) else [got]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            err = float(np.max(np.abs(g - w)) / np.max(np.abs(w)))
            assert err <= tol, err
    return model


def ops(model):
    return {n.op for n in model.source_graph.nodes}


def acts(model):
    return {n.attrs["act"] for n in model.source_graph.nodes if n.op == "activation"}


class ResNetBlock(nn.Module):
    """Conv-BN-ReLU, a residual Add, max pool, ``torch.flatten(x, 1)`` (Reshape to [-1, N]), Linear."""

    def __init__(self, flatten):
        super().__init__()
        self.flatten = flatten
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 3 * 2, 5)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = F.max_pool2d(F.relu(self.b2(self.c2(y)) + y), 2)
        if self.flatten == "flatten":
            y = torch.flatten(y, 1)
        elif self.flatten == "view":
            y = y.view(y.size(0), -1)
        else:
            y = nn.Flatten()(y).reshape(-1, 48)
        return self.fc(y)


@pytest.mark.parametrize("flatten", ["flatten", "view", "module_then_reshape"])
def test_resnet_block_with_flatten(tmp_path, flatten):
    model = check(ResNetBlock(flatten), (3, 13, 9), tmp_path)
    assert {"conv2d", "add", "max_pool2d", "dense"} <= ops(model)


class SqueezeExcite(nn.Module):
    """Global mean (keepdims) -> 1x1 -> ReLU -> 1x1 -> gate; the map times the gate (per channel)."""

    def __init__(self, gate):
        super().__init__()
        self.gate = gate
        self.conv = nn.Conv2d(4, 12, 3, padding=1)
        self.reduce, self.expand = nn.Conv2d(12, 3, 1), nn.Conv2d(3, 12, 1)

    def forward(self, x):
        y = self.conv(x)
        s = self.expand(F.relu(self.reduce(y.mean((2, 3), keepdim=True))))
        s = torch.sigmoid(s) if self.gate == "sigmoid" else F.hardsigmoid(s)
        y = y * s if self.gate != "hardsigmoid_first" else s * y
        return F.hardswish(y)


@pytest.mark.parametrize("gate", ["sigmoid", "hardsigmoid", "hardsigmoid_first"])
def test_squeeze_excite(tmp_path, gate):
    model = check(SqueezeExcite(gate), (4, 7, 6), tmp_path)
    assert "mul" in ops(model) and "hard_silu" in acts(model)


class Activations(nn.Module):
    """Library activations and the same written by hand (the exporter keeps the arithmetic)."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, 3, 1) for _ in range(8))

    def forward(self, x):
        c = [conv(x) for conv in self.convs]
        return torch.cat([F.silu(c[0]), F.gelu(c[1]), F.gelu(c[2], approximate="tanh"), torch.tanh(c[3]),
                          c[4] * 0.5 * (1.0 + torch.erf(c[4] / math.sqrt(2.0))),          # GELU by hand
                          c[5] * torch.sigmoid(c[5]),                                     # SiLU by hand
                          c[6] * F.relu6(c[6] + 3.0) / 6.0,                               # hard swish by hand
                          F.relu6(c[7])], 1)


def test_activations(tmp_path):
    model = check(Activations(), (3, 5, 4), tmp_path)
    assert {"silu", "gelu", "gelu_tanh", "tanh", "hard_silu", "relu6"} <= acts(model)
    assert "mul" not in ops(model)              # every x * f(x) became one activation


class LayerNorm2d(nn.Module):
    """ConvNeXt: LayerNorm over channels of an NCHW map (permute -> LN -> permute), GELU, a LayerNorm on the
    pooled vector, Linear."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(6, 6, 7, padding=3, groups=6)
        self.ln = nn.LayerNorm(6, eps=1e-6)
        self.pw = nn.Linear(6, 12)
        self.head_ln = nn.LayerNorm(12)
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        y = self.ln(self.dw(x).permute(0, 2, 3, 1))
        y = F.gelu(self.pw(y)).permute(0, 3, 1, 2)
        return self.fc(self.head_ln(y.mean((2, 3))))


def test_layer_norm_2d(tmp_path):
    model = check(LayerNorm2d(), (6, 9, 8), tmp_path)
    assert [n.op for n in model.source_graph.nodes].count("layer_norm") == 2


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.g2 = nn.Conv2d(8, 6, 3, padding=1, groups=2)
        self.g3 = nn.Conv2d(6, 9, 3, stride=2, groups=3)
        self.dw = nn.Conv2d(9, 18, 3, padding=1, groups=9)      # depthwise, multiplier 2

    def forward(self, x):
        return self.dw(F.relu(self.g3(F.relu(self.g2(x)))))


def test_grouped_convolutions(tmp_path):
    model = check(Grouped(), (8, 11, 10), tmp_path)
    assert sorted(n.attrs.get("groups", 1) for n in model.source_graph.nodes if n.op == "conv2d") == [2, 3]


class ShuffleUnit(nn.Module):
    """ShuffleNetV2: split the channels in two, a branch on one half, concat, channel shuffle; slices."""

    def __init__(self):
        super().__init__()
        self.pw = nn.Conv2d(4, 4, 1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        y = torch.cat([a, self.dw(F.relu(self.pw(b)))], 1)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        return y[:, 1:7, 1:, :-2] + y[:, 2:, :-1, 2:]


def test_channel_shuffle_and_split(tmp_path):
    model = check(ShuffleUnit(), (8, 7, 9), tmp_path)
    assert {"channel_gather", "crop"} <= ops(model) and "reshape" not in ops(model)


def test_local_response_norm(tmp_path):
    """torch writes LocalResponseNorm as x / (k + alpha * avg_pool3d(pad(x * x)))^beta on a 5-D view."""
    module = nn.Sequential(nn.Conv2d(3, 9, 3), nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0), nn.ReLU())
    model = check(module, (3, 10, 9), tmp_path)
    assert "lrn" in ops(model)


class SumAndSqueeze(nn.Module):
    """Three branches summed, adaptive pooling squeezed to a vector, a gate unsqueezed back, two outputs."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 5, 1), nn.Conv2d(3, 5, 3, padding=1), nn.Conv2d(3, 5, 5, padding=2)
        self.fc = nn.Linear(5, 5)

    def forward(self, x):
        y = self.a(x) + self.b(x) + self.c(x)
        v = F.adaptive_avg_pool2d(y, 1).squeeze(-1).squeeze(-1)
        gate = self.fc(v)[:, :, None, None]
        return y - gate, v


def test_sum_squeeze_unsqueeze_and_two_outputs(tmp_path):
    model = check(SumAndSqueeze(), (3, 6, 5), tmp_path)
    assert [n.op for n in model.source_graph.nodes].count("add") >= 3
