"""One real run with the usability features on: overrides on both sides of the options,
TensorBoard scalars equal to the run file's metrics, and the end line's traffic figure."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hpc_fedprune.analysis import load_run, summarize

from .conftest import TINY, cli


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("usability") / "run"
    half = len(TINY) // 2
    proc = cli(
        "run",
        *TINY[:half],
        "--out",
        str(out),
        *TINY[half:],
        "federation.rounds=2",
        "output.tensorboard=true",
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


@pytest.mark.timeout(200)
def test_overrides_after_the_options_apply(run) -> None:
    out, _ = run
    config = load_run(out).attrs["config"]
    assert "rounds: 2" in config and "tensorboard: true" in config
    assert "hidden:\n    - 32" in config or "hidden: [32]" in config


@pytest.mark.timeout(200)
def test_tensorboard_scalars_are_the_run_files_metrics(run) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, _ = run
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    with h5py.File(out / "run.h5", "r") as f:
        metrics = {k: f["metrics"][k][...] for k in f["metrics"]}
    assert set(acc.Tags()["scalars"]) == set(metrics) - {"round"}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2], tag
        np.testing.assert_allclose([e.value for e in events], metrics[tag], rtol=1e-6)


@pytest.mark.timeout(200)
def test_end_line_names_the_traffic_figure(run) -> None:
    out, stdout = run
    done = next(line for line in stdout.splitlines() if line.startswith("done:"))
    figure = summarize(load_run(out)).traffic_vs_dense
    assert f"traffic_vs_dense {figure:.3f}" in done
    assert "x dense" not in done
