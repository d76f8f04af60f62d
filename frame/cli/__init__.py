"""The user commands, argparse and file handling only; the work is in the library.

``frame-sample`` (``frame.synthesis``), ``frame-score`` (``frame.scoring``), ``frame-inpaint``
(``frame.recovery``), ``frame-eval`` (``frame.eval``), ``frame-report`` (``frame.report``) and
``frame-fetch-weights`` (``frame.nets.weights``) work on checkpoints, run folders and files;
each is also ``python -m frame.cli.<name>``. They share one set of flags and one way of failing
(``frame.cli.common``): a user error is one line on stderr and exit status 2.
"""
