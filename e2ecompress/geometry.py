"""The crystal grid of the jet images, shared by the detector simulation and the image-level physics.

Kept apart from `e2ecompress.data.detector` (which needs numba) so that `e2ecompress.physics` works in
the base install.
"""

from __future__ import annotations

import math

DETA = 0.0174  # ECAL crystal size in eta
DPHI = 2.0 * math.pi / 360.0  # ECAL crystal size in phi
NPIX = 125
HALF = NPIX // 2  # the centre crystal is pixel (62, 62)
