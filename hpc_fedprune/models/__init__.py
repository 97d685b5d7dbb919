"""Networks and the one-flat-buffer model wrapper.

`build_model` builds a zoo network with a seeded init; `FlatModel` makes its parameters
and running statistics views into one 1-D tensor, described by a layout of `TensorInfo`.
"""

from .flat import KINDS, FlatModel, TensorInfo
from .init import INIT_SCHEMES, init_weights_
from .layers import KeyedDropout, set_dropout_generator
from .zoo import MODEL_NAMES, ModelSpec, build_model, model_options, register_model

__all__ = [
    "INIT_SCHEMES",
    "KINDS",
    "MODEL_NAMES",
    "FlatModel",
    "KeyedDropout",
    "ModelSpec",
    "TensorInfo",
    "build_model",
    "init_weights_",
    "model_options",
    "register_model",
    "set_dropout_generator",
]
