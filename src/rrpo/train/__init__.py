"""The one training loop every trainer (reward model, SFT, DiffRO/RRPO, baselines) plugs into."""

from rrpo.train.loop import EpochBatches, TrainConfig, latest_checkpoint, load_weights, save_weights, train

__all__ = ["TrainConfig", "EpochBatches", "train", "latest_checkpoint", "load_weights", "save_weights"]
