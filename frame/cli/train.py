"""frame-train: learn a FRAME model by Algorithm 1; the same as ``python train.py``.

    frame-train model=stationary data=texture trainer.max_steps=200
    frame-train model=nonstationary data=objects ckpt_path=<run>/checkpoints/last.ckpt

Takes Hydra overrides of the configs in ``conf/`` (next to the package in a source checkout).
An error the user can fix (an unknown config key or option, a config value out of range, a
missing or crafted checkpoint, a folder that cannot be written) prints one line,
``frame-train: error: <message>``, on stderr and exits 2; a run that fails (divergence, weights
that cannot be fetched) prints one line and exits 1; a run stopped by SIGTERM, SIGUSR1 or
Ctrl+C saves ``last.ckpt`` of its step, says so and exits 128 + the signal number. Tracebacks
only with ``--debug`` (or ``HYDRA_FULL_ERROR=1``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from frame.cli.common import one_line, out_of_memory, run_errors, user_errors

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

#: the configs, at the root of the source checkout
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
#: a config key of earlier versions whose settings moved (the old key names the new one in the error)
RENAMED = "model.recovery."


def errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Errors in what the user gave (exit status 2) and runs that could not go on (1): the commands' own
    (``frame.cli.common``), imported when the run starts (start-up time, frame.cli)."""
    return user_errors(), run_errors()


def task(cfg: DictConfig) -> float | None:
    """Hydra's task: trains, and returns the metric a sweeper minimises."""
    from frame.run import RunInterrupted

    try:
        return train_and_score(cfg)
    except Exception as err:  # the classes to tell apart are known once the run has imported them (``errors``)
        user_errors, run_errors = errors()
        if debugging() or not (isinstance(err, (*user_errors, *run_errors, RunInterrupted)) or out_of_memory(err)):
            raise
        message, status = report(err)
        print(f"{program()}: error: {message}", file=sys.stderr)
        sys.exit(status)


def train_and_score(cfg: DictConfig) -> float | None:
    from frame.run import DivergenceError, train

    metric = cfg.get("optimized_metric")
    try:
        metrics = train(cfg)
    except DivergenceError as err:
        if metric is None:
            raise
        # in a sweep, a diverging trial is a bad score, not the end of the sweep
        log.error("trial diverged, scored +inf: %s", err)
        return float("inf")
    # Hydra sweepers (e.g. Optuna) minimise the returned value.
    return metrics.get(metric or "train/gap_rel")


def report(err: BaseException) -> tuple[str, int]:
    """The one line and the exit status of `err`."""
    from hydra.errors import InstantiationException

    from frame.run import RunInterrupted

    if isinstance(err, RunInterrupted):
        return one_line(err), err.exit_code
    user_errors, run_errors = errors()
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, (*user_errors, *run_errors)):
        err = err.__cause__  # the constructor's own message names the key
    status = 1 if isinstance(err, run_errors) or out_of_memory(err) else 2
    hint = " (out of memory: lower the batch size or the number of chains)" if out_of_memory(err) else ""
    return f"{one_line(err)}{hint} (--debug shows the traceback)", status


def debugging() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def program() -> str:
    return Path(sys.argv[0]).name or "frame-train"


def main() -> None:
    """``frame-train [--debug] [overrides...]`` (Hydra's flags, e.g. ``-m``, ``--cfg job``, work too)."""
    if not CONF_DIR.is_dir():
        print(
            f"{program()}: error: no config folder at {CONF_DIR}: frame-train runs from a source checkout "
            "(pip install -e <checkout>); or run python train.py in the checkout",
            file=sys.stderr,
        )
        sys.exit(2)
    if "--debug" in sys.argv[1:]:  # Hydra does not know the flag: it becomes Hydra's own switch
        sys.argv.remove("--debug")
        os.environ["HYDRA_FULL_ERROR"] = "1"
    if set(sys.argv[1:]) & {"-h", "--help"}:
        print(usage())
        return
    if not debugging():
        check_overrides(sys.argv[1:])
    import hydra
    from omegaconf import OmegaConf

    # run folders end in the process id (conf/hydra/default.yaml): two runs started in the same
    # microsecond on one machine still get two folders
    OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")(task)()


def usage() -> str:
    """``--help``: this docstring and the options of each config group, read from the file names
    in ``conf/`` (Hydra's own help composes every group, seconds; ``--hydra-help`` shows Hydra's flags)."""
    groups = sorted(folder for folder in CONF_DIR.iterdir() if folder.is_dir())
    lines = [f"usage: {program()} [--debug] [key=value ...] [group=option ...]", "", (__doc__ or "").strip(), "",
             "config groups (group=option):"]
    for folder in groups:
        options = sorted(path.stem for path in folder.glob("*.yaml"))
        lines.append(f"  {folder.name:<15} {', '.join(options)}")
    lines += ["", f"configs: {CONF_DIR}; `{program()} --cfg job [overrides]` prints the composed config, "
              f"`{program()} --hydra-help` Hydra's own flags"]
    return "\n".join(lines)


def check_overrides(args: list[str]) -> None:
    """Composes the config once before Hydra does, so that an unknown key, group or option in
    the overrides is one line and exit status 2 (Hydra itself prints a paragraph and exits 1).
    Only for a plain run: with a flag (``-m``, ``--cfg``, ``--help``, ...) Hydra reports."""
    if any(arg.startswith("-") for arg in args):
        return
    for arg in args:
        key = arg.lstrip("+~").split("=", 1)[0]
        if key.startswith(RENAMED):  # model.recovery={...} as a whole still works
            new = "model.buffer." + key[len(RENAMED):]
            print(f"{program()}: error: {key} is now {new}: the recovery settings belong to the chain source "
                  "model.buffer._target_=frame.recovery.RecoveryChains (experiment=vgg_recovery)", file=sys.stderr)
            sys.exit(2)
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            compose("train", overrides=args)
    except (HydraException, OmegaConfBaseException) as err:
        cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else None
        detail = f": {one_line(cause).split(' full_key:')[0]}" if cause is not None else ""
        message = one_line(err).split(" Config search path:")[0]  # Hydra lists its search path after the options
        print(f"{program()}: error: {message}{detail} (--debug shows the traceback)", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
