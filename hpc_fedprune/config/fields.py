"""Declaring config fields: a default, a one-line meaning and the allowed values, in one place.

Every config key is a dataclass field made by `option`. Its metadata carries the help text
(shown by ``config show --help-keys`` and in the README) and the checks that
`hpc_fedprune.config.load` applies once, with messages that name the key's full path.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
) -> Any:
    """A config field with its default, meaning and allowed range.

    Parameters
    ----------
    default : Any
        Default value (lists are stored as tuples so configs stay frozen and hashable).
    help : str
        One line: what the key means, with units.
    choices : tuple, optional
        The allowed values, for string keys.
    min, max : float, optional
        Inclusive bounds for numbers (``min_exclusive`` makes the lower bound strict).
    """
    meta = {
        "help": help,
        "choices": choices,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
    }
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, help: str) -> Any:
    """A nested config section (a frozen dataclass) with its meaning."""
    return dataclasses.field(default_factory=cls, metadata={"help": help, "section": True})
