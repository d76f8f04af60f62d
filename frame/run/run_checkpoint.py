"""Lightning's ModelCheckpoint, without the training machine's paths inside the checkpoints.

``ModelCheckpoint`` saves its folder and the paths of the best and last checkpoints in every
checkpoint it writes, as absolute paths of the machine that trained. A checkpoint shared with
others then carries them. ``RunCheckpoint`` saves file names only (the folder is implied) and,
on resume, takes them back only when those files are in its own folder; elsewhere it starts
afresh, as Lightning does when the folder changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import ModelCheckpoint

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose saved state names files relative to its folder."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        every, top_k = kwargs.get("every_n_train_steps"), kwargs.get("save_top_k", 1)
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 0):
            raise ValueError(f"callbacks.model_checkpoint.every_n_train_steps must be an integer >= 0, got {every!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < -1:
            raise ValueError(f"callbacks.model_checkpoint.save_top_k must be an integer >= -1, got {top_k!r}")
        super().__init__(*args, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["dirpath"] = None
        for key in PATH_KEYS:
            state[key] = Path(state[key]).name if state[key] else ""
        state["best_k_models"] = {Path(path).name: score for path, score in state["best_k_models"].items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        folder = Path(self.dirpath) if self.dirpath else None
        names = [Path(state_dict.get(key) or "").name for key in PATH_KEYS] + [Path(p).name for p in state_dict.get("best_k_models", {})]
        if folder is None or not all((folder / name).is_file() for name in names if name):
            return  # resumed in another folder: nothing of the old one to keep track of
        state = dict(state_dict, dirpath=self.dirpath)
        for key in PATH_KEYS:
            state[key] = str(folder / Path(state_dict[key]).name) if state_dict.get(key) else ""
        state["best_k_models"] = {str(folder / Path(p).name): s for p, s in state_dict.get("best_k_models", {}).items()}
        super().load_state_dict(state)
