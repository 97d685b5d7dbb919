"""Long phases: progress lines with ETAs, the stop acknowledgement, shortened-run warnings.

The stop-and-resume of an exploration phase under MPI is in tests/mpi/test_exploration_stop.py.
"""

from __future__ import annotations

import re
import signal
import types

from hpc_fedprune import faults
from hpc_fedprune.algorithms import make_algorithm
from hpc_fedprune.analysis import load_run
from hpc_fedprune.cli import main
from hpc_fedprune.config import load_config
from hpc_fedprune.exploration import resumable
from hpc_fedprune.models import FlatModel, build_model
from hpc_fedprune.pruning.prunable import prunable_mask
from hpc_fedprune.sim import loop
from hpc_fedprune.sim.progress import ExplorationProgress, RoundProgress, duration_text
from hpc_fedprune.sim.signals import StopFlag
from hpc_fedprune.sim.targets import unreached_target
from hpc_fedprune.store.rundir import RunDir
from tests.e2e.conftest import TINY, assert_same_results, read_run

AUTOFLIP = [
    "algorithm.name=autoflip",
    "algorithm.autoflip.epochs=2",
    "algorithm.autoflip.explorer_fraction=0.25",
    "training.optimizer=adam",
    "training.lr=0.01",
]


class FakeClock:
    """A clock that moves only when told (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- shortened runs ------------------------------------------------------------------------


def algorithm(*overrides: str):
    config = load_config(None, list(overrides))
    model = FlatModel(build_model("small_cnn", (1, 12, 12), 4, seed=0))
    section = getattr(config.algorithm, config.algorithm.name, None)
    preset = getattr(section, "prunable", "all_trainable")
    prunable = prunable_mask(model.layout, preset)
    return make_algorithm(config, prunable, model.trainable_mask(), model.layout)


def warning(rounds: int, *overrides: str) -> str | None:
    return unreached_target(algorithm(f"federation.rounds={rounds}", *overrides), rounds)


def test_feddip_with_five_rounds_stays_at_s0_and_says_so():
    # k = 5: the only re-pruning round up to 5 is round 1, at t = 0: s_0 = 0.5.
    line = warning(5, "algorithm.name=feddip")
    assert line is not None and line.startswith("warning: feddip")
    assert "sparsity 0.5 by round 5" in line and "target 0.9" in line
    # Round 11 re-prunes at the default end (t = 10): s_T itself, no warning.
    assert warning(11, "algorithm.name=feddip") is None
    # The authors' end_round = rounds + 1: at t = 95 of T = 100 the cubic is
    # 0.9 - 0.4 * 0.05**3 = 0.89995, just short of the target.
    line = warning(100, "algorithm.name=feddip", "algorithm.feddip.end_round=101")
    assert "sparsity 0.89995 by round 100" in line
    assert warning(5, "algorithm.name=feddip", "algorithm.feddip.mode=reg_only") is None


def test_fedsparsify_stretches_unless_its_end_round_is_set():
    assert warning(5, "algorithm.name=fedsparsify") is None  # ends at the last round
    # end_round 10, t0 = 1: 0.9 * (1 - (1 - 4/9)**3) = 0.9 * 604/729 = 0.745679...
    line = warning(5, "algorithm.name=fedsparsify", "algorithm.fedsparsify.end_round=10")
    assert "sparsity 0.745679 by round 5" in line
    # The run ends before the first pruning (after round t0 = 5).
    line = warning(5, "algorithm.name=fedsparsify", "algorithm.fedsparsify.start_round=5")
    assert "sparsity 0 by round 5" in line


def test_prunefl_without_a_reconfiguration_keeps_its_initial_sparsity():
    line = warning(5, "algorithm.name=prunefl")  # k = 50: no reconfiguration by round 5
    assert "sparsity 0.5 by round 5" in line and "target 0.9" in line
    assert warning(50, "algorithm.name=prunefl") is None  # round 50 reconfigures at s_f


def test_methods_without_a_growing_schedule_never_warn():
    for name in ("fedavg", "snip", "random_mask", "autoflip", "feddst", "topk"):
        assert warning(2, f"algorithm.name={name}") is None, name


def test_the_warning_is_printed_once_at_start(tmp_path, capsys):
    code = main(["run", "--out", str(tmp_path / "r"), *TINY, "federation.rounds=2",
                 "algorithm.name=prunefl", "output.progress=false"])  # fmt: skip
    assert code == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1 and "prunefl's schedule reaches sparsity 0.5 by round 2" in err[0]


# --- progress lines ------------------------------------------------------------------------


def test_round_progress_is_throttled_and_estimates_the_rest_of_the_round(capsys):
    clock = FakeClock()
    progress = RoundProgress(3, 50, clients=10, enabled=True, clock=clock)
    clock.now += 4
    assert progress.client_done() is None  # 4 s: not yet
    clock.now += 8
    line = progress.client_done(2)  # 3 clients in 12 s: 4 s each, 7 left
    assert line == "round 3/50: 3/10 clients of rank 0 trained, 4.0 s per client, round ETA 28 s"
    clock.now += 5
    assert progress.client_done() is None  # 5 s after the last line
    clock.now += 100
    assert progress.client_done(6) is None  # the round's last client: the round line follows
    assert capsys.readouterr().out.count("\n") == 1
    assert RoundProgress(1, 2, 3, enabled=False, clock=clock).client_done(1) is None


def test_exploration_progress_per_explorer_and_per_slow_epoch():
    clock = FakeClock()
    progress = ExplorationProgress(20, 4, 8, 2, 150, True, clock=clock)
    assert progress.begin() == (
        "exploration: 20 explorers, 4 saved earlier, up to 150 epochs each, "
        "on 2 rank(s); rank 0 trains 8"
    )
    progress.begin_explorer()
    clock.now += 11
    assert progress.epoch_done(5, 10) == (
        "exploration: client 5 epoch 10/150 (1.1 s per epoch), explorer 1/8 of rank 0"
    )
    clock.now += 19
    # 30 s per explorer, 7 left: 210 s.
    assert progress.explorer_done(5, 27) == (
        "exploration: explorer 1/8 of rank 0 done (client 5, 27 epochs), 30.0 s per "
        "explorer, ETA 4 min"
    )
    progress.begin_explorer()
    clock.now += 5
    assert progress.epoch_done(9, 1) is None  # throttled: 5 s after the last line


def test_durations_read_as_seconds_minutes_or_hours():
    assert [duration_text(s) for s in (42, 600, 9000)] == ["42 s", "10 min", "2.5 h"]


def test_stop_is_acknowledged_with_what_the_run_finishes_first():
    stop = StopFlag()
    stop.signum = signal.SIGTERM
    expected = "SIGTERM received: stopping after this round (checkpoint, then exit 75)"
    assert stop.announce() == expected
    stop.after = "the exploration step in progress"
    assert "stopping after the exploration step in progress" in stop.announce()


def fake_time(offset: list[float]):
    """A stand-in for the loop's ``time`` module, ``offset[0]`` seconds ahead of the real one."""
    import time

    return types.SimpleNamespace(perf_counter=lambda: time.perf_counter() + offset[0])


def test_round_eta_leaves_the_exploration_time_out(tmp_path, capsys, monkeypatch):
    # The exploration phase "takes" a million seconds (the loop's clock jumps during it):
    # the ETA of round 1 of 3 must come from the rounds alone.
    offset = [0.0]
    explore = loop.explore

    def slow_explore(*args, **kwargs):
        offset[0] += 1e6
        return explore(*args, **kwargs)

    monkeypatch.setattr(loop, "time", fake_time(offset))
    monkeypatch.setattr(loop, "explore", slow_explore)
    code = main(["run", "--out", str(tmp_path / "r"), *TINY, *AUTOFLIP, "output.progress=true"])
    assert code == 0
    out = capsys.readouterr().out
    assert "exploration: 2 explorers" in out  # the phase's own lines
    eta = re.search(r"^round 1/3 .* ETA (\d+) s$", out, re.M)
    assert eta is not None, out
    assert int(eta.group(1)) < 1e5


def test_a_long_round_prints_progress_inside_it(tmp_path, capsys, monkeypatch):
    # Every client "takes" 11 s: rank 0 reports inside the round (not after its last client).
    class SlowClients(RoundProgress):
        def __init__(self, *args, **kwargs):
            clock = FakeClock()
            super().__init__(*args, clock=clock, **kwargs)
            self.fake = clock

        def client_done(self, count=1):
            self.fake.now += 11 * count
            return super().client_done(count)

    monkeypatch.setattr(loop, "RoundProgress", SlowClients)
    code = main(["run", "--out", str(tmp_path / "r"), *TINY, "federation.rounds=1"])
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "clients of rank 0" in line]
    assert lines[0] == (
        "round 1/1: 1/5 clients of rank 0 trained, 11.0 s per client, round ETA 44 s"
    )
    assert len(lines) == 4  # after clients 1-4; the round's line follows the 5th


def test_output_progress_false_silences_the_lines_and_the_phase_keeps_the_heartbeat(
    tmp_path, capsys, monkeypatch
):
    # The exploration refreshes run.h5's heartbeat (here at every chance: no minute to
    # wait), while the file exists and holds no round yet.
    beats = []
    beat = RunDir.beat

    def spy(self):
        beat(self)
        beats.append(load_run(self.run_path).rounds_done)

    monkeypatch.setattr(resumable, "HEARTBEAT_S", 0.0)
    monkeypatch.setattr(RunDir, "beat", spy)
    code = main(["run", "--out", str(tmp_path / "r"), *TINY, *AUTOFLIP, "output.progress=false"])
    assert code == 0
    out = capsys.readouterr().out
    assert "exploration:" not in out and "round 1/3" not in out
    # 2 explorers on one rank, 2 epochs each: a beat per epoch and per step.
    assert len(beats) == 6 and set(beats) == {0}


def test_a_run_that_fails_in_round_2_does_not_explore_again(tmp_path, capsys, monkeypatch):
    # The complete phase is saved before round 1: a run that dies before its first
    # checkpoint restarts from round 1 with the saved explorers, to the same bits.
    args = [*TINY, *AUTOFLIP, "output.progress=true", "output.checkpoint_every=0"]
    assert main(["run", "--out", str(tmp_path / "ref"), *args]) == 0
    reference = read_run(tmp_path / "ref" / "run.h5")
    monkeypatch.setattr(faults, "FAULT", {"point": "train", "rank": "0", "round": "2"})
    assert main(["run", "--out", str(tmp_path / "r"), *args]) == 1  # an internal error
    assert (tmp_path / "r" / "exploration_state.h5").exists()
    monkeypatch.setattr(faults, "FAULT", None)
    capsys.readouterr()
    assert main(["run", "--resume", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "exploration: 2 explorers, 2 saved earlier" in out and "rank 0 trains 0" in out
    assert "done (client" not in out  # no explorer trained again
    assert_same_results(reference, read_run(tmp_path / "r" / "run.h5"))
    assert not (tmp_path / "r" / "exploration_state.h5").exists()
