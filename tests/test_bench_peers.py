"""bench/compare_ort.py runs ours, ONNX Runtime and OpenVINO on the same exported graph: on a toy
graph all three agree and every ratio is reported."""

import importlib.util
import pathlib

import numpy as np
from helpers import fill_weights, toy_graph

from nets.io.onnx.export import export_onnx_bytes
from nets.runtime.model import Model


def load_bench():
    path = pathlib.Path(__file__).resolve().parents[1] / "bench" / "compare_ort.py"
    spec = importlib.util.spec_from_file_location("compare_ort", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ours_ort_and_openvino_agree_and_are_timed():
    bench = load_bench()
    g = fill_weights(toy_graph(top=True), seed=5)
    model = Model(g, threads=1)
    x = np.random.default_rng(1).normal(size=(2,) + model.input_shape).astype(np.float32)
    row = bench.bench_config(model, export_onnx_bytes(g), x, threads=1, flops=1e6, repeat=3, warmup=1,
                             budget_s=5)
    assert "error" not in row, row.get("error")
    assert row["ort_rel_err"] < 1e-4 and row["ov_rel_err"] < 1e-4
    assert row["ratio"] == row["ours_ms"] / row["ort_ms"] and row["ratio_ov"] == row["ours_ms"] / row["ov_ms"]
    assert row["ratio_best"] == max(row["ratio"], row["ratio_ov"])
