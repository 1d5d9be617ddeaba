"""unmask-hf: remove face masks from photos and predict the face underneath."""

from .pipeline import FaceResult, UnmaskPipeline, UnmaskResult

__version__ = "0.1.0"
__all__ = ["UnmaskPipeline", "UnmaskResult", "FaceResult"]
