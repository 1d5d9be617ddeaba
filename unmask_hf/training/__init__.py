"""Training building blocks used by `train/train.py`: config, data, checkpoints."""
