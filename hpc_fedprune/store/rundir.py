"""The run directory, owned by one object: created, appended to, checkpointed, resumed, closed.

``DIR/config.yaml`` (the resolved config), ``DIR/metrics.jsonl`` (one line per round),
``DIR/run.h5`` (the record), ``DIR/checkpoint.h5`` and ``DIR/checkpoint.prev.h5``. Only
rank 0 holds a `RunDir`; everything it writes keeps these promises:

- **Completed rounds stay readable, whatever fails later.** HDF5 keeps part of a file's
  metadata in memory until it closes the file, so a write that fails half-way (a full
  disk, a quota, a file-size limit) can leave the whole file unopenable. Before every
  write, `RunDir` therefore reserves the space the write can take in the file itself
  (``posix_fallocate`` past its end; an upper bound from `RunFile.append_bytes`). If the
  file system cannot give it, nothing is written and a `StorageError` names the file and
  the cause. If it can, the write cannot run out of space: HDF5 writes from its own end of
  allocation, inside the reserved range, and cuts the file back to what it uses when it
  closes. Nothing is copied per round, so this costs the same for a history of gigabytes.
- ``metrics.jsonl`` gets its line between the reservation and the HDF5 write, so the two
  hold the same rounds; a line that cannot be written is cut off again.
- **No temporary file stays behind**: ``checkpoint.h5.tmp``, ``run.h5.tmp`` and
  ``metrics.jsonl.tmp`` are removed when writing them fails, and the leftovers of a
  killed process when the run is resumed.
- **Signals never interrupt a write**: a stop signal that arrives during one is handled
  right after it.
- The ``heartbeat`` root attribute is the UTC time of the last write (every completed
  round), so a reader can tell a run that stopped writing from one that is still going.

A file system that copies on write (btrfs, ZFS) can need new space to overwrite old
blocks, which no reservation covers: keep some space free there.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import yaml

from ..config import to_yaml
from ..config.load import ABSENT, config_differences
from ..errors import InputError, StorageError
from .checkpoint import (
    CHECKPOINT,
    Checkpoint,
    latest_checkpoint,
    restore_run_file,
    truncate_jsonl,
    write_checkpoint,
)
from .cost import write_model_cost
from .exploration import (
    EXPLORATION_STATE,
    ExplorationState,
    read_exploration_state,
    write_exploration,
    write_exploration_state,
)
from .runfile import RunFile, utc_now

RUN_FILE = "run.h5"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
# Files a killed process can leave behind; a resume removes them.
TEMPORARY = (
    CHECKPOINT + ".tmp",
    RUN_FILE + ".tmp",
    METRICS_FILE + ".tmp",
    EXPLORATION_STATE + ".tmp",
)
# Signals whose handlers wait until a write is complete (those of sim/signals.py).
_DEFERRED_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
_SMALL_WRITE = 65536  # reservation for attribute updates and the file's creation


class RunDir:
    """Rank 0's handle on one run directory.

    Parameters
    ----------
    path : Path
        The run directory (created by `create`, or holding a run for `resume`).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.run_path = self.path / RUN_FILE
        self.run_file = RunFile(self.run_path)

    # --- a new run -----------------------------------------------------------------------

    def create(self, config, setup, world_size: int, devices: Sequence[str]) -> None:
        """Make the directory with ``config.yaml``, an empty ``metrics.jsonl`` and ``run.h5``.

        ``setup`` is the run's built set-up (its ``dataset``, ``model``, ``algorithm``,
        ``stats`` and ``device`` are recorded). If any of it cannot be written, what was
        made is removed again and a `StorageError` is raised.
        """
        text = to_yaml(config)
        ds = setup.dataset
        attrs = {
            "config": text,
            "seed": config.runtime.seed,
            "world_size": world_size,
            "algorithm": setup.algorithm.name,
            "dataset": ds.name,
            "model": config.model.name,
            "task": ds.task,
            "num_clients": config.partition.num_clients,
            "rounds_planned": config.federation.rounds,
            "device": setup.device,
            "devices": json.dumps(list(devices)),
        }
        made_dir = not self.path.exists()
        made: list[Path] = []
        target = self.path
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for name, content in ((CONFIG_FILE, text), (METRICS_FILE, "")):
                target = self.path / name
                made.append(target)
                target.write_text(content)
            target = self.run_path
            made.append(target)
            with _signals_deferred():
                self.run_file.create(
                    attrs=attrs,
                    layout=setup.model.layout,
                    prunable=_host(setup.algorithm.prunable),
                    partition={k: np.asarray(v) for k, v in setup.stats.items()},
                )
                write_model_cost(self.run_path, setup.cost, ds.input_shape)
        except OSError as exc:
            for path in made:
                path.unlink(missing_ok=True)
            if made_dir:
                _remove_empty(self.path)
            raise StorageError(_cannot_write(target, exc, "the run was not started")) from None

    def write_exploration(self, record: dict) -> None:
        """Write an exploration phase's record as ``/exploration`` (before round 1)."""
        arrays = [np.asarray(v) for v in record["datasets"].values()]
        need = _SMALL_WRITE + sum(2 * a.nbytes + 4096 for a in arrays)
        with self._reserved(need, "the exploration phase was not recorded"):
            write_exploration(self.run_path, record)

    def save_exploration(self, state: ExplorationState) -> None:
        """Keep an exploration phase's finished explorers (``exploration_state.h5``).

        Raises
        ------
        StorageError
            It could not be written; an earlier saved state is as it was.
        """
        try:
            with _signals_deferred():
                write_exploration_state(self.path, state)
        except OSError as exc:
            where = self.path / EXPLORATION_STATE
            done = f"{len(state.clients)} of {len(state.explorers)} explorers"
            raise StorageError(_cannot_write(where, exc, f"{done} not saved")) from None

    def saved_exploration(self) -> ExplorationState | None:
        """The exploration state a stopped run saved (None if there is none)."""
        return read_exploration_state(self.path)

    # --- every round ---------------------------------------------------------------------

    def append_round(
        self,
        metrics: dict[str, float],
        clients: Sequence = (),
        *,
        mask: dict[str, np.ndarray] | None = None,
        layers: dict[str, np.ndarray] | None = None,
        privacy: Sequence[dict] = (),
    ) -> None:
        """Append one completed round to ``run.h5`` and ``metrics.jsonl``.

        Parameters
        ----------
        metrics : dict
            The round's row of ``/metrics`` (its ``round`` entry is the round).
        clients : sequence
            One record per participating client, with attributes ``client`` (id),
            ``bytes_up`` (encoded uplink) and ``mask`` (``{tensor: bool mask}`` or None).
        mask : dict, optional
            The global mask per prunable tensor, when the round records it.
        layers : dict, optional
            Per-layer values of the round (``/metrics_layers``; `RunFile.append_round`).
        privacy : sequence of dict
            Membership-inference rows of the round.

        Raises
        ------
        StorageError
            The round could not be written; the rounds before it are intact.
        """
        rnd = int(metrics["round"])
        uplink = (
            np.full(len(clients), rnd),
            np.array([c.client for c in clients], dtype=np.int64),
            np.array([c.bytes_up for c in clients], dtype=np.int64),
        )
        client_masks = [(rnd, c.client, c.mask) for c in clients if c.mask is not None]
        mask_record = None if mask is None else (rnd, mask)
        need = self.run_file.append_bytes(
            metrics,
            mask_record=mask_record,
            uplink=uplink,
            client_masks=client_masks,
            layers=layers,
            privacy=privacy,
        )
        kept = {1: "", 2: "; round 1 is intact"}.get(rnd, f"; rounds 1-{rnd - 1} are intact")
        lost = f"round {rnd} was not recorded{kept}"
        with self._reserved(need, lost):
            self._append_line(_json_line(metrics), lost)
            self.run_file.append_round(
                metrics,
                mask_record=mask_record,
                uplink=uplink,
                client_masks=client_masks,
                layers=layers,
                privacy=privacy,
            )

    def write_checkpoint(self, state: Checkpoint) -> Path:
        """Write a checkpoint (see `hpc_fedprune.store.checkpoint`); returns its file.

        Raises
        ------
        StorageError
            It could not be written; the temporary file is gone and the earlier
            checkpoints are as they were.
        """
        try:
            with _signals_deferred():
                return write_checkpoint(self.path, state, reserve=reserve)
        except OSError as exc:
            where = self.path / (CHECKPOINT + ".tmp")
            raise StorageError(
                _cannot_write(where, exc, f"no checkpoint after round {state.round}")
            ) from None

    # --- the end -------------------------------------------------------------------------

    def finish(self, weights: np.ndarray, mask: np.ndarray | None, wall_s: float) -> None:
        """Write the final model and mark the run ``finished``."""
        need = RunFile.model_bytes(len(weights), mask is not None)
        with self._reserved(need, "the final model was not recorded"):
            self.run_file.write_model(weights, mask)
            self.run_file.set_attrs(status="finished", wall_s=wall_s, heartbeat=utc_now())
        # A finished run never explores again: the saved phase is no longer needed.
        (self.path / EXPLORATION_STATE).unlink(missing_ok=True)

    def mark(self, status: str) -> bool:
        """Set the status of a run that is ``running`` (``interrupted``, ``failed``).

        Best effort, for paths that are already failing or stopping: never raises, and
        never changes a run that finished. Returns whether the status was written.
        """
        try:
            if not self.run_path.is_file() or self.status() != "running":
                return False
            with self._reserved(_SMALL_WRITE, ""):
                self.run_file.set_attrs(status=status, heartbeat=utc_now())
            return True
        except Exception:  # noqa: BLE001 - a status is not worth a second failure
            return False

    def beat(self) -> None:
        """Refresh the ``heartbeat`` attribute (a long phase without rounds is alive)."""
        with self._reserved(_SMALL_WRITE, ""):
            self.run_file.set_attrs(heartbeat=utc_now())

    def status(self) -> str | None:
        """The ``status`` attribute of ``run.h5`` (None if it cannot be read)."""
        from ..analysis.runfile import load_run

        try:
            return load_run(self.run_path).status
        except InputError:
            return None

    def summary_line(self) -> str:
        """One line at the end of a run: scores, bytes, traffic_vs_dense, time (from run.h5)."""
        from ..analysis.runfile import load_run
        from ..analysis.summary import end_of_run_line

        return end_of_run_line(load_run(self.run_path))

    # --- resume --------------------------------------------------------------------------

    def resume(self, world_size: int) -> tuple[Checkpoint | None, bool]:
        """Put the directory back to its newest intact checkpoint; returns (checkpoint, finished).

        ``finished`` is True (and nothing is touched) for a run that finished. Without a
        checkpoint the run starts again from round 1 in the same directory.

        Raises
        ------
        InputError
            Checkpoint files exist but none is intact, or ``config.yaml`` was edited since
            the run started (the keys that differ are named).
        StorageError
            The run file could not be restored (the directory is as it was).
        """
        for name in TEMPORARY:  # left by a process killed while writing them
            (self.path / name).unlink(missing_ok=True)
        if self.status() == "finished":
            return None, True
        checkpoint = latest_checkpoint(self.path)
        recorded = checkpoint.config if checkpoint is not None else self._recorded_config()
        if recorded is not None:
            self._check_config_unchanged(recorded)
        if checkpoint is None:
            saved = ""
            if (self.path / EXPLORATION_STATE).exists():
                saved = f" (the exploration phase continues from {EXPLORATION_STATE})"
            print(f"no checkpoint in {self.path}: starting again from round 1{saved}", flush=True)
            self.run_path.unlink(missing_ok=True)
            return None, False
        try:
            with _signals_deferred():
                restore_run_file(self.path, checkpoint)
                truncate_jsonl(self.path / METRICS_FILE, checkpoint.round)
        except OSError as exc:
            raise StorageError(_cannot_write(self.run_path, exc, "nothing was resumed")) from None
        with self._reserved(_SMALL_WRITE, "nothing was resumed"):
            resumed = self._recorded("resumed_at")
            self.run_file.set_attrs(
                world_size=world_size,
                resumed_at=np.append(
                    np.zeros(0, np.int64) if resumed is None else resumed, checkpoint.round
                ),
                heartbeat=utc_now(),
            )
        print(
            f"resuming {self.path} after round {checkpoint.round} on {world_size} rank(s)",
            flush=True,
        )
        return checkpoint, False

    def _recorded(self, name: str):
        from ..analysis.runfile import load_run

        value = load_run(self.run_path).attrs.get(name)
        return None if value is None else np.asarray(value, dtype=np.int64).reshape(-1)

    def _recorded_config(self) -> str | None:
        """The config recorded in ``run.h5`` (None when there is no readable run file)."""
        from ..analysis.runfile import load_run

        try:
            text = load_run(self.run_path).attrs.get("config")
        except InputError:
            return None
        return text if isinstance(text, str) else None

    def _check_config_unchanged(self, recorded: str) -> None:
        path = self.path / CONFIG_FILE
        try:
            current = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        changed = config_differences(yaml.safe_load(recorded), current)
        if changed:
            listed = "; ".join(
                f"{key}: {_show(old)} in the run, {_show(new)} in {CONFIG_FILE}"
                for key, old, new in changed
            )
            raise InputError(
                f"{path} differs from the config the run was started with ({listed}); "
                "put it back, or start a new run with --config"
            )

    # --- writing safely ------------------------------------------------------------------

    @contextmanager
    def _reserved(self, nbytes: int, lost: str) -> Iterator[None]:
        """Reserve ``nbytes`` at the end of ``run.h5``, then run the write (signals wait)."""
        with _signals_deferred():
            try:
                reserve(self.run_path, nbytes)
            except OSError as exc:
                raise StorageError(_cannot_write(self.run_path, exc, lost)) from None
            try:
                yield
            except OSError as exc:
                raise StorageError(_cannot_write(self.run_path, exc, lost)) from None

    def _append_line(self, line: str, lost: str) -> None:
        path = self.path / METRICS_FILE
        data = line.encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError as exc:
                os.ftruncate(fd, size)  # no half line
                raise StorageError(_cannot_write(path, exc, lost)) from None
        finally:
            os.close(fd)


def reserve(path: Path, nbytes: int) -> None:
    """Allocate ``nbytes`` past the end of the file ``path`` (raises OSError if impossible).

    HDF5 ignores bytes past its own end of allocation and cuts them off when it closes
    the file, so a reservation needs no undoing once the write succeeded. A failed one
    cuts the file back to its size.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, size, nbytes)
            else:  # no fallocate (macOS): writing zeros reserves the space as well
                os.pwrite(fd, bytes(nbytes), size)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold the stop signals until the block is done, then deliver them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for sig in _DEFERRED_SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not None:  # None: installed outside Python, left alone
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in caught:
            signal.raise_signal(sig)


def _host(array) -> np.ndarray:
    """A numpy copy of a torch tensor (on any device) or of an array."""
    return array.cpu().numpy() if hasattr(array, "cpu") else np.asarray(array)


def _json_line(metrics: dict) -> str:
    row = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in metrics.items()}
    return json.dumps(row) + "\n"


def _cannot_write(path: Path, exc: OSError, lost: str) -> str:
    """``cannot write FILE: CAUSE (what is lost)``: one line, whatever raised."""
    if exc.errno:  # h5py's messages add pages of HDF5 detail around the cause
        cause = os.strerror(exc.errno)
    else:
        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot write {path}: {cause}" + (f" ({lost})" if lost else "")


def _show(value) -> str:
    return "absent" if value is ABSENT else repr(value)


def _remove_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
