"""The config as people read it: key tables with YAML defaults, and only the sections in use.

Defaults are printed as YAML (``null``, ``false``, ``[128, 128]``), the syntax that
``key.sub=value`` overrides and config files take, so that a value copied from
``config keys`` means the same when it is typed back (``data.root=None`` would be the
string "None").
"""

from __future__ import annotations

from typing import Any

import yaml

from .load import describe_keys, to_dict
from .schema import Config

#: Sections whose sub-sections belong to one choice each: ``model.<name>`` holds the
#: options of the network ``model.name`` and ``algorithm.<name>`` those of the method.
CHOICE_SECTIONS = ("model", "algorithm")


def yaml_value(value: Any) -> str:
    """A value as YAML flow text on one line: ``None`` -> ``null``, ``(1, 2)`` -> ``[1, 2]``."""
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"))
    # A scalar document ends with an explicit end marker ("null\n...\n"); keep the value.
    return text.removesuffix("\n...\n").strip()


def key_rows() -> list[tuple[str, str, str]]:
    """(full key, default as YAML, meaning) for every key, in declaration order."""
    return [(key, yaml_value(default), text) for key, default, text in describe_keys()]


def keys_markdown() -> str:
    """Every key as the Markdown table of the README (``config keys --markdown``)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, text in key_rows():
        lines.append(f"| `{key}` | `{default}` | {text.replace('|', '/')} |")
    return "\n".join(lines)


def keys_text() -> str:
    """Every key as ``key = default`` with its meaning indented below (``config keys``)."""
    return "\n".join(f"{key} = {default}\n    {text}" for key, default, text in key_rows())


def used_dict(config: Config) -> dict[str, Any]:
    """The resolved config without what the run does not read.

    Dropped: the option sections of the networks and methods not chosen
    (``model.<other>``, ``algorithm.<other>``), an empty ``options`` mapping (only
    plug-ins read it), and the attack settings when
    ``privacy.enabled`` is false. Every other key stays, defaults included.
    """
    tree = to_dict(config)
    for name in CHOICE_SECTIONS:
        section = tree[name]
        chosen = section["name"]
        # ``algorithm.options`` (a plug-in method's mapping) is a key, not a section.
        sections = [k for k, v in section.items() if isinstance(v, dict) and k != "options"]
        for key in [k for k in sections if k != chosen]:
            del section[key]
        if "options" in section and not section["options"]:
            del section["options"]  # empty: read by no built-in network or method
    if not config.privacy.enabled:
        tree["privacy"] = {"enabled": False}
    return tree


class _ReadableDumper(yaml.SafeDumper):
    """Sections as indented blocks, one key a line; lists on one line (``[128, 128]``)."""


def _flow_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_ReadableDumper.add_representer(list, _flow_list)


def dump_yaml(tree: dict[str, Any]) -> str:
    """A config tree for people to read (``config show``): one key a line, in declaration
    order, lists in flow style. It loads back to the same tree."""
    return yaml.dump(
        tree, Dumper=_ReadableDumper, sort_keys=False, default_flow_style=False, width=100
    )
