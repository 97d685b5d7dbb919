"""The client-state store: exact storage, the memory budget, LRU spill to disk and back,
checkpoint round trip, and the home-rank coordinator on one rank."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hpc_fedprune.client_state.homes import ClientStates
from hpc_fedprune.client_state.store import ClientStateStore
from hpc_fedprune.errors import InputError
from hpc_fedprune.store.checkpoint import Checkpoint, read_checkpoint, write_checkpoint

N = 1000
ARRAYS = {"residual": (np.float32, N), "mask": (np.bool_, N)}


def state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    residual = rng.standard_normal(N).astype(np.float32)
    residual[:3] = [-0.0, np.float32(1e-45), np.inf]  # signed zero, subnormal, inf: all kept
    return {"residual": residual, "mask": rng.random(N) < 0.3}


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a
    )


def test_masks_are_bit_packed_and_floats_kept_as_they_are(tmp_path):
    store = ClientStateStore(ARRAYS, budget_bytes=10**6, spill_dir=tmp_path)
    assert store.record_bytes == N * 4 + N // 8
    s = state(0)
    store.put(5, s)
    s["residual"][5] = 123.0  # the store holds a copy, not the caller's buffer
    assert same(store.take(5), state(0))
    assert store.take(5) is None and len(store) == 0


def test_budget_is_respected_and_the_least_recently_stored_spill_first(tmp_path):
    store = ClientStateStore(ARRAYS, budget_bytes=3 * (N * 4 + N // 8), spill_dir=tmp_path)
    for client in range(10):
        store.put(client, state(client))
        assert store.memory_bytes <= store.budget_bytes
    assert store.spilled == 7 and len(store) == 10
    assert list(store._memory) == [7, 8, 9]  # the three most recent stay in memory
    # Spilled and reloaded: the same bytes.
    for client in range(10):
        assert same(store.peek(client), state(client))
    assert same(store.take(2), state(2))
    # Storing again makes 2 the most recent; 7 is now the oldest in memory and spills.
    store.put(2, state(2))
    assert list(store._memory) == [8, 9, 2] and 7 in store._slots
    # A freed slot is reused: the file does not grow past the records it must hold.
    spill = next(tmp_path.glob("hpc_fedprune-state-*/spill.bin"))
    assert spill.stat().st_size <= 7 * store.record_bytes
    store.close()
    assert not list(tmp_path.glob("hpc_fedprune-state-*"))


def test_zero_budget_spills_everything(tmp_path):
    store = ClientStateStore(ARRAYS, budget_bytes=0, spill_dir=tmp_path)
    for client in (3, 1, 2):
        store.put(client, state(client))
    assert store.memory_bytes == 0 and store.spilled == 3
    assert store.clients() == [1, 2, 3]
    assert all(same(store.take(c), state(c)) for c in (1, 2, 3))
    store.close()


def test_wrong_shape_or_dtype_is_refused(tmp_path):
    store = ClientStateStore(ARRAYS, budget_bytes=10**6, spill_dir=tmp_path)
    bad = state(0)
    bad["residual"] = bad["residual"].astype(np.float64)
    with pytest.raises(ValueError, match="residual"):
        store.put(0, bad)


class OneRank:
    """The few `World` facts the coordinator uses, for one rank (no MPI)."""

    size, rank, is_root = 1, 0, True

    def gather_objects(self, obj):
        return [obj]

    def bcast_object(self, obj):
        return obj

    def any_flag(self, flag):
        return bool(flag)

    def sum_int64(self, values):
        return values.copy()

    def agree_on_input_errors(self, error):
        if error is not None:
            raise error


class Config:
    class client_state:
        budget_mb = 0.0
        spill_dir = None


class Method:
    client_state_arrays = ARRAYS


def test_checkpoint_round_trip_restores_every_state(tmp_path):
    states = ClientStates.for_run(Config, OneRank(), Method())
    for client in (4, 9, 0):
        states.store.put(client, state(client))
    # Through a real checkpoint file, streamed in steps of one state (a tiny chunk size).
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f.attrs["format_version"] = 1
    with states.to_root() as chunks:
        assert chunks.count == 3 and sorted(chunks.arrays) == ["mask", "residual"]
        write_checkpoint(tmp_path, Checkpoint(3, np.zeros(4, np.float32), None, {}, chunks))
    with h5py.File(tmp_path / "checkpoint.h5", "r") as f:  # one row per client
        assert f["checkpoint/clients/id"][...].tolist() == [0, 4, 9]
        assert f["checkpoint/clients/mask"].shape == (3, N // 8)  # bit-packed
    back = read_checkpoint(tmp_path / "checkpoint.h5")
    assert [sorted(c) for c in back.client_chunks(max_bytes=1)] == [[0], [4], [9]]
    fresh = ClientStates.for_run(Config, OneRank(), Method())
    fresh.restore(back)
    assert fresh.store.clients() == [0, 4, 9]
    for client in (0, 4, 9):
        assert same(fresh.store.peek(client), state(client))
    partial = Checkpoint(
        3, np.zeros(4, np.float32), None, {}, {"residual": {1: state(1)["residual"]}}
    )
    write_checkpoint(tmp_path, partial)
    with pytest.raises(InputError, match="lacks client state"):
        ClientStates.for_run(Config, OneRank(), Method()).restore(
            read_checkpoint(tmp_path / "checkpoint.h5")
        )
    states.close()
    fresh.close()


def test_a_round_lends_and_returns_states():
    states = ClientStates.for_run(Config, OneRank(), Method())
    states.fetch(np.array([2, 5]))
    assert states.take(2) is None  # first participation
    states.keep(2, state(102))
    assert states.take(5) is None
    states.keep(5, state(105))
    states.send_back()
    states.fetch(np.array([5]))
    assert 5 in states.store and 2 in states.store  # one rank: nothing moves
    assert same(states.take(5), state(105))
    assert 5 not in states.store  # the client holds it until `keep`
    states.close()


def test_an_unusable_spill_dir_is_bad_input(tmp_path):
    (tmp_path / "file").write_text("")

    class Blocked:
        class client_state:
            budget_mb = 1.0
            spill_dir = str(tmp_path / "file" / "spill")

    with pytest.raises(InputError, match="client_state.spill_dir"):
        ClientStates.for_run(Blocked, OneRank(), Method())


def test_methods_without_state_have_no_store():
    class Stateless:
        pass

    states = ClientStates.for_run(Config, OneRank(), Stateless())
    assert not states.active
    with states.to_root() as chunks:
        assert chunks is None
