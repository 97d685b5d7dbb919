"""The run directory's promises (hpc_fedprune/store/rundir.py), without a simulation.

- every write reserves at least the space it takes, so a full disk stops a run before a
  write, never in the middle of one;
- under a file-size limit or on a full tmpfs, whatever the point where space runs out,
  every completed round stays readable, run.h5 and metrics.jsonl agree, the error is one
  line naming the file, and no temporary file is left;
- stop signals wait until a write is complete;
- resume refuses an edited config.yaml (naming the keys) and removes leftovers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from hpc_fedprune.analysis import load_run
from hpc_fedprune.errors import InputError, StorageError
from hpc_fedprune.store import rundir as rundir_module
from hpc_fedprune.store import runfile as runfile_module
from hpc_fedprune.store.checkpoint import read_checkpoint
from hpc_fedprune.store.rundir import RunDir
from tests.helpers import REPO, child_env, mounted_tmpfs
from tests.unit.rundir_workload import round_record, write_run


def test_reservations_bound_what_each_write_adds(tmp_path, monkeypatch):
    """New datasets, new chunks, splits of chunk indexes (K = 32), checkpoints, the end.

    Metrics get chunks of 2 rows instead of 256 so that 70 rounds cross many chunk
    boundaries; masks have one chunk per row, so their indexes split within 70 rounds.
    """
    monkeypatch.setattr(runfile_module, "METRIC_CHUNK_ROWS", 2)
    real_reserve = rundir_module.reserve
    pending = {}  # path -> (size before the write, bytes reserved)
    checked = []

    def settle(path):
        if path in pending and path.exists():
            before, reserved = pending.pop(path)
            checked.append((path.name, os.path.getsize(path) - before, reserved))

    def reserve(path, nbytes):
        settle(path)  # the previous write to this file is complete
        pending[path] = (os.path.getsize(path), nbytes)
        real_reserve(path, nbytes)

    real_write = rundir_module.write_checkpoint

    def write_checkpoint(out_dir, state, reserve):
        final = real_write(out_dir, state, reserve=reserve)
        before, reserved = pending.pop(out_dir / "checkpoint.h5.tmp")
        checked.append((final.name, os.path.getsize(final) - before, reserved))
        return final

    monkeypatch.setattr(rundir_module, "reserve", reserve)
    monkeypatch.setattr(rundir_module, "write_checkpoint", write_checkpoint)
    out = tmp_path / "run"
    write_run(out, 70, checkpoint_every=30)
    settle(out / "run.h5")
    assert len(checked) > 70
    over = [(name, grew, reserved) for name, grew, reserved in checked if grew > reserved]
    assert not over, over[:5]
    # The bound is not vacuous: some writes take most of what they reserve.
    assert max(grew / reserved for _, grew, reserved in checked) > 0.5


def _sweep(tmp_path, checkpoint_every, limits, rounds=30):
    """Run the workload under each file-size limit in a child process; its JSON lines."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.unit.rundir_workload",
            str(tmp_path),
            str(rounds),
            str(checkpoint_every),
            *map(str, limits),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr.strip(), proc.stderr  # no HDF5 noise: nothing failed mid-write
    return [json.loads(line) for line in proc.stdout.splitlines()]


def assert_intact(out, rounds: int) -> None:
    """Rounds 1..rounds readable in run.h5 and metrics.jsonl alike; no temporary file."""
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    run = load_run(out)
    assert list(run.metrics.get("round", [])) == list(range(1, rounds + 1))
    assert run.attrs["rounds_done"] == rounds
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == list(range(1, rounds + 1))
    if rounds:
        assert len(list(run.iter_masks())) == rounds
    for name in ("checkpoint.h5", "checkpoint.prev.h5"):
        if (out / name).exists():
            assert read_checkpoint(out / name).round <= rounds


@pytest.mark.timeout(180)
def test_a_file_size_limit_loses_no_completed_round(tmp_path):
    results = _sweep(tmp_path / "plain", 0, [10_000, 100_000, 170_000, 200_000, 260_000])
    results += _sweep(tmp_path / "ckpt", 4, [200_000, 290_000])
    stopped_at = set()
    for r in results:
        out = tmp_path / ("plain" if r in results[:5] else "ckpt") / str(r["limit"])
        assert r["error"] is not None, r  # every limit is reached before round 30
        assert r["error"].startswith(f"cannot write {out}/") and "\n" not in r["error"]
        assert "File too large" in r["error"]
        if not out.exists():  # only a run that could not even start leaves nothing
            assert r["rounds"] == 0 and "the run was not started" in r["error"]
            stopped_at.add("create")
            continue
        assert_intact(out, r["rounds"])
        stopped_at.add("checkpoint" if "checkpoint.h5.tmp" in r["error"] else "round")
    assert stopped_at == {"create", "round", "checkpoint"}


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 300 kB tmpfs (root only; skipped where mounting is not allowed)."""
    with mounted_tmpfs(tmp_path / "tmpfs", "size=300k") as mount:
        yield mount


def test_a_full_tmpfs_loses_no_completed_round(small_tmpfs):
    out = small_tmpfs / "run"
    recorded = []
    with pytest.raises(StorageError) as e:
        write_run(out, 100, checkpoint_every=5, on_round=lambda d: recorded.append(1))
    message = str(e.value)
    assert message.startswith(f"cannot write {out}/") and "No space left on device" in message
    assert recorded  # the disk filled up in the middle of the run
    assert_intact(out, len(recorded))


def test_stop_signals_wait_until_the_write_is_complete(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_dir = RunDir(out)
    write_run(out, 0, on_round=None)  # created and finished with no rounds: reuse the file
    with h5py.File(out / "run.h5", "a") as f:
        f.attrs["status"] = "running"
    handled = []
    real_append = run_dir.run_file.append_round

    def append_and_get_signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGUSR1)  # as if Slurm signalled in the middle
        real_append(*args, **kwargs)
        assert handled == []  # not while the file is open

    monkeypatch.setattr(run_dir.run_file, "append_round", append_and_get_signalled)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: handled.append(signum))
    try:
        metrics, clients, mask, privacy = round_record(1, np.random.default_rng(1))
        run_dir.append_round(metrics, clients, mask=mask)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert handled == [signal.SIGUSR1]  # delivered right after the write


def test_mark_changes_only_a_running_run(tmp_path):
    out = tmp_path / "run"
    write_run(out, 2)  # finished
    assert not RunDir(out).mark("interrupted")
    assert load_run(out).status == "finished"
    with h5py.File(out / "run.h5", "a") as f:
        f.attrs["status"] = "running"
    assert RunDir(out).mark("interrupted")
    assert load_run(out).status == "interrupted"
    assert not RunDir(tmp_path / "nothing").mark("failed")  # never raises


@pytest.fixture
def stopped_run(tmp_path):
    """A run directory stopped after round 6 with checkpoints at rounds 4 (and none before)."""
    out = tmp_path / "run"

    def stop_after_six(run_dir):
        if load_run(out).rounds_done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_run(out, 10, checkpoint_every=4, on_round=stop_after_six)
    return out


def test_resume_refuses_an_edited_config_naming_the_keys(stopped_run):
    path = stopped_run / "config.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["training"]["lr"] = 0.5
    raw["federation"]["rounds"] = 77
    del raw["partition"]  # left out: every key takes its default, as recorded
    path.write_text(yaml.safe_dump(raw))
    before = (stopped_run / "run.h5").read_bytes()
    with pytest.raises(InputError) as e:
        RunDir(stopped_run).resume(1)
    message = str(e.value)
    assert "training.lr: 0.1 in the run, 0.5 in config.yaml" in message
    assert "federation.rounds: 5 in the run, 77 in config.yaml" in message
    assert "partition" not in message
    assert (stopped_run / "run.h5").read_bytes() == before  # nothing touched


def test_resume_restores_the_checkpoint_and_removes_leftovers(stopped_run):
    (stopped_run / "checkpoint.h5.tmp").write_bytes(b"half a checkpoint")
    (stopped_run / "run.h5.tmp").write_bytes(b"half a run file")
    checkpoint, finished = RunDir(stopped_run).resume(3)
    assert not finished and checkpoint.round == 4
    assert not list(stopped_run.glob("*.tmp"))
    run = load_run(stopped_run)
    assert list(run.metrics["round"]) == [1, 2, 3, 4] and run.status == "running"
    assert run.attrs["world_size"] == 3 and run.attrs["resumed_at"] == [4]
    with h5py.File(stopped_run / "run.h5", "r") as f:
        assert "checkpoint" not in f
    assert len((stopped_run / "metrics.jsonl").read_text().splitlines()) == 4
