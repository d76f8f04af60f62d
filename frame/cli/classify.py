"""frame-classify: the posterior of each category for each image, from one top-layer model per category.

    frame-classify --model face=face.ckpt --model natural=natural.ckpt --input photos/ --out posteriors.csv
    frame-classify ... --prior face=1 --prior natural=9      # prior frequencies (default: uniform)

Each checkpoint is a top-layer FRAME model (eq. 24, ``model=top_layer``) of one category, all on the
same filters, image size and reference q. The posterior p(c | I) comes from the Bayes rule on the
models' likelihoods p(I | c) = exp(w_c . F(I)) q(I) / Z(w_c), with log Z(w_c) estimated by annealed
importance sampling from q to p (``frame.partition``: q is Gaussian white noise, sampled exactly, and
the estimate of Z is unbiased for any number of temperatures; the transitions are Metropolis-adjusted
Langevin steps, eq. 16). The estimate's error grows with how far p is from q: the printed standard
error and effective number of chains (ESS) say whether to raise --ais-temperatures. The same classifier is then written as the soft-max of eq. (4) over the
logits w_c . F(I) + log prior_c - log Z(w_c), and the two are checked to agree. --log-z NAME=VALUE
takes a known log Z(w_c) instead of estimating it (e.g. from an earlier run's printout).

Writes one CSV row ``input,path,predicted,p_<c>...,logit_<c>...`` per image; prints log Z(w_c) with
its standard error over the AIS chains, and the predicted categories per --input.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from frame.cli.common import add_input, check_outputs, make_parser, positive_float, positive_int, run

if TYPE_CHECKING:
    import torch

    from frame.partition import LogZEstimate

PROG = "frame-classify"
#: a category name: it becomes CSV column names
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
#: the Bayes posterior and the soft-max of the logits must agree to this (float64)
AGREEMENT = 1e-9


def named(kind: type) -> type:
    """argparse type for NAME=VALUE with VALUE of `kind` (Path, float)."""

    def parse(text: str) -> tuple[str, object]:
        name, sep, value = text.partition("=")
        if not sep or not NAME.match(name) or not value:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME of letters, digits, _ . -, got {text!r}")
        try:
            return name, kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None

    parse.__name__ = "NAME=" + kind.__name__.upper()
    return parse


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    p.add_argument("--model", type=named(Path), action="append", required=True, metavar="NAME=CKPT",
                   help="a category and its top-layer model's checkpoint (repeat for every category)")
    p.add_argument("--prior", type=named(float), action="append", default=None, metavar="NAME=P",
                   help="prior frequency of a category (all or none; normalised; default: uniform)")
    p.add_argument("--log-z", type=named(float), action="append", default=None, metavar="NAME=VALUE",
                   help="a known log Z(w_c): skips its estimation")
    add_input(p, "image file or folder to classify (repeatable)")
    p.add_argument("--out", type=Path, default=Path("posteriors.csv"), help="CSV to write (one row per image)")
    p.add_argument("--ais-temperatures", type=positive_int, default=200, help="AIS temperatures from q to p")
    p.add_argument("--ais-chains", type=positive_int, default=16, help="AIS chains per category")
    p.add_argument("--ais-steps", type=positive_int, default=1, help="Langevin steps per temperature")
    p.add_argument("--ais-step-size", type=positive_float, default=None, help="delta of the AIS steps (default: the model's)")
    p.add_argument("--ais-unadjusted", action="store_true",
                   help="keep every Langevin step (no Metropolis-Hastings test): the chains move at any step size, "
                        "at the price of a bias in log Z (see frame.partition)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    return p


def unique(pairs: list[tuple[str, object]], flag: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"{flag} {name}=... is given twice")
        out[name] = value
    return out


def classify(args: argparse.Namespace) -> None:
    # after parsing: start-up time (frame.cli)
    import torch

    from frame.classify import bayes_posterior, check_category_models, log_likelihoods, logits, model_log_z, normalised_priors, top_layer_features
    from frame.run.checkpoints import load_model
    from frame.scoring import load_folder
    from frame.synthesis import canvas_side

    if args.out.is_dir():
        raise IsADirectoryError(f"--out {args.out} is a folder: give the CSV file to write")
    ckpts: dict[str, Path] = unique(args.model, "--model")
    if len(ckpts) < 2:
        raise ValueError(f"the Bayes classifier needs models of at least two categories, got {len(ckpts)}: give --model NAME=CKPT per category")
    known = unique(args.log_z or [], "--log-z")
    for name in known:
        if name not in ckpts:
            raise ValueError(f"--log-z {name}=...: {name!r} is not a --model category ({', '.join(ckpts)})")
    check_outputs({"--model": list(ckpts.values()), "--input": args.input}, files=[args.out])
    names = list(ckpts)
    priors = normalised_priors(names, unique(args.prior or [], "--prior"))
    models = {name: load_model(path, device=args.device) for name, path in ckpts.items()}
    check_category_models(models, {name: f"--model {name}={path}" for name, path in ckpts.items()})
    estimates: dict[str, LogZEstimate | None] = {}
    for i, (name, model) in enumerate(models.items()):
        if name in known:
            estimates[name] = None
            continue
        generator = torch.Generator(device=args.device).manual_seed(args.seed + i)
        estimates[name] = model_log_z(model, args.ais_chains, args.ais_temperatures, args.ais_steps, generator,
                                      step_size=args.ais_step_size, metropolis=not args.ais_unadjusted)
        if args.ais_chains > 1 and estimates[name].ess < 2:
            warnings.warn(f"log Z({name}): one AIS chain carries all the weight (ESS {estimates[name].ess:.1f} of {args.ais_chains}), "
                          "so its stderr says nothing: raise --ais-temperatures, or compare runs with other --seed values")
    log_z = torch.tensor([known[n] if estimates[n] is None else estimates[n].log_z for n in names], dtype=torch.float64)
    print(log_z_table(names, log_z, estimates))
    first = models[names[0]]
    rows, worst = [], 0.0
    for folder in args.input:
        paths, images = load_folder(folder, canvas_side(first), first.input_space.channels == 1)
        x, feats = top_layer_features(first, images, args.batch_size)
        posterior = bayes_posterior(log_likelihoods(models, x, feats, log_z), priors).cpu()
        scores = logits(models, feats, priors, log_z).cpu()
        worst = max(worst, float((posterior - torch.softmax(scores, 1)).abs().max()) if len(paths) else 0.0)
        predicted = posterior.argmax(1).tolist()
        counts = ", ".join(f"{n} {predicted.count(c)}" for c, n in enumerate(names))
        print(f"{folder}: {len(paths)} images; predicted: {counts}")
        rows += [[str(folder), path, names[k], *(f"{p:.9g}" for p in post), *(f"{s:.9g}" for s in score)]
                 for path, k, post, score in zip(paths, predicted, posterior.tolist(), scores.tolist())]
    if worst > AGREEMENT:
        raise RuntimeError(f"the Bayes posterior and the soft-max of the logits differ by {worst:.3g}")
    print(f"max |Bayes posterior - softmax(w_c . F(I) + log prior_c - log Z(w_c))| = {worst:.2g}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", "path", "predicted", *(f"p_{n}" for n in names), *(f"logit_{n}" for n in names)])
        writer.writerows(rows)
    print(f"wrote {args.out}")


def log_z_table(names: list[str], log_z: torch.Tensor, estimates: dict[str, LogZEstimate | None]) -> str:
    lines = [f"{'category':<16}{'log Z(w_c)':>16}{'stderr':>10}{'ESS':>8}{'accept':>8}"]
    for name, value in zip(names, log_z.tolist()):
        e = estimates[name]
        tail = "      (given)" if e is None else f"{e.stderr:>10.3g}{e.ess:>8.1f}{e.acceptance:>8.2f}"
        lines.append(f"{name:<16}{value:>16.6g}{tail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run(parser(), classify, argv)


if __name__ == "__main__":
    sys.exit(main())
