"""The models: two generators (map, edit), two discriminators (whole image, mask region), the detail stage (refine),
the landmark refiner (align)."""

from .discriminators import MaskRegionDiscriminator, WholeDiscriminator
from .edit_generator import EditGenerator, composite, grow_map, paint_growth
from .landmark_refiner import LandmarkRefiner
from .map_generator import MapGenerator, with_face_features
from .refine_generator import RefineGenerator

__all__ = ["MapGenerator", "EditGenerator", "RefineGenerator", "LandmarkRefiner", "WholeDiscriminator", "MaskRegionDiscriminator", "composite", "grow_map",
           "paint_growth", "with_face_features"]
