"""Train a FRAME model: `python train.py model=nonstationary data=objects` (see conf/)."""

import hydra
from omegaconf import DictConfig

from frame.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    # Hydra sweepers (e.g. Optuna) minimise the returned value.
    return metrics.get("train/gap_rel")


if __name__ == "__main__":
    main()
