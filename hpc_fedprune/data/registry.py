"""Name-to-function tables for data set loaders and partition schemes.

A loader or a scheme is one function with keyword-only options and one decorator line.
The table checks a caller's options against the function's own signature, so that a
misspelt option is the user's mistake (``InputError`` naming it and the valid ones)
rather than a ``TypeError`` from deep inside.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import InputError


class Registry:
    """Named functions whose keyword-only parameters are their options.

    Parameters
    ----------
    what : str
        What the entries are, for messages (``"data set"``, ``"partition scheme"``).
    fixed : iterable of str
        Keyword parameters that the caller always supplies itself (``root``, ``seed``);
        they are not options.
    """

    def __init__(self, what: str, fixed: Iterable[str] = ()) -> None:
        self.what = what
        self._fixed = frozenset(fixed)
        self._fns: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator adding a function under ``name``."""

        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._fns:
                raise ValueError(f"{self.what} {name!r} registered twice")
            self._fns[name] = fn
            return fn

        return add

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._fns))

    def get(self, name: str) -> Callable[..., Any]:
        """The function registered as ``name``; ``InputError`` listing valid names if none."""
        try:
            return self._fns[name]
        except KeyError:
            valid = ", ".join(self.names())
            raise InputError(f"unknown {self.what} {name!r} (valid: {valid})") from None

    def options(self, name: str) -> tuple[str, ...]:
        """The option names that ``name`` accepts."""
        params = inspect.signature(self.get(name)).parameters.values()
        return tuple(
            p.name
            for p in params
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in self._fixed
        )

    def call(self, name: str, args: tuple, fixed: Mapping[str, Any], options: Mapping[str, Any]):
        """Call ``name`` with positional ``args``, the fixed keywords and checked ``options``."""
        fn = self.get(name)
        valid = self.options(name)
        for key in options:
            if key not in valid:
                listed = ", ".join(valid) or "none"
                raise InputError(f"{self.what} {name!r} has no option {key!r} (valid: {listed})")
        params = inspect.signature(fn).parameters
        for key in valid:
            if params[key].default is inspect.Parameter.empty and key not in options:
                raise InputError(f"{self.what} {name!r} needs option {key!r}")
        return fn(*args, **fixed, **options)
