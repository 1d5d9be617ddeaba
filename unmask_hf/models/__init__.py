"""The models: two generators (map, edit) and two discriminators (whole image, mask region)."""

from .discriminators import MaskRegionDiscriminator, WholeDiscriminator
from .edit_generator import EditGenerator, composite, grow_map, paint_growth
from .map_generator import MapGenerator

__all__ = ["MapGenerator", "EditGenerator", "WholeDiscriminator", "MaskRegionDiscriminator", "composite", "grow_map",
           "paint_growth"]
