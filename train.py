"""Train a FRAME model: `python train.py model=nonstationary data=objects` (see conf/).

The same command as `frame-train` (frame/cli/train.py): one-line errors, `--debug` for tracebacks.
"""

from frame.cli.train import main

if __name__ == "__main__":
    main()
