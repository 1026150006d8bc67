"""``probe prior train --background SOURCE [--background-option K=V] --out DIR [...]`` (see probe.train.prior)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, common) -> None:
    """The ``prior`` sub-command (called by :func:`probe.cli.build_parser`)."""
    p = sub.add_parser("prior", help="train a content prior (VQ autoencoder) on clean images")
    common(p)
    psub = p.add_subparsers(dest="prior_command", metavar="ACTION")
    t = psub.add_parser("train", help="train a VQ prior on a background source (clean images only)")
    common(t)
    t.add_argument("--background", default="natural", help="background source (see `probe list`)")
    t.add_argument("--background-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the background source, e.g. root=/data/div2k")
    t.add_argument("--out", required=True, help="output folder (prior.safetensors + prior.json)")
    t.add_argument("--n-images", type=int, default=256, help="distinct training images")
    t.add_argument("--patch", type=int, default=32, help="crop side in pixels")
    t.add_argument("--iterations", type=int, default=400)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--size", default="tiny", help="tiny, small or paper")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--force", action="store_true", help="retrain over a prior of another recipe")
    t.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    from probe.progress import is_quiet
    from probe.train.config import parse_override
    from probe.train.prior import train_prior

    options = dict(parse_override(item) for item in args.background_option)
    info = train_prior(args.background, args.out, background_options=options, n_images=args.n_images,
                       patch=args.patch, iterations=args.iterations, batch=args.batch, lr=args.lr,
                       size=args.size, seed=args.seed, device=args.device, force=args.force)
    if not is_quiet():
        m = info["metrics"]
        print(f"prior {args.out}: test PSNR {m['psnr_test']:.2f} dB, codebook usage {m['codebook_usage']:.2f}, "
              f"perplexity {m['perplexity']:.1f} ({m.get('wall_time_s', 0):.0f} s)")
    return 0
