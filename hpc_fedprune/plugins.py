"""Plug-ins: user code that registers data sets, partition schemes, models and methods.

A plug-in is a Python module or file whose import registers names in the tables of
`hpc_fedprune.registry` (``@ALGORITHMS.register("my_method")`` and the like). Three ways
name one, all imported on every rank before the config is checked against the tables:

- the config key ``plugins: [my_pkg.methods, path/to/file.py]``;
- the command-line flag ``--plugin NAME_OR_PATH`` (repeatable) of ``run`` and
  ``config show``;
- an installed package's entry point in the group ``hpc_fedprune.plugins``, e.g. in its
  ``pyproject.toml``: ``[project.entry-points."hpc_fedprune.plugins"] my_methods =
  "my_pkg.methods"`` (imported whenever hpc_fedprune checks a config).

A plug-in that fails to import, or registers a name that is taken, is an `InputError`
naming it: one line, exit status 2.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from .errors import InputError

#: The entry-point group that installed packages declare their plug-ins in.
ENTRY_POINT_GROUP = "hpc_fedprune.plugins"

# What this process has imported already, so that naming a plug-in twice (flag and
# config, or every config a process loads) imports it once, not registering twice.
_loaded: set[str] = set()


def load_plugins(names: Iterable[str] = (), *, entry_points: bool = True) -> list[str]:
    """Import plug-ins by module name or file path, and the installed packages' ones.

    Parameters
    ----------
    names : iterable of str
        Module names (``my_pkg.methods``) or paths of Python files (anything ending in
        ``.py`` or holding a ``/``; relative to the working folder). Each is imported
        once per process.
    entry_points : bool
        Also import the plug-ins that installed packages declare in the entry-point
        group ``hpc_fedprune.plugins``.

    Returns
    -------
    list of str
        The plug-ins imported by this call (those imported before are left out).

    Raises
    ------
    InputError
        A plug-in cannot be found or fails to import, or registers a name that is taken.
    """
    imported = []
    for name in names:
        key = _key(name)
        if key not in _loaded:
            _import(name, key, lambda name=name: _import_name(name))
            imported.append(name)
    if entry_points and _group_declared():
        from importlib import metadata

        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            key = f"entry point {ep.name} ({ep.value})"
            if key not in _loaded:
                _import(f"{ep.value} (entry point {ep.name!r})", key, ep.load)
                imported.append(ep.value)
    return imported


def _group_declared() -> bool:
    """Whether any installed package's metadata mentions the entry-point group.

    A quick look at the ``entry_points.txt`` files on ``sys.path`` first, because
    importing ``importlib.metadata`` alone takes tens of milliseconds on every rank of
    every start, and almost always finds nothing.
    """
    header = f"[{ENTRY_POINT_GROUP}]"
    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                try:
                    with open(os.path.join(folder or ".", name, "entry_points.txt")) as f:
                        if header in f.read():
                            return True
                except OSError:
                    continue
    return False


def _key(name: str) -> str:
    return str(Path(name).expanduser().resolve()) if _is_path(name) else name


def _is_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name or "\\" in name


def _import(label: str, key: str, load) -> None:
    """Run ``load()``; any failure becomes one line naming the plug-in."""
    # Marked first: a plug-in whose import failed half-way is not retried (its names
    # would be registered twice), the error stands.
    _loaded.add(key)
    try:
        load()
    except InputError as exc:  # a name registered twice, or the plug-in's own check
        raise InputError(f"plug-in {label}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything
        raise InputError(f"plug-in {label} failed to import: {type(exc).__name__}: {exc}") from None


def _import_name(name: str) -> None:
    if not _is_path(name):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name + ".").startswith(exc.name + "."):  # not its imports
                raise InputError(
                    f"no module named {name!r} (a module on the Python path, or a .py file)"
                ) from None
            raise
        return
    from importlib.util import module_from_spec, spec_from_file_location

    path = Path(name).expanduser()
    if not path.is_file():
        raise InputError(f"no such file {name}")
    # A module name of its own, in sys.modules (so that pickling its classes works).
    module_name = "hpc_fedprune_plugin_" + "".join(
        c if c.isalnum() else "_" for c in str(path.resolve().with_suffix(""))
    )
    spec = spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import {name} as Python")
    module = module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
