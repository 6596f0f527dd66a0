"""What can be chosen: declarative search spaces (numpy only; no torch, ray, optuna or mlflow)."""

from spaces.catalog import SPACES, get_space, list_spaces, register_space
from spaces.dimensions import Categorical, Condition, Dimension, FloatRange, IntRange
from spaces.registry import UnknownNameError
from spaces.space import Arch, InvalidArchitectureError, SearchSpace, arch_id, canonical_json, resolve

from spaces import addernet_resnet as _addernet_resnet  # noqa: F401  (registers built-in spaces)
from spaces import fbnet as _fbnet  # noqa: F401
from spaces import tnt as _tnt  # noqa: F401
from spaces import edsr_fadn as _edsr_fadn  # noqa: F401
from spaces import detector as _detector  # noqa: F401
from spaces import gan_generator as _gan_generator  # noqa: F401

__all__ = [
    "Arch", "Categorical", "Condition", "Dimension", "FloatRange", "IntRange", "InvalidArchitectureError",
    "SPACES", "SearchSpace", "UnknownNameError", "arch_id", "canonical_json", "get_space", "list_spaces",
    "register_space", "resolve",
]
