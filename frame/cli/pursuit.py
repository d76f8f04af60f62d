"""frame-pursuit: grow a stationary linear FRAME model filter by filter (Section 3, filter pursuit).

    python -m frame.cli.pursuit --input ../shared/data/textures/frame_gray/grass_obs.bmp --out pursuit/
    python -m frame.cli.pursuit --input grass.bmp --out pursuit/ --filters 7 model.sampler.step_size=5

``--input`` as every ``frame-*`` command (a file or a folder, repeatable); ``--texture`` is the
same flag's older name.

Starts from no filter (the reference alone); each step adds the bank filter whose marginal histogram
is farthest from the data's under the current samples (``frame.pursuit``), then runs --iterations
of Algorithm 1 on ``model=linear_stationary`` (any further ``key=value`` is a Hydra override of
conf/train.yaml). Prints the filter chosen at each step, its gap when chosen and the gaps after
fitting (d = 1/2 L1 distance of the normalised histograms; the samples' histograms averaged over
--average sweeps of the sampler), and writes to --out:

    bank.png          every filter of the bank (the paper's Fig. 3b; --filters 0 writes only this)
    chosen.png        the chosen filters, in order
    step_NN.png       the observed texture and the samples after the NN-th filter
    pursuit.png       the samples after each step, one per column: the texture appearing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frame.cli.common import check_outputs, make_parser, run

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
PROG = "frame-pursuit"


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    p.add_argument("--input", "--texture", dest="input", type=Path, action="append", required=True, metavar="PATH",
                   help="the observed texture: an image file or a folder (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="folder for the grids")
    p.add_argument("--filters", type=int, default=7, help="filters to add (0: only write the bank grid)")
    p.add_argument("--iterations", type=int, default=100, help="learning iterations after each addition")
    p.add_argument("--average", type=int, default=10,
                   help="sampler sweeps (weights fixed) whose histograms are averaged when the gaps are measured")
    p.add_argument("--size", type=int, default=128, help="image side (data.image_size)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml, e.g. model.sampler.step_size=5")
    return p


def config(args: argparse.Namespace):
    """The composed config; ``data.root`` stays empty: the --input paths never pass through
    Hydra's override grammar nor OmegaConf (a comma, quote or ``${...}`` in a file name is a
    file name), they go to the data module as arguments)."""
    from hydra import compose, initialize_config_dir  # here and below: after parsing, for start-up time (frame.cli)

    overrides = [
        "model=linear_stationary", "data=texture", "data.embedded=null", "data.root=null",
        f"data.image_size={args.size}", "data.grayscale=true", *args.overrides,
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides)


def pursue(args: argparse.Namespace) -> None:
    # imported after the arguments are parsed, for the command's start-up time (not for a cycle)
    import logging

    import hydra
    import torch
    from omegaconf import open_dict

    from frame.grids import save_grid
    from frame.nets.filter_bank import kernel_grid
    from frame.outputs import check_finite, write_file
    from frame.progress import say
    from frame.pursuit import FilterPursuit
    from frame.run import build_model

    if args.filters < 0 or args.iterations < 1 or args.average < 1:
        raise ValueError(f"--filters must be >= 0, --iterations and --average >= 1, got {args.filters}, "
                         f"{args.iterations}, {args.average}")
    check_outputs({"--input": args.input}, folder=args.out)
    torch.manual_seed(args.seed)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # one Trainer per step: no banners
    cfg = config(args)

    def make_model(filters):
        model_cfg = cfg.model.copy()
        with open_dict(model_cfg):
            model_cfg.energy.extractor.filters = None if filters is None else list(filters)
        return build_model(model_cfg)

    datamodule = hydra.utils.instantiate(cfg.data, _partial_=True)(root=[str(path) for path in args.input])
    datamodule.setup("fit")  # a missing or unreadable texture fails here, before anything is written
    args.out.mkdir(parents=True, exist_ok=True)
    bank = make_model(None).energy.extractor
    write_file(args.out / "bank.png", lambda tmp: save_grid(kernel_grid(bank), tmp, nrow=2 * cfg.model.energy.extractor.orientations, padding=1))
    print(f"wrote {args.out / 'bank.png'} ({len(bank.names)} filters)")
    if args.filters == 0:
        return
    accelerator = "gpu" if args.device.type == "cuda" else "cpu"
    pursuit = FilterPursuit(make_model, datamodule, iterations=args.iterations, average=args.average,
                            trainer_options={"accelerator": accelerator})
    observed = datamodule.images[:1].mean(1, keepdim=True).expand(-1, 3, -1, -1)
    print(f"{'step':>4}  {'filter':<20} {'gap picked':>10} {'unused mean':>11} {'unused max':>10} "
          f"{'used mean':>9} {'minutes':>7}")

    def report(i, step):
        say(f"{i:>4}  {step.filter:<20} {step.gap_picked:>10.4f} {step.unused_mean:>11.4f} {step.unused_max:>10.4f} "
            f"{step.used_mean:>9.4f} {step.minutes:>7.2f}")
        check_finite(step.samples[:1], f"the samples after filter {i}")
        write_file(args.out / f"step_{i:02d}.png", lambda tmp: save_grid(torch.cat([observed, step.samples[:1]]), tmp))

    steps = pursuit.run(args.filters, report)
    write_file(args.out / "pursuit.png", lambda tmp: save_grid(torch.cat([s.samples[:1] for s in steps]), tmp, nrow=len(steps)))
    chosen = make_model([s.filter for s in steps]).energy.extractor
    write_file(args.out / "chosen.png", lambda tmp: save_grid(kernel_grid(chosen), tmp, nrow=len(steps), padding=1))
    print(f"wrote {args.out}/pursuit.png, chosen.png, step_01..{len(steps):02d}.png")


def main(argv: list[str] | None = None) -> int:
    return run(parser(), pursue, argv)


if __name__ == "__main__":
    sys.exit(main())
