"""``nets warmup [MODEL ...] [--all]``: compile the CPU kernels of networks ahead of their first use."""

from __future__ import annotations

from nets.cli.common import positive


def cmd_warmup(args) -> int:
    from kernels.cpu import cache
    from nets.tools.warmup import DEFAULT_MODELS, sharing_advice, warm
    from nets.zoo import MODELS

    names = list(MODELS) if args.all else (args.models or list(DEFAULT_MODELS))
    n0, _ = cache.cache_files()
    print(f"warming  {', '.join(names)} (threads {args.threads or 'all cores'}); "
          f"{'empty cache: this compiles every kernel they use' if n0 == 0 else f'{n0} kernels already cached'}")
    done = warm(names, threads=args.threads, progress=not args.quiet)
    n1, size = cache.cache_files()
    total = sum(dt for _, dt in done)
    print(f"done     {len(done)} networks in {total:.1f} s; {n1} compiled kernels cached "
          f"({n1 - n0} new, {size / 2**20:.0f} MiB)")
    for line in sharing_advice(cache.cache_dir()):
        print(line)
    if args.prune:
        n, freed = cache.prune()
        print(f"pruned   {n} cache folder{'s' if n != 1 else ''} of other kernels versions ({freed / 2**20:.0f} MiB)")
    else:
        stale = cache.stale_dirs()
        if stale:
            print(f"note     {len(stale)} cache folder{'s' if len(stale) != 1 else ''} of other kernels versions "
                  f"next to it take {sum(b for _, b in stale) / 2**20:.0f} MiB; `nets warmup --prune` removes them")
    return 0


def register(sub):
    p = sub.add_parser(
        "warmup", help="compile the CPU kernels networks need, ahead of their first run",
        description="Compile (and cache on disk) the CPU kernels that the given networks need, so that their "
                    "first `nets run` or Model call does not wait for compilation. Each network runs once at "
                    "batch 1 with seeded weights. Models are zoo names or model files; default: vgg16, vgg19, "
                    "resnet50, inception_v3, xception, mobilenet. On a machine with more than one core, helper "
                    "processes compile part of each network's kernels alongside (NETS_COMPILE_HELPERS sets how "
                    "many, 0 for none; one per further core by default, at most 3). Prints where the cache lives "
                    "and how to share it between machines (NUMBA_CACHE_DIR).")
    p.add_argument("models", nargs="*", metavar="MODEL", help="zoo names or model files (default: the six)")
    p.add_argument("--all", action="store_true", help="every network of the zoo")
    p.add_argument("--threads", type=positive, help="CPU threads the networks will run with (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--prune", action="store_true",
                   help="then delete the cache folders of other kernels versions next to this one (left by "
                        "upgrades; a version that shares the folder compiles again)")
    p.set_defaults(fn=cmd_warmup)
