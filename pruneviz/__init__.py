"""pruneviz: inspect pruned neural networks — what pruning changed, for whom, and why.

``import pruneviz`` loads torch, numpy and pandas only; optional parts (app, kernels, attribution,
embeddings, distributed sweeps) load when first used.
"""

from pruneviz._version import __version__
from pruneviz.data import Dataset, load_dataset
from pruneviz.exceptions import PrunevizError
from pruneviz.models import build_model
from pruneviz.train import TrainConfig, evaluate, fit
from pruneviz.zoo import Zoo

__all__ = [
    "Dataset",
    "PrunevizError",
    "TrainConfig",
    "Zoo",
    "__version__",
    "build_model",
    "evaluate",
    "fit",
    "load_dataset",
]
