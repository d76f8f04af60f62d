"""Rebuilding a trained FRAME model from a Lightning checkpoint (for sample, score, inpaint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from frame.models.base import FrameModel
from frame.training import build_model


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint safely (``weights_only=True``) with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a checkpoint, or unsafe pickle
        raise ValueError(f"cannot read checkpoint {path}: {err}") from err
    if "state_dict" not in checkpoint or "frame" not in checkpoint:
        raise ValueError(f"{path} is not a checkpoint written by frame's train.py (no model config inside)")
    return checkpoint


def load_model(path: str | Path, device: str | torch.device = "cpu") -> FrameModel:
    """The model saved in `path`, built from its stored config, weights and chains restored."""
    checkpoint = read_checkpoint(path)
    config = checkpoint["frame"].get("model_config")
    if not config:
        raise ValueError(f"{path} carries no model config; it was not written by frame's train.py")
    model = build_model(OmegaConf.create(config))
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device).eval()
