"""The user commands, argparse and file handling only; the work is in the library.

``frame-sample`` (``frame.synthesis``), ``frame-score`` (``frame.scoring``), ``frame-inpaint``
(``frame.recovery``), ``frame-eval`` (``frame.eval``), ``frame-report`` (``frame.report``) and
``frame-fetch-weights`` (``frame.nets.weights``) work on checkpoints, run folders and files;
each is also ``python -m frame.cli.<name>``. They share one set of flags and one way of failing
(``frame.cli.common``): a user error is one line on stderr and exit status 2.

Each command builds its parser from the standard library and ``frame.choices`` only, and
imports torch, Lightning, Hydra and the library inside the function that runs after parsing:
for start-up time, not to dodge an import cycle. ``--help`` and a mistyped flag answer at once
instead of after the seconds those imports take (``bench/startup.py``).
"""
