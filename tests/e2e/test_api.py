"""The Python API: `hpc_fedprune.run` in this process, against the run file and the CLI.

One run through the API (a config given as a mapping) is shared by the tests of the
outcome; one launch of the command line with the same settings as overrides checks that
both write the same bits.
"""

from __future__ import annotations

import signal
import threading

import h5py
import numpy as np
import pytest
import yaml

import hpc_fedprune
from hpc_fedprune import InputError, faults
from hpc_fedprune.config import load_config, to_dict
from hpc_fedprune.config.load import parse_override, set_dotted

from .conftest import TINY, cli

QUIET = [*TINY, "output.progress=false"]


def as_mapping(overrides: list[str]) -> dict:
    """The nested mapping that a list of ``key=value`` overrides describes."""
    tree: dict = {}
    for text in overrides:
        set_dotted(tree, *parse_override(text))
    return tree


def file_metrics(path) -> dict[str, np.ndarray]:
    """``/metrics`` of a run file read with h5py alone (not through the package's reader)."""
    with h5py.File(path, "r") as f:
        return {name: f["metrics"][name][...] for name in f["metrics"]}


@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    outcome = hpc_fedprune.run(as_mapping(QUIET), out=out)
    return out, outcome


@pytest.mark.timeout(120)
def test_outcome_is_the_last_row_of_the_run_file(api_run):
    out, outcome = api_run
    assert outcome.path == out and outcome.run_file == out / "run.h5"
    assert outcome.rounds == 3 and not outcome.stopped
    metrics = file_metrics(out / "run.h5")
    assert set(outcome.metrics) == set(metrics)
    for name, column in metrics.items():
        assert len(column) == 3
        assert outcome.metrics[name] == column[-1], name
    assert outcome.metrics["round"] == 3 and outcome.metrics["clients"] == 5
    with h5py.File(out / "run.h5", "r") as f:
        assert f.attrs["status"] == "finished"


@pytest.mark.timeout(120)
def test_outcome_loads_the_run_file_as_columns(api_run):
    out, outcome = api_run
    run = outcome.load()
    assert run.path == out / "run.h5"
    metrics = file_metrics(out / "run.h5")
    assert list(run.metrics)[0] == "round" and set(run.metrics) == set(metrics)
    for name, column in metrics.items():
        np.testing.assert_array_equal(run.metrics[name], column)
    assert run.row(0)["round"] == 1 and run.row() == outcome.metrics


@pytest.mark.timeout(120)
def test_bad_config_raises_input_error_naming_the_key(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(InputError, match=r"unknown config key 'federation\.round'"):
        hpc_fedprune.run({"federation": {"round": 2}}, out=out)
    with pytest.raises(InputError, match=r"training\.lr: nan is not a finite number"):
        hpc_fedprune.run(None, out=out, overrides=["training.lr=nan"])
    with pytest.raises(InputError, match="expected a list of 'key.sub=value' strings"):
        hpc_fedprune.run(None, out=out, overrides="federation.rounds=2")
    with pytest.raises(InputError, match="expected a YAML file's path, a mapping or a Config"):
        hpc_fedprune.run(42, out=out)
    assert not out.exists()


@pytest.mark.timeout(120)
def test_an_existing_run_is_refused_and_a_finished_one_not_resumed(api_run):
    out, outcome = api_run
    before = (out / "run.h5").read_bytes()
    with pytest.raises(InputError, match="already holds a run"):
        hpc_fedprune.run(as_mapping(QUIET), out=out)
    with pytest.raises(InputError, match="takes the run's own config"):
        hpc_fedprune.run({}, resume=out)
    again = hpc_fedprune.run(resume=out)
    assert again.rounds == 3 and again.metrics == outcome.metrics and not again.stopped
    assert (out / "run.h5").read_bytes() == before


def test_a_path_a_mapping_and_a_config_are_the_same_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(as_mapping(TINY)))
    from_file = load_config(path, ["federation.rounds=7"])
    mapping = as_mapping(TINY)
    from_mapping = load_config(mapping, ["federation.rounds=7"])
    assert mapping == as_mapping(TINY)  # the caller's mapping is left as it was
    from_config = load_config(load_config(path), ["federation.rounds=7"])
    assert from_file == from_mapping == from_config
    assert from_file.federation.rounds == 7 and from_file.data.num_train == 400
    assert to_dict(load_config(from_file)) == to_dict(from_file)


@pytest.mark.timeout(200)
def test_api_and_command_line_write_the_same_bits(api_run, tmp_path):
    api_out, _ = api_run
    cli_out = tmp_path / "cli"
    proc = cli("run", "--out", str(cli_out), *QUIET)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(api_out / "run.h5", "r") as a, h5py.File(cli_out / "run.h5", "r") as b:
        assert a["model/flat"][...].tobytes() == b["model/flat"][...].tobytes()
        assert set(a["metrics"]) == set(b["metrics"])
        for name in a["metrics"]:
            if name != "wall_s":  # the clock
                assert a["metrics"][name][...].tobytes() == b["metrics"][name][...].tobytes()
        assert a.attrs["config"] == b.attrs["config"]
    assert (api_out / "config.yaml").read_text() == (cli_out / "config.yaml").read_text()


class Guard:
    """A SIGTERM handler that records the signal instead of ending pytest."""

    def __init__(self) -> None:
        self.caught: list[int] = []

    def __call__(self, signum, frame) -> None:
        self.caught.append(signum)


@pytest.fixture
def sigterm_guard():
    """`Guard` as SIGTERM's handler for the time of a test."""
    guard = Guard()
    previous = signal.signal(signal.SIGTERM, guard)
    yield guard
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.timeout(200)
def test_a_stop_signal_ends_the_run_after_the_round_and_resume_finishes_it(
    api_run, tmp_path, monkeypatch, sigterm_guard
):
    reference, _ = api_run
    out = tmp_path / "run"
    # SIGTERM to this process in round 2 (before its reduction), as Slurm sends before a
    # time limit.
    monkeypatch.setattr(faults, "FAULT", faults._parse("rank=0,round=2,point=reduce,action=term"))
    stopped = hpc_fedprune.run(as_mapping(QUIET), out=out)
    assert sigterm_guard.caught == []  # the run's own handler took it
    assert signal.getsignal(signal.SIGTERM) is sigterm_guard  # and then put this one back
    assert stopped.stopped and stopped.rounds == 2 and stopped.metrics["round"] == 2
    assert (out / "checkpoint.h5").exists()
    monkeypatch.setattr(faults, "FAULT", None)
    resumed = hpc_fedprune.run(resume=out)
    assert resumed.rounds == 3 and not resumed.stopped
    a, b = file_metrics(reference / "run.h5"), file_metrics(out / "run.h5")
    for name in set(a) - {"wall_s"}:
        assert a[name].tobytes() == b[name].tobytes(), name


@pytest.mark.timeout(200)
def test_from_another_thread_no_handler_is_installed(tmp_path, monkeypatch, sigterm_guard):
    # Python allows signal handlers only in the main thread: the run leaves them alone, and
    # the signal reaches the handler the program had (here the guard), not the run.
    monkeypatch.setattr(faults, "FAULT", faults._parse("rank=0,round=2,point=reduce,action=term"))
    result: dict = {}

    def work() -> None:
        try:
            result["outcome"] = hpc_fedprune.run(as_mapping(QUIET), out=tmp_path / "run")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    while thread.is_alive():
        thread.join(0.05)  # the main thread runs Python handlers between these waits
    assert "error" not in result, result.get("error")
    assert result["outcome"].rounds == 3 and not result["outcome"].stopped
    assert sigterm_guard.caught == [signal.SIGTERM]
