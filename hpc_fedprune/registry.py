"""Open name tables: data sets, partition schemes, models and methods, added by decorator.

One `Registry` per kind of thing. The built-in entries are *declared* here by name, with
the module that registers them, so that the config can be checked against every
built-in name before torch is imported (``preflight``); that module is imported only
when an entry is first used. A plug-in registers more names with the same decorator the
package itself uses::

    from hpc_fedprune.registry import ALGORITHMS

    @ALGORITHMS.register("my_method")
    class MyMethod(Algorithm): ...

The config's ``choices`` for ``data.name``, ``partition.scheme``, ``model.name`` and
``algorithm.name`` are these registries themselves, read when a config is checked: a
name a plug-in registered is then as valid as a built-in one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .errors import InputError


class DuplicateName(InputError):
    """A name registered twice (by two plug-ins, or a plug-in and the package)."""


class Registry:
    """Named entries (functions, classes, specs) of one kind.

    Parameters
    ----------
    what : str
        What the entries are, for messages (``"data set"``, ``"partition scheme"``).
    builtin : iterable of str
        The names that module ``home`` registers when it is imported; known (for
        checking a config) without importing it.
    home : str, optional
        The module that registers the built-in names.
    fixed : iterable of str
        Keyword parameters that the caller always supplies itself (``root``, ``seed``);
        they are not options (see `options`, `call`).
    """

    def __init__(
        self, what: str, builtin: Iterable[str] = (), home: str | None = None, fixed=()
    ) -> None:
        self.what = what
        self._builtin = tuple(builtin)
        self._home = home
        self._fixed = frozenset(fixed)
        self._entries: dict[str, Any] = {}

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator adding a function or class under ``name``.

        Raises
        ------
        DuplicateName
            ``name`` is registered already, or is a built-in name and the entry is not
            the package's own.
        """

        def add(entry: Any) -> Any:
            self.add(name, entry, owner=getattr(entry, "__module__", None))
            return entry

        return add

    def add(self, name: str, entry: Any, owner: str | None = None) -> None:
        """Register ``entry`` under ``name`` (``owner``: the module adding it)."""
        if not isinstance(name, str) or not name:
            raise InputError(f"{self.what} name must be a non-empty string, got {name!r}")
        own = owner is not None and owner.split(".")[0] == "hpc_fedprune"
        if name in self._entries or (name in self._builtin and not own):
            raise DuplicateName(f"{self.what} {name!r} registered twice")
        self._entries[name] = entry

    def names(self) -> tuple[str, ...]:
        """Every known name: the built-in ones in their declared order, then the others
        in the order they were registered. Imports nothing."""
        extra = [n for n in self._entries if n not in self._builtin]
        return (*self._builtin, *extra)

    def __contains__(self, name: object) -> bool:
        return name in self._builtin or name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> Any:
        """The entry registered as ``name``; ``InputError`` listing valid names if none."""
        if name not in self._entries and name in self._builtin and self._home:
            importlib.import_module(self._home)
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(self.names())
            raise InputError(f"unknown {self.what} {name!r} (valid: {valid})") from None

    def options(self, name: str) -> tuple[str, ...]:
        """The keyword-only parameters of function ``name`` that are options."""
        import inspect  # here: the quick check of a config (names only) does without it

        params = inspect.signature(self.get(name)).parameters.values()
        return tuple(
            p.name
            for p in params
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in self._fixed
        )

    def call(self, name: str, args: tuple, fixed: Mapping[str, Any], options: Mapping[str, Any]):
        """Call ``name`` with positional ``args``, the fixed keywords and checked ``options``."""
        import inspect

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


DATASETS = Registry(
    "data set",
    builtin=(
        "synthetic",
        "synthetic_volumes",
        "fashion_mnist",
        "mnist",
        "cifar10",
        "cifar100",
        "npz",
        "hdf5",
    ),
    home="hpc_fedprune.data.datasets",
    fixed=("root", "seed"),
)
"""Data set loaders: ``fn(*, root, seed, **options) -> Dataset``."""

PARTITIONS = Registry(
    "partition scheme",
    builtin=("iid", "iid_balanced", "dirichlet", "shards", "quantity_skew"),
    home="hpc_fedprune.data.partition",
    fixed=("rng",),
)
"""Partition schemes: ``fn(labels, num_clients, *, rng, **options) -> list of index arrays``."""

MODELS = Registry(
    "model",
    builtin=(
        "mlp",
        "lenet5",
        "cnn",
        "small_cnn",
        "alexnet_cifar",
        "resnet18_cifar",
        "vgg11",
        "cnn3d",
    ),
    home="hpc_fedprune.models.zoo",
)
"""Networks: `hpc_fedprune.models.zoo.ModelSpec` entries (see ``register_model``)."""

ALGORITHMS = Registry(
    "federated method",
    builtin=(
        "fedavg",
        "fedprox",
        "fedsparsify",
        "feddip",
        "snip",
        "oneshot",
        "random_mask",
        "prunefl",
        "feddst",
        "autoflip",
        "topk",
    ),
    home="hpc_fedprune.algorithms",
)
"""Federated methods: `hpc_fedprune.algorithms.Algorithm` subclasses."""
