"""frame-score: score images with a trained model, f(I; w) per image (the paper's Table 1).

    frame-score --ckpt last.ckpt --input faces/ --input natural/ --out scores.csv

Writes one CSV row ``input,path,<score>`` per image and prints n, mean and std per --input.
f(I; w) is the log-likelihood ratio log[p(I; w) / q(I)] up to a constant (eq. 8); --score
log_p adds log q(I), giving the log-likelihood up to log Z (see ``frame.scoring`` for when the
two orders differ). Images are read like the training data (resized to cover the model's
size, centre-cropped, grey for grey models); unreadable files are skipped with a warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frame.choices import SCORES
from frame.cli.common import add_ckpt, add_input, check_outputs, make_parser, positive_int, run

PROG = "frame-score"


def parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, __doc__)
    add_ckpt(p)
    add_input(p, "image file or folder to score (repeatable: one table column each)")
    p.add_argument("--out", type=Path, default=Path("scores.csv"), help="CSV to write (input,path,<score>)")
    p.add_argument("--score", choices=tuple(SCORES), default="f",
                   help="f: f(I; w), the paper's Table 1; log_p: f(I; w) + log q(I), the log-likelihood up to log Z")
    p.add_argument("--n", type=positive_int, default=None,
                   help="score at most this many random images per --input (default: all)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    return p


def score(args: argparse.Namespace) -> None:
    from frame.run.checkpoints import load_model  # after parsing: start-up time (frame.cli)
    from frame.scoring import format_table, score_folders, write_csv

    check_outputs({"--ckpt": [args.ckpt], "--input": args.input}, files=[args.out])
    model = load_model(args.ckpt, device=args.device)
    results = score_folders(model, args.input, args.batch_size, args.n, args.seed, args.score)
    out = write_csv(results, args.out, args.score, reads=[args.ckpt])
    print(format_table(results, args.score))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    return run(parser(), score, argv)


if __name__ == "__main__":
    sys.exit(main())
