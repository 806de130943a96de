"""Every CNN of keras.applications that Keras builds on the torch backend, through kernelnets: built with
``weights=None`` at its default input size, weights and statistics randomised (tests/keras_utils.py),
saved with ``model.save("m.keras")``, loaded with ``nets.load``; the logits compared with Keras' forward
pass and both timed at batch 1 on the same number of threads. Then the same model as Keras exports it
to ONNX (``model.export(path, format="onnx")``, dynamic batch; ConvNeXt with a fixed batch, see
FIXED_BATCH) is loaded and compared too. Writes docs/keras_applications.md.

    python tools/keras_coverage.py                          # the whole list (an hour or more on 2 cores)
    python tools/keras_coverage.py --only ConvNeXtTiny EfficientNetB0 --doc /tmp/some.md
    python tools/keras_coverage.py --render                 # the page again from the saved results

Each model runs in a child process of its own (memory is returned between models; a crash or a
timeout is a row, not the end of the run); its result is a JSON file in ``--results`` (kept, so a
run that was stopped resumes where it was; ``--force`` redoes them).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "torch")

FAMILIES = {
    "DenseNet": ["DenseNet121", "DenseNet169", "DenseNet201"],
    "EfficientNet": [f"EfficientNetB{i}" for i in range(8)],
    "EfficientNetV2": ["EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3",
                       "EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L"],
    "MobileNet": ["MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large"],
    "ConvNeXt": ["ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge"],
    "Inception": ["InceptionV3", "InceptionResNetV2", "Xception"],
    "ResNet": ["ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2"],
    "VGG": ["VGG16", "VGG19"],
}
MODELS = [m for family in FAMILIES.values() for m in family]
# models that take raw [0, 255] pixels (Rescaling / Normalization inside); the others get [-1, 1]
RAW_PIXELS = ("EfficientNet", "ConvNeXt", "MobileNetV3")
DEFAULT_SIZE = 224          # for models whose default input size is open (MobileNetV3: (None, None, 3))
# Keras' dynamic-batch ONNX export of LayerNormalization fails inside torch.onnx (a SymbolicValueError on
# the Gather of the input shape): ConvNeXt is exported with a fixed batch, as a user must
FIXED_BATCH = ("ConvNeXt",)
TOLERANCE = 1e-4


def median_ms(fn, repeat, budget_s):
    """Median of up to ``repeat`` timed calls (fewer when they would pass ``budget_s``), in ms."""
    times = []
    start = time.perf_counter()
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return sorted(times)[len(times) // 2]


def keras_side(name, threads, repeat, workdir):
    """Build, randomise, run, time and save the Keras model: (row, input, Keras' logits, saved path)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import numpy as np
    import torch
    from keras_utils import keras, keras_forward, randomize_keras_model

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    build = getattr(keras.applications, name)
    kmodel = build(weights=None, classifier_activation=None)
    if any(d is None for d in kmodel.input_shape[1:3]):
        kmodel = build(weights=None, classifier_activation=None, input_shape=(DEFAULT_SIZE, DEFAULT_SIZE, 3))
    h, w, c = kmodel.input_shape[1:]
    row = {"model": name, "params": int(kmodel.count_params()), "input": f"{h}x{w}x{c}"}
    lo, hi = (0.0, 255.0) if name.startswith(RAW_PIXELS) else (-1.0, 1.0)
    x = np.random.default_rng(0).uniform(lo, hi, (1, h, w, c)).astype(np.float32)
    randomize_keras_model(kmodel, seed=7, calib_input=x)
    want = keras_forward(kmodel, x)
    row["keras_ms"] = median_ms(lambda: keras_forward(kmodel, x), repeat, 60)
    path = pathlib.Path(workdir) / f"{name}.keras"
    kmodel.save(path)
    row["keras_build_s"] = time.perf_counter() - t0
    return row, x, want, path, kmodel


def onnx_side(name, kmodel, x, want, threads, device, workdir) -> dict:
    """Keras' own ONNX export of the same model, loaded by us: {onnx_status, onnx_max_rel_err, ...}."""
    import numpy as np
    from keras_utils import keras_onnx_export

    import nets

    path = pathlib.Path(workdir) / f"{name}.onnx"
    fixed = name.startswith(FIXED_BATCH)
    out = {"onnx_batch": "fixed" if fixed else "dynamic"}
    try:
        t = time.perf_counter()
        try:
            try:
                keras_onnx_export(kmodel, x, path, fixed)
            except Exception as e:      # Keras' dynamic-batch export fails on some graphs: a user pins the batch
                if fixed:
                    raise
                out.update(onnx_batch="fixed", onnx_note=f"Keras' dynamic-batch export failed "
                                                         f"({type(e).__name__}); exported with a fixed batch")
                keras_onnx_export(kmodel, x, path, True)
        except Exception as e:          # Keras' exporter, not ours: recorded as such
            out.update(onnx_status="export failed", onnx_error=f"Keras export: {type(e).__name__}: {str(e)[:300]}")
            return out
        out["onnx_export_s"] = time.perf_counter() - t
        try:
            ours = nets.load(str(path), device=device, **({"threads": threads} if device == "cpu" else {}))
            got = ours(x)
        except nets.errors.KernelnetsError as e:
            out.update(onnx_status="refused", onnx_error=f"{type(e).__name__}: {e}")
            return out
        err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        out.update(onnx_max_rel_err=err, onnx_status="match" if err <= TOLERANCE else "mismatch")
        return out
    finally:
        for f in path.parent.glob(f"{name}.onnx*"):     # the file and any external-data file next to it
            f.unlink(missing_ok=True)


def keras_file_side(path, x, want, threads, repeat, device) -> dict:
    """Ours on the saved .keras file: {status, max_rel_err, load_s, first_run_s, ours_ms, ...}."""
    import numpy as np

    import nets

    out = {}
    try:
        t = time.perf_counter()
        ours = nets.load(str(path), device=device, **({"threads": threads} if device == "cpu" else {}))
        out["load_s"] = time.perf_counter() - t
        t = time.perf_counter()
        got = ours(x)
        out["first_run_s"] = time.perf_counter() - t
    except nets.errors.KernelnetsError as e:
        return dict(out, status="refused", error=f"{type(e).__name__}: {e}")
    finally:
        path.unlink(missing_ok=True)
    out["our_params"] = int(ours.source_graph.num_params())
    out["max_rel_err"] = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    out["ours_ms"] = median_ms(lambda: ours(x), repeat, 60)
    out["status"] = "match" if out["max_rel_err"] <= TOLERANCE else "mismatch"
    return out


def run_one(name, threads, repeat, device, workdir) -> dict:
    """One model (in this process): the Keras side, then ours on the saved file and on Keras' ONNX export."""
    row, x, want, path, kmodel = keras_side(name, threads, repeat, workdir)
    row["commit"] = _commit()
    row.update(keras_file_side(path, x, want, threads, repeat, device))
    row.update(onnx_side(name, kmodel, x, want, threads, device, workdir))
    return row


# ----------------------------------------------------------------------------- the page

def _fmt_params(n):
    return f"{n / 1e6:.1f} M" if n else ""


def render(rows, meta) -> str:
    ok = [r for r in rows if r.get("status") == "match"]
    onnx_ok = [r for r in rows if r.get("onnx_status") == "match"]
    lines = [
        "# keras.applications through kernelnets",
        "",
        "Generated by `tools/keras_coverage.py`; the runs that made its rows, then the command that wrote it:",
        "",
        "```",
        *meta["runs"],
        *([meta["command"]] if meta["render_only"] else []),       # a run's own command is its last line
        "```",
        "",
        f"Each model is built by Keras {meta['keras']} (torch {meta['torch']} backend) with `weights=None` at its "
        f"default input size ({DEFAULT_SIZE}x{DEFAULT_SIZE} where it has none), every kernel, BatchNorm and "
        "Normalization statistic and LayerScale gamma randomised (tests/keras_utils.py), saved with "
        "`model.save(\"m.keras\")` and loaded with `nets.load(path)`. *max rel err*: "
        "max|ours - Keras| / max|Keras| of the logits (pass: <= 1e-4). *ONNX*: the same model exported by "
        "Keras (`model.export(path, format=\"onnx\")`, dynamic batch; ConvNeXt with a fixed batch because "
        "Keras' dynamic-batch export of LayerNormalization fails), loaded with `nets.load` and compared "
        "the same way. Times: median at batch 1 on "
        f"{meta['threads']} thread{'s' if meta['threads'] != 1 else ''} "
        "(`torch.set_num_threads` for Keras' forward pass, `threads=` for ours), "
        "*first run*: our first call (compiling kernels not yet in the Numba cache).",
        "",
        f"Machine: {meta['machine']}; page written {meta['date']} at commit {meta['commit']}"
        + ("." if meta["render_only"] else f"; load average {meta['load_before']} before, {meta['load_after']} after.")
        + (f" {meta['remark']}" if meta["remark"] else ""),
        "",
        f"**{len(ok)} of {len(rows)} models load from .keras and match Keras; {len(onnx_ok)} of {len(rows)} "
        "from Keras' ONNX export.**",
        "",
        "| model | params | input | .keras | max rel err | ONNX | max rel err | Keras ms | ours ms | ours/Keras "
        "| first run s |",
        "|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        err = f"{r['max_rel_err']:.1e}" if "max_rel_err" in r else ""
        ratio = f"{r['ours_ms'] / r['keras_ms']:.2f}" if r.get("ours_ms") and r.get("keras_ms") else ""
        keras_ms = f"{r['keras_ms']:.1f}" if r.get("keras_ms") else ""
        ours_ms = f"{r['ours_ms']:.1f}" if r.get("ours_ms") else ""
        first = f"{r['first_run_s']:.1f}" if r.get("first_run_s") else ""
        status = r.get("status", "?")
        if r.get("commit") and r["commit"] != meta["commit"]:
            status += f" (commit {r['commit']})"
        if r.get("our_params") not in (None, r.get("params")):
            status += f" (params {r['our_params']:,} vs Keras {r['params']:,})"
        onnx = r.get("onnx_status", "")
        if onnx and r.get("onnx_batch") == "fixed":
            onnx += " (fixed batch)"
        onnx_err = f"{r['onnx_max_rel_err']:.1e}" if "onnx_max_rel_err" in r else ""
        lines.append(f"| {r['model']} | {_fmt_params(r.get('params'))} | {r.get('input', '')} | {status} | {err} "
                     f"| {onnx} | {onnx_err} | {keras_ms} | {ours_ms} | {ratio} | {first} |")
    notes = [(r["model"], ".keras", r["error"]) for r in rows if r.get("error")]
    notes += [(r["model"], "ONNX", r["onnx_error"]) for r in rows if r.get("onnx_error")]
    if notes:
        lines += ["", "## Not loaded", ""] + [f"- **{m}** ({kind}): {e[:600]}" for m, kind, e in notes]
    fixed = [(r["model"], r["onnx_note"]) for r in rows if r.get("onnx_note")]
    if fixed:
        lines += ["", "## Exported with a fixed batch", ""] + [f"- **{m}**: {note}" for m, note in fixed]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return out.strip() + ("+changes" if dirty else "")


def _meta(args, load_before):
    import keras
    import torch

    from nets.tools.peaks import cpu_name

    cpu = cpu_name()
    runs = pathlib.Path(args.results) / "runs.txt"
    return {"command": "python tools/keras_coverage.py " + " ".join(args.argv),
            "runs": runs.read_text().splitlines() if runs.exists() else [], "render_only": bool(args.render),
            "remark": args.remark, "keras": keras.__version__,
            "torch": torch.__version__, "threads": args.threads, "machine": f"{cpu}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"), "commit": _commit(), "load_before": load_before,
            "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg())}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=MODELS, metavar="MODEL", help="these models only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10, help="timed calls per model (fewer past 60 s)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "reference"])
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per model")
    ap.add_argument("--results", default=os.path.join(tempfile.gettempdir(), "kernelnets-keras-coverage"),
                    help="folder of the per-model JSON results (and the .keras file of the model being run)")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "keras_applications.md"))
    ap.add_argument("--force", action="store_true", help="redo models that already have a result")
    ap.add_argument("--render", action="store_true", help="only write the page from the saved results")
    ap.add_argument("--remark", default="", help="a sentence for the page's machine line (how the runs went)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = argv
    results = pathlib.Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    if args.one:                                 # the child: one model, its row as JSON
        row = run_one(args.one, args.threads, args.repeat, args.device, results)
        (results / f"{args.one}.json").write_text(json.dumps(row, indent=1))
        return 0
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    names = args.only or MODELS
    if not args.render:                          # the page lists every run that made its rows
        with open(results / "runs.txt", "a") as f:
            f.write(f"python tools/keras_coverage.py {' '.join(argv)}   # {time.strftime('%Y-%m-%d %H:%M')}, "
                    f"commit {_commit()}\n")
    for name in ([] if args.render else names):
        out = results / f"{name}.json"
        if out.exists() and not args.force:
            continue
        t = time.perf_counter()
        cmd = [sys.executable, __file__, "--one", name, "--threads", str(args.threads), "--repeat",
               str(args.repeat), "--device", args.device, "--results", str(results)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            if proc.returncode != 0 or not out.exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                out.write_text(json.dumps({"model": name, "status": "crashed", "error": " | ".join(tail)}))
        except subprocess.TimeoutExpired:
            out.write_text(json.dumps({"model": name, "status": "timeout", "error": f"over {args.timeout} s"}))
        row = json.loads(out.read_text())
        print(f"{name:20s} {row.get('status'):9s} err {row.get('max_rel_err', float('nan')):.1e}  "
              f"{time.perf_counter() - t:6.0f} s", flush=True)
    rows = [json.loads((results / f"{n}.json").read_text()) for n in names if (results / f"{n}.json").exists()]
    pathlib.Path(args.doc).write_text(render(rows, _meta(args, load_before)))
    print(f"wrote {args.doc} ({len(rows)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
