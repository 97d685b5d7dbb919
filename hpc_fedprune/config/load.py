"""YAML and ``key.sub=value`` overrides into the frozen `Config`, checked once.

Every error is an `InputError` with one line naming the key's full path, what was
expected, and for unknown keys the closest valid name.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.util
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..registry import Registry
from .schema import Config


def load_config(
    path: str | Path | Mapping[str, Any] | Config | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    plugins: list[str] | tuple[str, ...] = (),
) -> Config:
    """Read a YAML config (or none: the quick start), apply overrides, import the
    plug-ins, and validate.

    Parameters
    ----------
    path : str, Path, mapping or Config, optional
        YAML file, or the same tree as a mapping of sections (``{"federation": {"rounds":
        3}}``), or a `Config` (checked again, with the overrides applied). Without it
        every key takes its default.
    overrides : list of str
        ``key.sub=value`` strings; values are parsed as YAML (``0.5``, ``[1, 2]``, ``null``).
    plugins : list of str
        Plug-ins to import besides the config's ``plugins`` (the ``--plugin`` flags); they
        are recorded in the returned config's ``plugins``, first.

    Returns
    -------
    Config

    Raises
    ------
    InputError
        Unreadable file, bad YAML, unknown key, wrong type or value, a plug-in that does
        not import.
    """
    raw = config_tree(path)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(raw, key, value)
    load_raw_plugins(raw, plugins)
    config = build(Config, raw, "")
    check_consistency(config)
    check_installed(config)
    return config


def load_raw_plugins(raw: dict[str, Any], extra: list[str] | tuple[str, ...] = ()) -> None:
    """Import the plug-ins ``extra`` and those of ``raw["plugins"]`` (and the installed
    packages' ones), before the names in ``raw`` are checked; ``raw["plugins"]`` then
    lists both. Nothing is imported when there are none (the quick check stays quick)."""
    listed = coerce("plugins", raw.get("plugins") or [], tuple[str, ...])
    names = list(dict.fromkeys([*extra, *listed]))
    if names:
        raw["plugins"] = names
    from ..plugins import load_plugins

    load_plugins(names)


def config_tree(source: str | Path | Mapping[str, Any] | Config | None) -> dict[str, Any]:
    """The nested mapping a config source gives, not yet checked (a copy: never the caller's).

    Raises
    ------
    InputError
        An unreadable or malformed file, or a source of another type.
    """
    if source is None:
        return {}
    if isinstance(source, Config):
        return to_dict(source)
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    if isinstance(source, (str, os.PathLike)):
        return read_yaml(source)
    raise InputError(
        f"config: expected a YAML file's path, a mapping or a Config, got {type(source).__name__}"
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML file, or an InputError that says what is wrong with it."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(f"config file {p}: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(
            f"config file {p}: expected a mapping of sections, got {type(data).__name__}"
        )
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` and parse the value as YAML."""
    if "=" not in text:
        raise InputError(f"override {text!r} is not of the form key.sub=value")
    key, _, value_text = text.partition("=")
    key = key.strip()
    if not key:
        raise InputError(f"override {text!r} has no key")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        value = value_text
    return key, value


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree[a][b] = value`` for ``key == 'a.b'``, creating sections as needed."""
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise InputError(
                f"override {key}: {'.'.join(parts[: i + 1])} is a value, not a section"
            )
        node = child
    node[parts[-1]] = value


def build(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking names, types and ranges."""
    where = prefix.rstrip(".") or "the config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a section (mapping), got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise InputError(unknown_key_message(prefix + str(key), str(key), list(fields)))
    values = {}
    for name, field in fields.items():
        path = prefix + name
        if field.metadata.get("section"):
            values[name] = build(hints[name], raw.get(name), path + ".")
        elif name in raw:
            values[name] = check_value(path, raw[name], hints[name], field.metadata)
    return cls(**values)


def unknown_key_message(path: str, key: str, valid: list[str]) -> str:
    """``unknown config key 'federation.round'; did you mean 'federation.rounds'?``.

    The suggestion is the full key, ready to type back as an override.
    """
    section = path[: len(path) - len(key)]
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        hint = f"; did you mean '{section}{close[0]}'?"
    else:
        hint = f"; valid keys: {', '.join(section + v for v in valid)}"
    return f"unknown config key '{path}'{hint}"


def check_value(path: str, value: Any, hint: Any, meta: dict) -> Any:
    """Coerce ``value`` to the field's type and check its choices and range."""
    value = coerce(path, value, hint)
    choices = meta.get("choices")
    # A list key with choices checks each item (e.g. algorithm.feddip.exclude).
    items = value if isinstance(value, tuple) else (value,)
    for item in items if choices and value is not None else ():
        if item not in choices:
            close = difflib.get_close_matches(str(item), [str(c) for c in choices], n=1)
            hint_text = f"; did you mean '{close[0]}'?" if close else ""
            if isinstance(choices, Registry) and not close:
                hint_text = " (a plug-in's? name it in plugins: or with --plugin)"
            raise InputError(
                f"{path}: {item!r} is not one of {', '.join(map(str, choices))}{hint_text}"
            )
    lo, hi = meta.get("min"), meta.get("max")
    numbers = value if isinstance(value, tuple) else (value,)
    for v in numbers:
        if isinstance(v, float) and not math.isfinite(v):
            # NaN compares false with every bound, so it would pass any range check.
            raise InputError(f"{path}: {v!r} is not a finite number")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if lo is not None and (v < lo or (meta.get("min_exclusive") and v == lo)):
                relation = ">" if meta.get("min_exclusive") else ">="
                raise InputError(f"{path}: {v!r} is out of range (expected {relation} {lo})")
            if hi is not None and v > hi:
                raise InputError(f"{path}: {v!r} is out of range (expected <= {hi})")
    return value


def coerce(path: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a type hint; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if value in ("None", "none"):
            # Python's spelling: in YAML it is a string, which would name a folder "None".
            raise InputError(f"{path}: {value!r} is a string here; write null for no value")
        return coerce(path, value, args[0])
    if origin is tuple:
        (item, *_rest) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{path}: expected a list, got {value!r}")
        return tuple(coerce(f"{path}[{i}]", v, item) for i, v in enumerate(value))
    if hint is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise InputError(f"{path}: expected a mapping of names to values, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{path}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InputError(f"{path}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads 5e-4 (no decimal point) as a string; accept it as a number.
            try:
                return float(value)
            except ValueError:
                pass
        raise InputError(f"{path}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise InputError(f"{path}: expected a string, got {value!r}")
    return value


def check_consistency(config: Config) -> None:
    """Checks that involve several keys, or a key's text beyond its type."""
    check_output_name(config.output.name)
    fed, part = config.federation, config.partition
    cohort = fed.clients_per_round
    if cohort == 0 and fed.fraction == 0.0:
        raise InputError("federation: set clients_per_round > 0 or fraction > 0")
    if cohort > part.num_clients:
        raise InputError(
            f"federation.clients_per_round: {cohort} is larger than partition.num_clients "
            f"({part.num_clients})"
        )
    if (
        part.scheme == "quantity_skew"
        and part.sizes is not None
        and len(part.sizes) != part.num_clients
    ):
        raise InputError(
            f"partition.sizes: {len(part.sizes)} sizes given for {part.num_clients} clients"
        )
    if config.data.name in ("npz", "hdf5") and not config.data.path:
        raise InputError(f"data.path: the {config.data.name} loader needs a file path")
    if config.data.on_demand and config.data.name != "hdf5":
        raise InputError(
            f"data.on_demand: reads HDF5 files only (data.name hdf5), not {config.data.name!r}"
        )
    if config.training.mixed_precision and config.training.group_size == 1:
        raise InputError(
            "training.mixed_precision: applies to grouped training only; set "
            "training.group_size > 1"
        )


def check_installed(config: Config) -> None:
    """The optional packages that the config asks for can be imported.

    Checked when a run's config is loaded, before anything is written, rather than when
    the first round is logged.
    """
    if config.output.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise InputError(
            "output.tensorboard: the tensorboard package is not installed "
            "(pip install 'hpc_fedprune[tensorboard]'), or set output.tensorboard=false"
        )


def check_output_name(name: str) -> None:
    """``output.name`` becomes one folder name under ``runs/``: no paths, no escapes."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise InputError(
            f"output.name: {name!r} must be a plain folder name (no path separators, "
            "not '.' or '..'); give a path with --out or output.dir"
        )


#: Stands for a key that one of two compared configs does not have.
ABSENT = object()


def config_differences(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """The keys whose values differ between two configs as read from YAML.

    Both are resolved first (defaults filled in), so a key left out of one and given its
    default in the other is no difference. A mapping that no longer builds (a config
    written by another version) is compared as it is.

    Returns
    -------
    list of (key, value in a, value in b)
        Dotted keys in the order of the config's sections; `ABSENT` where a side lacks one.
    """
    flat_a, flat_b = _flat(_resolved(a)), _flat(_resolved(b))
    keys = list(dict.fromkeys([*flat_a, *flat_b]))
    return [
        (k, flat_a.get(k, ABSENT), flat_b.get(k, ABSENT))
        for k in keys
        if flat_a.get(k, ABSENT) != flat_b.get(k, ABSENT)
    ]


def _resolved(raw: Any) -> Any:
    try:
        config = build(Config, raw, "")
    except InputError:
        return raw
    return to_dict(config)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def cohort_size(config: Config) -> int:
    """Clients per round: the count, or the fraction of all clients (at least one)."""
    fed = config.federation
    if fed.clients_per_round > 0:
        return fed.clients_per_round
    return max(1, int(round(fed.fraction * config.partition.num_clients)))


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (tuples as lists), for YAML and the run file."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def to_yaml(config: Config) -> str:
    """The resolved config as YAML text; loading it gives the same config back."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)


def describe_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(full key, default, meaning) for every key, in declaration order."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("section"):
            rows.extend(describe_keys(hints[f.name], prefix + f.name + "."))
            continue
        default = f.default
        text = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            text += f" ({' | '.join(map(str, f.metadata['choices']))})"
        rows.append(
            (prefix + f.name, list(default) if isinstance(default, tuple) else default, text)
        )
    return rows
