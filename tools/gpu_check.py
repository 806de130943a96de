"""The first-device-run check of the CUDA backend, as ONE command with a time budget:

    python tools/gpu_check.py RESULTS_DIR [--budget-s 330]

writes into RESULTS_DIR (created):
    env.txt                       nvidia-smi, driver, CUDA, CuPy, torch, the commit
    tests.log, tests.xml          python -m pytest -m "gpu and not slow": kernels on the device, the
                                  toy graph through the runtime (eager, CUDA graph)
    network_tests.log/.xml        python -m pytest -m "gpu and slow": the six networks against the CPU
                                  backend (and Keras where it is installed); run last
    accuracy.txt                  bench/gpu_accuracy.py: fp32 and TF32 conv2d errors on the device
    compare_<net>.txt/.json/.png  nets compare <net> (CPU vs GPU per layer: times, speed-up, agreement)
                                  for resnet50 and mobilenet
    bench_torch_gpu.txt           bench/compare_torch_gpu.py: ours vs PyTorch (cuDNN fp32, TF32 off),
                                  eager and CUDA graph, batch 1 and 32, the six networks
    summary.txt, summary.json     each step: status, seconds, exit code, the command

Every step runs in its own process with its own cap, inside the overall budget (default 345 s, under
the 6 minutes a device session may give it); a step that hits its cap is killed and reported as
``timeout`` with whatever output it had written. Where no CUDA device is usable the GPU steps report
``no device`` with the reason (also in NO_DEVICE.txt), the test selection still runs (every GPU test
skips, showing the selection works), each other command's ``--help`` must list every option the check
passes, and the command exits 0: the check itself ran end to end. With a device, the exit status is 1
when any step failed or timed out.

Only the ``nets`` command line is used (the runtime's modules are being reorganised). To skip the CPU
kernels' Numba compilation on a fresh machine, bring kernels/cpu/__pycache__ along.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPARE_NETS = ("resnet50", "mobilenet")
# seconds per step at most (each also gets no more than what is left of the budget)
CAPS = {"tests": 90, "accuracy": 20, "compare_resnet50": 60, "compare_mobilenet": 40, "bench_torch_gpu": 120,
        "network_tests": 150}


def device_problem() -> str | None:
    sys.path.insert(0, ROOT)
    from kernels.gpu import unavailable_reason

    return unavailable_reason()


def run_step(name, cmd, log_path, cap, deadline, steps, env):
    """Run ``cmd`` with its output in ``log_path``; record the outcome in ``steps``."""
    left = deadline - time.monotonic()
    timeout = max(1.0, min(cap, left))
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, timeout=timeout)
            rc, status = proc.returncode, "ok" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            rc, status = None, "timeout"
            log.write(f"\n[gpu_check] killed after {timeout:.0f} s (cap {cap} s, budget left {left:.0f} s)\n")
    steps.append(dict(step=name, status=status, seconds=round(time.monotonic() - t0, 1), returncode=rc,
                      command=" ".join(cmd), output=os.path.basename(log_path)))


def preflight(cmd, env) -> str:
    """Without a device: the command's --help runs and lists every option the check passes."""
    options = [i for i, a in enumerate(cmd) if a.startswith("--")]
    proc = subprocess.run(cmd[:options[0] if options else len(cmd)] + ["--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    missing = [a for a in cmd if a.startswith("--") and a not in proc.stdout]
    if proc.returncode or missing:
        return f"command check FAILED (exit {proc.returncode}, options not in --help: {missing})\n{proc.stderr[-2000:]}"
    return "command checked: --help lists every option used"


def write_env(out, problem):
    lines = [f"date      {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", f"python    {sys.version.split()[0]}"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True)
    lines.append(f"commit    {commit.stdout.strip() or '?'}{' (with local changes)' if dirty.stdout.strip() else ''}")
    for mod in ("numpy", "numba", "cupy", "torch"):
        probe = subprocess.run([sys.executable, "-c", f"import {mod}; print({mod}.__version__)"],
                               capture_output=True, text=True, timeout=60)
        lines.append(f"{mod:<9} {probe.stdout.strip() or 'not importable'}")
    lines.append(f"device    {'none: ' + problem if problem else 'usable'}")
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv"],
                           capture_output=True, text=True, timeout=30)
        lines += ["", q.stdout.strip() or q.stderr.strip()]
    with open(os.path.join(out, "env.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="folder for every output (created)")
    p.add_argument("--budget-s", type=float, default=345.0, help="overall time budget in seconds (default 345)")
    p.add_argument("--bench-repeat", type=int, default=20, help="timed runs per bench cell (default 20)")
    args = p.parse_args(argv)

    out = os.path.abspath(args.results)
    os.makedirs(out, exist_ok=True)
    start = time.monotonic()
    deadline = start + args.budget_s
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    py = sys.executable
    problem = device_problem()
    write_env(out, problem)
    steps: list[dict] = []

    def gpu_tests(name, marks):
        """pytest -m gpu in two parts: kernels and toy graphs first, the six networks last (they take
        longest and get what the budget leaves). Without a device every test skips with the reason,
        which still checks the selection."""
        run_step(name, [py, "-m", "pytest", "-m", marks, "-q", "-rs", "-p", "no:cacheprovider",
                        f"--junitxml={os.path.join(out, name + '.xml')}"],
                 os.path.join(out, name + ".log"), CAPS[name], deadline, steps, env)
        if problem and steps[-1]["status"] == "ok":
            steps[-1]["status"] = "ok, all skipped (no device)"

    gpu_tests("tests", "gpu and not slow")

    gpu_steps = [("accuracy", [py, os.path.join("bench", "gpu_accuracy.py")], os.path.join(out, "accuracy.txt"))]
    gpu_steps += [(f"compare_{net}", [py, "-m", "nets", "compare", net, "--repeat", "10",
                                     "--plot", os.path.join(out, f"compare_{net}.png"),
                                     "--json", os.path.join(out, f"compare_{net}.json")],
                  os.path.join(out, f"compare_{net}.txt")) for net in COMPARE_NETS]
    gpu_steps.append(("bench_torch_gpu", [py, os.path.join("bench", "compare_torch_gpu.py"),
                                          "--batch", "1", "32", "--repeat", str(args.bench_repeat)],
                      os.path.join(out, "bench_torch_gpu.txt")))
    for name, cmd, log in gpu_steps:
        if problem:
            checked = preflight(cmd, env)
            with open(log, "w") as f:
                f.write(f"$ {' '.join(cmd)}\nnot run: no device: {problem}\n{checked}\n")
            status = "no device" if checked.startswith("command checked") else "no device, bad command"
            steps.append(dict(step=name, status=status, seconds=0.0, returncode=None, command=" ".join(cmd),
                              output=os.path.basename(log)))
        else:
            run_step(name, cmd, log, CAPS[name], deadline, steps, env)

    gpu_tests("network_tests", "gpu and slow")

    total = round(time.monotonic() - start, 1)
    header = (f"gpu_check: {'NO DEVICE: ' + problem if problem else 'device usable'}; "
              f"{total} s of a {args.budget_s:.0f} s budget; results in {out}")
    table = [header, ""] + [f"{s['step']:<18} {s['status']:<28} {s['seconds']:>7.1f} s   {s['output']}" for s in steps]
    text = "\n".join(table) + "\n"
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(dict(device_problem=problem, seconds=total, budget_s=args.budget_s, steps=steps), f, indent=1)
    if problem:
        with open(os.path.join(out, "NO_DEVICE.txt"), "w") as f:
            f.write(f"no device: {problem}\nThe GPU steps did not run; nothing here was measured on a GPU.\n")
    print(text, end="")
    if problem:
        return 0 if not any("bad command" in s["status"] for s in steps) else 1
    return 0 if all(s["status"] == "ok" for s in steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
