"""The keras.applications CNNs beyond the six against ONNX Runtime and OpenVINO, on the same ONNX file.

Each model is built with ``weights=None`` at its default input size, its weights and statistics
randomised (tests/keras_utils.py), and exported the way a Keras user does (``model.export(path,
format="onnx")``, dynamic batch; ConvNeXt with a fixed one, see tests/test_onnx_keras_apps.py). Ours
loads that file with ``nets.load``, ONNX Runtime and OpenVINO read the same bytes; timing and
agreement are bench/compare_ort.py's (interleaved, same threads, one process).

    python bench/compare_keras_apps.py --markdown                     # the smallest of each family
    python bench/compare_keras_apps.py EfficientNetB0 ConvNeXtTiny --batch 1 8
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
os.environ.setdefault("KERAS_BACKEND", "torch")

FAMILIES = ("EfficientNetB0", "EfficientNetV2B0", "MobileNetV2", "MobileNetV3Small", "DenseNet121",
            "ConvNeXtTiny", "InceptionResNetV2", "ResNet50V2")
FIXED_BATCH = {"ConvNeXtTiny"}      # Keras' dynamic-batch export of its LayerNormalization fails


def export(name: str, batch: int, path: str):
    """The randomised model exported to ``path``; (input shape, Keras' own logits for a check)."""
    import keras
    from keras_utils import keras_onnx_export, randomize_keras_model

    kmodel = getattr(keras.applications, name)(weights=None, classifier_activation=None)
    shape = tuple(kmodel.input_shape[1:])
    if None in shape:               # MobileNetV3 builds with an open input size unless given one
        kmodel = getattr(keras.applications, name)(weights=None, classifier_activation=None,
                                                   input_shape=(224, 224, 3))
        shape = tuple(kmodel.input_shape[1:])
    x = np.random.default_rng(0).uniform(0, 255, (batch,) + shape).astype(np.float32)
    randomize_keras_model(kmodel, seed=7, calib_input=x)
    keras_onnx_export(kmodel, x, path, fixed=name in FIXED_BATCH)
    return shape


def main(argv=None) -> int:
    import compare_ort as co

    import nets

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=list(FAMILIES))
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--budget", type=float, default=30.0)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    info = co.machine_info()
    rows = []
    with tempfile.TemporaryDirectory(prefix="kn-kapps-") as tmp:
        for name in args.models:
            for batch in args.batch:
                base = {"model": name, "batch": batch, "threads": args.threads}
                if name in FIXED_BATCH and batch != args.batch[0]:
                    continue
                path = os.path.join(tmp, f"{name}-{batch}.onnx")
                try:
                    t0 = time.perf_counter()
                    shape = export(name, batch, path)
                    model = nets.load(path, threads=args.threads)
                    with open(path, "rb") as f:
                        data = f.read()
                    macs = co.graph_macs(model.source_graph)
                    print(f"# {name}: {macs / 1e9:.3f} GMAC/sample, input {shape}, exported and loaded in "
                          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
                except Exception as e:  # noqa: BLE001 - a row, not the end of the run
                    traceback.print_exc(file=sys.stderr)
                    rows.append(dict(base, error=f"export/load: {co._short(e)}"))
                    continue
                x = np.random.default_rng(batch).uniform(0, 255, (batch,) + shape).astype(np.float32)
                row = dict(base)
                row.update(co.bench_config(model, data, x, args.threads, 2.0 * macs * batch, args.repeat,
                                           args.warmup, args.budget))
                rows.append(row)
                print(f"#   batch {batch}: ours {co._fmt(row.get('ours_ms'))} ms, ORT {co._fmt(row.get('ort_ms'))} "
                      f"ms, OV {co._fmt(row.get('ov_ms'))} ms, rel err {co._fmt(row.get('max_rel_err'), '.1e')}",
                      file=sys.stderr, flush=True)
                del model, data
                gc.collect()
    print(f"`python bench/compare_keras_apps.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print(f"machine: {info}\n")
    print(co.format_table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
