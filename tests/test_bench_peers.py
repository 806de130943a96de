"""bench/compare_ort.py runs ours, ONNX Runtime and OpenVINO on the same exported graph: on a toy
graph all three agree and every ratio is reported."""

import statistics

import numpy as np
from helpers import fill_weights, load_script, toy_graph

from nets.io.onnx.export import export_onnx_bytes
from nets.runtime.model import Model


def test_ours_ort_and_openvino_agree_and_are_timed():
    bench = load_script("bench/compare_ort.py")
    g = fill_weights(toy_graph(top=True), seed=5)
    model = Model(g, threads=1)
    x = np.random.default_rng(1).normal(size=(2,) + model.input_shape).astype(np.float32)
    row = bench.bench_config(model, export_onnx_bytes(g), x, threads=1, flops=1e6, repeat=3, warmup=1,
                             budget_s=5)
    assert "error" not in row, row.get("error")
    assert row["ort_rel_err"] < 1e-4 and row["ov_rel_err"] < 1e-4
    r = row["rounds_ms"]
    assert len(r["ours"]) == len(r["ort"]) == len(r["ov"]) >= 1
    per_round = lambda peers: statistics.median(o / min(r[k][i] for k in peers) for i, o in enumerate(r["ours"]))
    assert np.isclose(row["ratio"], per_round(["ort"])) and np.isclose(row["ratio_ov"], per_round(["ov"]))
    assert np.isclose(row["ratio_best"], per_round(["ort", "ov"]))
    assert row["ratio_best"] >= min(row["ratio"], row["ratio_ov"])


def test_per_layer_comparison_attributes_every_peer_node_to_our_kernels(tmp_path):
    bench = load_script("bench/compare_layers.py")
    g = fill_weights(toy_graph(top=True), seed=5)
    model = Model(g, threads=1)
    x = np.random.default_rng(1).normal(size=(2,) + model.input_shape).astype(np.float32)
    res = bench.compare_model(model, x, threads=1, repeat=3)
    rows = res["rows"]
    # a layer is run by at most one of our kernels (passes may split one: "sep" -> "sep/depthwise" + "sep")
    owned = [name for r in rows for name in r["layers"]]
    assert len(owned) == len(set(owned))
    assert {name.split("/")[0] for name in owned} <= {n.name for n in g.nodes}
    for key in ("ort_ms", "ov_ms"):
        assert sum(len(r[key + "_nodes"]) for r in rows) > 0
        # peers run each compute layer: every conv / dense kernel of ours got time from both peers
        for r in rows:
            if r["op"] in ("conv2d", "dense", "depthwise_conv2d"):
                assert r[key + "_nodes"] and r[key] > 0, (key, r["layer"])
    for r in rows:
        if r["best_ms"] is not None:
            assert r["excess_ms"] == r["ours_ms"] - r["best_ms"] and r["best_ms"] == min(
                r[k] for k in ("ort_ms", "ov_ms") if r[k + "_nodes"])
    text = bench.table(res, top=0, markdown=True)
    assert text.count("\n| ") >= len(rows) and "sum of kernels" in text
    bench.write_csv(res, tmp_path / "rows.csv")
    assert len((tmp_path / "rows.csv").read_text().splitlines()) == len(rows) + 1
