"""Face handling: the aligned-crop geometry the models are trained on (detection and alignment come later)."""

import numpy as np

# Five landmarks of the aligned face crop, as fractions of the crop side:
# left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right).
# Matches the framing of the training crops (roughly aligned CelebA faces).
TEMPLATE_LANDMARKS = np.array(
    [[0.35, 0.42], [0.65, 0.42], [0.50, 0.58], [0.38, 0.72], [0.62, 0.72]], dtype=np.float32
)
