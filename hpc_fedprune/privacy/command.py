"""``privacy RUN``: attack the saved final model of an existing run, without retraining.

The run's own config (the ``config`` attribute of its ``run.h5``) rebuilds the data,
the partition with its held-out slice and the model; ``/model/flat`` is loaded and both
attacks run exactly as the loop runs them after the last round, so with unchanged
settings the rows equal the run's own last ``/privacy`` rows. Only the attack settings
may be changed (``privacy.samples``, ``privacy.shadow_models``, ``privacy.shadow_samples``,
``privacy.shadow_epochs``): anything else would rebuild a federation other than the one
that trained the model.

The rows go to a separate file (default ``RUN/privacy.h5``, same ``/privacy`` layout),
which is rewritten each time: the run file stays the record of what the run itself did.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import h5py
import numpy as np
import yaml

from ..analysis.runfile import load_run
from ..config import Config, to_yaml
from ..config.load import (
    build,
    check_consistency,
    load_raw_plugins,
    parse_override,
    set_dotted,
)
from ..errors import InputError
from ..sim.setup import build_setup, to_device
from ..store import RunFile
from . import PrivacyEvaluator

CHANGEABLE = ("samples", "shadow_models", "shadow_samples", "shadow_epochs")


def run_file_path(path: str | Path) -> Path:
    """The ``run.h5`` of a run directory (or the file itself); InputError if absent."""
    p = Path(path)
    p = p / "run.h5" if p.is_dir() else p
    if not p.is_file():
        raise InputError(f"no run file at {p}")
    return p


def read_saved_run(path: Path, overrides: list[str]) -> tuple[Config, np.ndarray, int]:
    """The run's config (with attack-setting overrides), final weights and last round."""
    run = load_run(path)  # bounded reads; InputError for a damaged or foreign file
    text = run.attrs.get("config")
    model = run.final_model()
    rounds_done = int(run.attrs.get("rounds_done", 0))
    if not isinstance(text, str):
        raise InputError(f"{path} holds no config attribute: not a run file of this program")
    if model is None:
        raise InputError(f"{path} holds no final model (/model/flat): the run did not finish")
    weights = model[0]
    raw = yaml.safe_load(text) or {}
    for item in overrides:
        key, value = parse_override(item)
        section, _, name = key.partition(".")
        if section != "privacy" or name not in CHANGEABLE:
            raise InputError(
                f"privacy: {key} cannot be changed for a trained run; "
                f"only privacy.{', privacy.'.join(CHANGEABLE)}"
            )
        set_dotted(raw, key, value)
    load_raw_plugins(raw)  # the run's own plug-ins: its method, network or data set
    config = build(Config, raw, "")
    check_consistency(config)
    if not config.privacy.enabled:
        raise InputError(
            f"{path} was run without privacy.enabled: no non-members were held out from "
            "its clients, so membership cannot be measured"
        )
    return config, weights, rounds_done


def evaluate_saved_run(world, run: str, out: str | None, overrides: list[str], device_of):
    """Collective: attack the run's final model; rank 0 writes and returns the rows.

    ``device_of(config)`` picks this rank's torch device. Returns (output path, rows) on
    rank 0, (None, None) elsewhere.
    """
    error = None
    config = weights = rounds_done = setup = out_path = None
    try:
        path = run_file_path(run)
        config, weights, rounds_done = read_saved_run(path, overrides)
        out_path = Path(out) if out else path.parent / "privacy.h5"
        setup = build_setup(config, world.size, device_of(config))
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)
    ds = setup.dataset
    x, y = to_device(ds.x_train, setup.device), to_device(ds.y_train, setup.device)
    evaluator = PrivacyEvaluator.from_setup(config, setup, x, y)
    rows = evaluator.evaluate(setup.model, to_device(weights, setup.device), rounds_done, world)
    if not world.is_root:
        return None, None
    with h5py.File(out_path, "w") as f:
        f.attrs["run"] = str(path)
        f.attrs["round"] = rounds_done
        f.attrs["config"] = to_yaml(config)
        f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    RunFile(out_path).append_privacy(rows)
    return out_path, rows
