"""Image corruptions of MNIST-C and CIFAR-10-C at severities 1–5, and the mean corruption error.

- MNIST-C (Mu & Gilmer 2019): 15 corruptions of handwritten digits.
- CIFAR-10-C (Hendrycks & Dietterich 2019): 15 corruptions of natural images, plus the 4 held out
  (``cifar10_c_extra``).

Everything is written here in torch / numpy / scipy (the usual corruption packages no longer import on
NumPy 2) with the published parameter tables; nothing is downloaded or shipped (frost and fog textures
are procedural). :func:`corruption_table` lists every parameter, its reference image size and how pruneviz
departs from the published procedure where it does: pixel-level operations that cannot be reproduced
without ImageMagick/OpenCV or the frost photographs are re-implemented, and where a published table does
not grow in strength with severity (CIFAR-10-C's motion_blur 3-4, glass_blur, snow 3, frost 4-5,
elastic_transform, spatter 4-5 and saturate 1-2; MNIST-C's fog and spatter 4-5) the fewest parameters
are changed so that it does.

Example::

    >>> import torch
    >>> x = torch.rand(4, 1, 8, 8)
    >>> [corrupt_images(x, name, severity=3).shape[0] for name in corruption_names("mnist_c")[:3]]
    [4, 4, 4]
"""

from pruneviz.analysis.corruptions._api import (
    CORRUPTIONS,
    SEVERITIES,
    SUITES,
    corrupt,
    corrupt_images,
    corruption_names,
    corruption_spec,
    corruption_split_name,
    corruption_table,
    parse_corruption_split,
)
from pruneviz.analysis.corruptions._catalogue import CorruptionSpec
from pruneviz.analysis.corruptions._mce import mean_corruption_error

__all__ = [
    "CORRUPTIONS",
    "SEVERITIES",
    "SUITES",
    "CorruptionSpec",
    "corrupt",
    "corrupt_images",
    "corruption_names",
    "corruption_spec",
    "corruption_split_name",
    "corruption_table",
    "mean_corruption_error",
    "parse_corruption_split",
]
