"""unmask-hf: remove face masks from photos and predict the face underneath."""

__version__ = "0.1.0"
