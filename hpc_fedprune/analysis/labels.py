"""Names for runs in tables, legends and titles: the method as papers write it, not a folder.

A run's resolved config (the ``config`` attribute of ``run.h5``) says which method it ran
and how; `method_name` turns that into "FedSparsify-Global" or "Top-k EF". When several
runs share a method name, `distinct_labels` adds the settings that tell them apart
("FedSparsify-Global, final_sparsity=0.95").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .runfile import Run

#: Keys that name or place a run rather than change what it computes.
_BOOKKEEPING = ("output.", "runtime.device", "runtime.threads")
SEED_KEY = "runtime.seed"

_PLAIN_NAMES = {
    "fedprox": "FedProx",
    "snip": "SNIP",
    "oneshot": "One-shot",
    "prunefl": "PruneFL",
    "feddst": "FedDST",
}


def run_config(run: Run) -> dict[str, Any]:
    """The run's resolved config as a nested dict (empty when absent or unreadable)."""
    text = run.attrs.get("config")
    if not isinstance(text, str):
        return {}
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return tree if isinstance(tree, dict) else {}


def get(tree: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``tree["a"]["b"]`` for ``key == "a.b"``; ``default`` where a level is missing."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def method_name(config: Mapping[str, Any], algorithm: str) -> str:
    """The method as papers name it, from the config (``algorithm`` when it says nothing)."""
    name = get(config, "algorithm.name", algorithm)
    opts = get(config, f"algorithm.{name}", {})
    opts = opts if isinstance(opts, Mapping) else {}
    if name == "fedavg":
        momentum = get(config, "federation.server_momentum", 0) or 0
        return "FedAvgM" if momentum > 0 else "FedAvg"
    if name == "fedsparsify":
        return f"FedSparsify-{str(opts.get('variant', 'global')).capitalize()}"
    if name == "feddip":
        return {"feddp": "FedDP", "reg_only": "FedDIP (penalty only)"}.get(
            opts.get("mode"), "FedDIP"
        )
    if name == "random_mask":
        return "Random ERK mask" if opts.get("distribution") == "erk" else "Random mask"
    if name == "autoflip":
        return "AutoFLIP (hybrid)" if opts.get("structured") else "AutoFLIP"
    if name == "topk":
        return "Top-k EF" if opts.get("error_feedback", True) else "Top-k"
    return _PLAIN_NAMES.get(name, str(name))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def experiment_key(config: Mapping[str, Any]) -> str:
    """The config without seed and bookkeeping, as text: equal for repeats over seeds."""
    flat = {
        k: v for k, v in flatten(config).items() if k != SEED_KEY and not k.startswith(_BOOKKEEPING)
    }
    return json.dumps(flat, sort_keys=True, default=str)


def _differing(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys whose values are not the same in every config (seed and bookkeeping left out)."""
    flats = [flatten(c) for c in configs]
    keys = sorted(set().union(*flats)) if flats else []
    return [
        k
        for k in keys
        if k != SEED_KEY
        and not k.startswith(_BOOKKEEPING)
        and len({json.dumps(f.get(k), default=str) for f in flats}) > 1
    ]


def _short(key: str, keys: Sequence[str]) -> str:
    """The last part of a dotted key, or more of it where that is ambiguous among ``keys``."""
    parts = key.split(".")
    for n in range(1, len(parts) + 1):
        tail = ".".join(parts[-n:])
        if sum(1 for k in keys if k == tail or k.endswith("." + tail)) == 1:
            return tail
    return key


def distinct_labels(
    names: Sequence[str], configs: Sequence[Mapping[str, Any]], fallbacks: Sequence[str]
) -> list[str]:
    """Method names, lengthened where several entries share one.

    Entries with the same name get the settings in which their configs differ (at most
    three, shortest unambiguous key names); entries that still share a label get their
    ``fallbacks`` (run folder names) as well.
    """
    labels = list(names)
    for name in set(names):
        idx = [i for i, n in enumerate(names) if n == name]
        if len(idx) < 2:
            continue
        keys = _differing([configs[i] for i in idx])
        if 0 < len(keys) <= 3:
            for i in idx:
                settings = ", ".join(f"{_short(k, keys)}={_text(get(configs[i], k))}" for k in keys)
                labels[i] = f"{name}, {settings}"
        shared = [i for i in idx if sum(labels[j] == labels[i] for j in idx) > 1]
        for i in shared:
            labels[i] = f"{labels[i]} ({fallbacks[i]})"
    return labels


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
