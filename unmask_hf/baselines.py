"""Classical inpainting baselines: what people would use instead of a learned model (OpenCV, the [eval] extra).

They fill a given region from its surroundings and know nothing about faces: Telea's fast marching method
(Telea 2004) and the Navier-Stokes method (Bertalmio et al. 2001), as implemented by `cv2.inpaint`.
Images are RGB uint8 HxWx3 arrays, masks HxW (bool, 0/1 or 0/255; True/1/255 = fill); pixels outside the
mask come back unchanged.
"""

import numpy as np

from .metrics import to_mask

INPAINT_METHODS = ("telea", "ns")


def inpaint(image: np.ndarray, mask, method: str = "telea", radius: float = 3.0) -> np.ndarray:
    """Fill the masked pixels of an RGB uint8 image with OpenCV's inpainting (`method`: telea or ns).

    `radius` is the neighbourhood, in pixels, each filled pixel is estimated from (OpenCV's example value).
    """
    try:
        import cv2
    except ImportError as e:
        raise ImportError("the inpainting baselines need OpenCV: pip install 'unmask-hf[eval]' "
                          "(opencv-python-headless)") from e
    flags = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
    if method not in flags:
        raise ValueError(f"method must be one of {', '.join(INPAINT_METHODS)}, got {method!r}")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    region = to_mask(mask)
    if region.shape != image.shape[:2]:
        raise ValueError(f"mask shape {region.shape} does not match image shape {image.shape[:2]}")
    return cv2.inpaint(image, region.astype(np.uint8) * 255, radius, flags[method])
