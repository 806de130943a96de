"""``nets classify``: a model over a collection of images, rows to a CSV / JSONL / Parquet file."""

from __future__ import annotations

import argparse
import sys

from nets.cli.common import arch_options, model_args, positive

EXIT_SOME_FAILED = 3

DESCRIPTION = """\
Classify every image in files, folders and glob patterns and write one row per image (top-K labels,
class indices, probabilities, or the error that made the image unreadable) to --out, in input order,
as batches finish. Images are decoded, resized (nearest, like keras.utils.load_img) and preprocessed
on a thread pool while the model runs the previous batch. `prob` is a probability: the model's output
when it ends in a softmax, else the softmax of its logits.

Exit status: 0 when every image was classified, 3 when some could not be read, 1 on a usage error."""

EPILOG = """\
examples:
  nets classify resnet50 photos/ --weights resnet50_weights_tf_dim_ordering_tf_kernels.h5 --out r.csv
  nets classify mobilenet 'photos/**/*.jpg' --recursive --out r.jsonl --batch 16 --threads 2
  nets classify resnet50 photos/ --out r.csv --resume          # after an interrupted run
  nets classify resnet50 /shared/photos --out r.parquet --scheduler tcp://10.0.0.5:8786

On Dask (--workers / --scheduler) every worker must be able to read the image, model and weights
paths (a shared filesystem), and have kernelnets installed; see docs/classify.md."""


def cmd_classify(args) -> int:
    from nets.tools.classify import ClassifyRun
    from nets.tools.progress import Progress

    options = arch_options(args)
    weights = options.pop("weights")
    if not options["include_top"]:
        options.pop("pooling")
    options = {k: v for k, v in options.items() if v is not None}
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    run = ClassifyRun(args.model, args.inputs, batch=args.batch, topk=args.topk, out=args.out,
                      cluster=args.scheduler, workers=args.workers, weights=weights, threads=args.threads,
                      device=args.device, recursive=args.recursive, resume=args.resume, overwrite=args.overwrite,
                      draft=args.draft, preprocess=args.preprocess, labels=args.labels,
                      decode_threads=args.decode_threads, model_options=options)
    where = (f"Dask scheduler {args.scheduler}" if args.scheduler else
             f"LocalCluster of {args.workers} workers x 1 thread" if args.workers else
             f"{run.classifier.model.device}, {run.classifier.model.threads or '-'} threads")
    name = run.classifier.model.name if run.classifier else args.model
    say(f"classify {name}: {run.total} images, batch {run.batch}, top-{run.topk}, {where} -> {args.out}")
    if run.skipped:
        say(f"resume   {run.skipped} images already in {args.out}, {len(run.todo)} to go")
    if (run.classifier and run.classifier.seeded) or (not run.classifier and not weights and
                                                       run.recipe.model.lower() in _zoo_names()):
        say("note     weights are untrained (seeded): the classes are meaningless; pass --weights FILE")
    if args.draft:
        say("note     --draft: JPEGs decoded at reduced size, pixel values differ from keras.utils.load_img")

    bar = Progress(len(run.todo), "classify", enabled=not args.quiet, unit="images")
    bad = []
    try:
        for rows in run.batches():
            bar.update(n=len(rows))
            if bar.n == len(rows):
                bar.start_rate()        # the first batch compiled the kernels: not part of the rate
            bad.extend(r["error"] for r in rows if r["error"] and len(bad) < 3)
    finally:
        bar.close()
    failed = run.failed + run.skipped_failed
    if failed and not args.quiet:
        for error in bad:
            print(f"failed   {error}", file=sys.stderr)
        if failed > len(bad):
            print(f"failed   ... {failed - len(bad)} more: the rows with an error in {args.out}", file=sys.stderr)
    earlier = f" (+{run.skipped} from an earlier run)" if run.skipped else ""
    print(f"done     {run.images} images{earlier}, {failed} failed, {run.seconds:.1f} s, "
          f"{run.rate:.1f} images/s ({run.steady_rate:.1f} after the first batch) -> {args.out}", flush=True)
    return EXIT_SOME_FAILED if failed else 0


def _zoo_names():
    from nets import zoo

    return set(zoo.MODELS)


def register(sub):
    c = sub.add_parser("classify", help="classify a collection of images into a CSV / JSONL / Parquet file "
                                        "(one machine or a Dask cluster)",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    model_args(c)
    c.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (their image files) and glob patterns (quote them)")
    c.add_argument("--out", required=True, metavar="FILE",
                   help="results file: .csv, .jsonl or .parquet (Parquet needs pyarrow)")
    c.add_argument("--batch", type=positive, default=8, help="images per model call (default 8; the last batch is "
                                                             "padded to it, so no other arena is planned)")
    c.add_argument("--topk", type=positive, default=5, help="classes per image (default 5)")
    c.add_argument("--threads", type=positive,
                   help="Numba threads of the model (default: all cores; on Dask: each worker's share of its host)")
    c.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="cpu (default) or gpu")
    c.add_argument("--recursive", action="store_true", help="read the subfolders of folders too; ** in patterns")
    c.add_argument("--resume", action="store_true", help="continue --out: skip the images it already has a row for")
    c.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    dask = c.add_mutually_exclusive_group()
    dask.add_argument("--workers", type=positive, metavar="N",
                      help="run on a Dask LocalCluster of N worker processes x 1 thread (needs kernelnets[dask])")
    dask.add_argument("--scheduler", metavar="ADDRESS",
                      help="run on the Dask cluster at ADDRESS, e.g. tcp://10.0.0.5:8786; the workers must read "
                           "the same paths")
    c.add_argument("--decode-threads", type=positive, metavar="N",
                   help="threads decoding images ahead of the model (default: min(4, cores); 2 per Dask thread)")
    c.add_argument("--draft", action="store_true",
                   help="let Pillow decode JPEGs at 1/2, 1/4 or 1/8 size when the model input is that much "
                        "smaller: faster on large photos, but the pixels (and so the scores) differ from "
                        "keras.utils.load_img; off by default")
    c.add_argument("--preprocess", choices=["caffe", "tf", "torch", "none"],
                   help="preprocessing (default: the architecture's; 'none' for a model file that has none)")
    c.add_argument("--labels", metavar="FILE", help="class names, one per line (default: ImageNet's for 1000 "
                                                    "classes, else class_<i>)")
    c.add_argument("--quiet", action="store_true", help="no progress bar or notes; only the final line")
    c.set_defaults(fn=cmd_classify)
