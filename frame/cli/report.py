"""frame-report: a training run as one self-contained HTML page (or one page comparing runs).

    frame-report outputs/train/runs/<run>                         # writes <run>/report.html
    frame-report <run1> <run2> --out compare.html                 # one page, the runs' curves overlaid

The page opens with the headline: the last sample grid (training images left of the chains)
and the quality table, every metric between its floor (real images) and its ceiling (noise),
from frame-eval's JSON in the run folder or the eval/* values the run logged. Then the curves
(gap_rel per layer, the energies, the eval/* metrics over the steps), the sample grids over
time, the detector maps of models with learned filters, and last the config, folded
(frame.report). Plots and images are embedded as PNG: the file opens offline and travels alone.

Without --out each run gets its own <run>/report.html; with --out all the runs given go
into that one file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frame.cli.common import HelpFormatter, Parser, check_outputs, positive_int, run

PROG = "frame-report"


def parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__.strip(), formatter_class=HelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="a run folder written by train.py")
    p.add_argument("--out", type=Path, default=None, help="one HTML file for every run given (default: <run>/report.html each)")
    p.add_argument("--max-images", type=positive_int, default=8, help="sample grids shown over time, per run")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def report(args: argparse.Namespace) -> None:
    from frame.report import write_report  # after parsing: start-up time (frame.cli)
    from frame.runs import is_run

    for folder in args.runs:
        if not folder.exists():
            raise FileNotFoundError(2, "no such folder", str(folder))
        if not is_run(folder):
            raise ValueError(f"{folder} is not a run folder of train.py (no .hydra/config.yaml nor csv/metrics.csv)")
    pages = [(args.runs, args.out)] if args.out is not None else [([folder], folder / "report.html") for folder in args.runs]
    if args.out is not None and args.out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {args.out}: the report is an HTML file; give a path ending in .html")
    for runs, out in pages:
        check_outputs({"RUN_DIR": runs}, files=[out])
        write_report(runs, out, max_images=args.max_images)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> int:
    return run(parser(), report, argv)


if __name__ == "__main__":
    sys.exit(main())
