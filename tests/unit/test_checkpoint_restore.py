"""Checkpoints record run.h5 instead of copying it; a resume cuts run.h5 back to them.

- a checkpoint holds no history: its size does not grow with the rounds recorded;
- resuming makes run.h5 what a run that stopped at the checkpoint's round wrote
  (every dataset and attribute compared with such a run, written independently), with
  the objects made after the round gone;
- a run.h5 that lacks recorded rows, and a checkpoint of the earlier layout (a snapshot
  of run.h5), are refused with one line.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hpc_fedprune.analysis import load_run
from hpc_fedprune.errors import InputError
from hpc_fedprune.store.checkpoint import latest_checkpoint
from hpc_fedprune.store.rundir import RunDir
from tests.unit.rundir_workload import NUMEL, round_record, write_run

# Set per write or launch, so they differ between any two runs.
VOLATILE_ATTRS = {"created", "heartbeat", "status", "wall_s", "world_size", "resumed_at"}


def _stopped_after(out, stop: int, rounds: int, every: int):
    """``out`` holding a run of ``rounds`` rounds stopped after round ``stop``."""

    def stop_here(run_dir):
        if load_run(out).rounds_done == stop:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_run(out, rounds, checkpoint_every=every, on_round=stop_here)
    return out


def _contents(path) -> dict:
    """Every object of an HDF5 file: datasets' dtype, shape and bytes, and attributes."""
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            attrs = {k: repr(obj.attrs[k]) for k in sorted(obj.attrs)}
            if isinstance(obj, h5py.Dataset):
                values = obj[...]
                data = values.tolist() if values.dtype.kind == "O" else values.tobytes()
                out[name] = (obj.dtype.str, obj.shape, data, attrs)
            else:
                out[name] = ("group", attrs)

        f.visititems(visit)
        out["/"] = {k: repr(f.attrs[k]) for k in sorted(f.attrs) if k not in VOLATILE_ATTRS}
    return out


def test_a_checkpoint_holds_no_history(tmp_path):
    early = _stopped_after(tmp_path / "early", 6, 100, 5)  # checkpoint after round 5
    late = _stopped_after(tmp_path / "late", 61, 100, 30)  # checkpoint after round 60
    run_early, run_late = (early / "run.h5").stat().st_size, (late / "run.h5").stat().st_size
    ck_early = (early / "checkpoint.h5").stat().st_size
    ck_late = (late / "checkpoint.h5").stat().st_size
    assert run_late - run_early > 250_000  # 55 more rounds of masks in run.h5 ...
    assert abs(ck_late - ck_early) < 8_000  # ... and none of them in the checkpoint
    with h5py.File(late / "checkpoint.h5", "r") as f:
        assert sorted(f) == ["checkpoint"]
        rows = dict(zip(f["checkpoint/run/paths"][...], f["checkpoint/run/rows"][...]))
    assert rows[b"metrics/round"] == 60 and rows[b"masks/rounds"] == 60
    assert rows[b"clients/uplink/client"] == 60 * 4  # four clients a round
    assert rows[b"masks"] == -1 and rows[b"model/prunable"] == -1  # not growing


def test_resume_makes_run_h5_that_of_the_checkpoint_round(tmp_path):
    # Checkpoints after rounds 5 and 10 (the newest); rounds 11-13 recorded after it,
    # /privacy (round 14) too, then the run stops before its next checkpoint.
    stopped = _stopped_after(tmp_path / "stopped", 14, 30, 5)
    with h5py.File(stopped / "run.h5", "r") as f:
        assert "privacy" in f and len(f["metrics/round"]) == 14
    checkpoint, _ = RunDir(stopped).resume(2)
    assert checkpoint.round == 10
    # The same workload run to round 10 only (and finished, which adds /model/flat, /mask).
    reference = tmp_path / "reference"
    write_run(reference, 10, checkpoint_every=5)
    expected, got = _contents(reference / "run.h5"), _contents(stopped / "run.h5")
    for name in ("model/flat", "model/mask"):
        del expected[name]
    assert got.keys() == expected.keys()  # /privacy (round 14) is gone
    for name in expected:
        assert got[name] == expected[name], name
    run = load_run(stopped)
    assert run.status == "running" and list(run.attrs["resumed_at"]) == [10]
    # A growing dataset still grows: the next round appends after row 10.
    write_run_dir = RunDir(stopped)
    write_run_dir.append_round({"round": 11, "test_accuracy": 0.5})
    with h5py.File(stopped / "run.h5", "r") as f:
        assert f["metrics/round"][...].tolist() == list(range(1, 12))


def test_a_run_file_shorter_than_its_checkpoint_is_refused(tmp_path):
    out = _stopped_after(tmp_path / "run", 6, 30, 5)
    with h5py.File(out / "run.h5", "a") as f:
        f["metrics/round"].resize(4, axis=0)
    before = (out / "run.h5").read_bytes()
    with pytest.raises(InputError, match="metrics/round has 4 rows, its checkpoint recorded 5"):
        RunDir(out).resume(1)
    assert (out / "run.h5").read_bytes() == before and not (out / "run.h5.tmp").exists()


def test_a_checkpoint_of_the_earlier_layout_is_refused_in_one_line(tmp_path):
    out = _stopped_after(tmp_path / "run", 6, 30, 5)
    with h5py.File(out / "checkpoint.h5", "a") as f:
        del f["checkpoint"].attrs["format"]  # format 1 had no such attribute
    with pytest.raises(InputError) as e:
        latest_checkpoint(out)
    message = str(e.value)
    assert "\n" not in message and "checkpoint of format 1" in message
    assert "start the run again" in message


def test_client_state_rows_round_trip_in_chunks(tmp_path):
    out = _stopped_after(tmp_path / "run", 6, 30, 5)  # checkpoint after round 5
    checkpoint = latest_checkpoint(out)
    assert checkpoint.client_count() == 8 and checkpoint.client_arrays() == ["residual"]
    chunks = list(checkpoint.client_chunks(max_bytes=3 * (8 + 640 * 4)))
    assert [sorted(c) for c in chunks] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    # write_run draws the residuals after round 5's record: the same draws again.
    rng = np.random.default_rng(0)
    for rnd in range(1, 6):
        round_record(rnd, rng)
    rng.standard_normal(NUMEL)  # the momentum
    expected = {c: rng.standard_normal(640).astype(np.float32) for c in range(8)}
    for chunk in chunks:
        for c, state in chunk.items():
            assert state["residual"].tobytes() == expected[c].tobytes()


def test_a_missing_run_file_is_one_line(tmp_path):
    out = _stopped_after(tmp_path / "run", 6, 30, 5)
    (out / "run.h5").unlink()
    with pytest.raises(InputError) as e:
        RunDir(out).resume(1)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"cannot read {out / 'run.h5'} to resume")
    assert "No such file or directory" in message
