"""Train a FRAME model: `python train.py model=nonstationary data=objects` (see conf/)."""

import logging

import hydra
from omegaconf import DictConfig

from frame.callbacks import DivergenceError
from frame.training import train

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
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


if __name__ == "__main__":
    main()
