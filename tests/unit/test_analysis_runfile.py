"""Reading run files: layout, crash-truncated datasets, and refusing what is not a run file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpc_fedprune.analysis import SUPPORTED_FORMAT_VERSION, load_run
from hpc_fedprune.errors import InputError
from tests.unit.runfile_factory import (
    KNOWN_CLIENT_ROWS,
    KNOWN_MASK_ROUNDS,
    KNOWN_MASKS,
    append_rows,
    default_metrics,
    write_run,
)


def test_load_run_reads_attributes_metrics_and_mask_index(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "r1")
    # A run directory and its run.h5 are the same run.
    run = load_run(run_dir)
    assert load_run(run_dir / "run.h5").path == run.path
    assert (run.algorithm, run.dataset, run.model, run.task) == (
        "fedsparsify",
        "mnist",
        "lenet5",
        "classification",
    )
    assert (run.num_clients, run.rounds_planned, run.rounds_done) == (10, 8, 8)
    assert run.status == "finished" and run.format_version == 1
    assert run.attrs["seed"] == 7 and isinstance(run.attrs["seed"], int)
    assert list(run.metrics)[0] == "round"
    np.testing.assert_array_equal(run.metrics["round"], np.arange(1, 9))
    # Mask tensors come in the model's flat-buffer order, with shapes from the attributes.
    assert [t.name for t in run.mask_tensors] == ["conv1.weight", "fc.weight"]
    assert run.mask_tensors[0].shape == (2, 3, 2) and run.mask_tensors[0].numel == 12
    np.testing.assert_array_equal(run.mask_rounds, KNOWN_MASK_ROUNDS)
    assert run.has_masks and not run.has_client_masks


def test_tensor_order_of_a_running_run_comes_from_the_model_group(tmp_path: Path) -> None:
    # While a run goes, /model/flat does not exist yet; the names sit on /model.
    run_dir = write_run(tmp_path / "r", status="running")
    with h5py.File(run_dir / "run.h5", "a") as f:
        names = f["model/flat"].attrs["names"]
        del f["model/flat"]
        f["model"].attrs["names"] = names[::-1]
    run = load_run(run_dir)
    assert [t.name for t in run.mask_tensors] == ["fc.weight", "conv1.weight"]


def test_iter_masks_yields_each_record_unpacked_to_its_shape(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "r"))
    records = list(run.iter_masks())
    assert [r.round for r in records] == KNOWN_MASK_ROUNDS
    for i, rec in enumerate(records):
        for name, rows in KNOWN_MASKS.items():
            got = rec.mask(name)
            assert (
                got.shape == run.mask_tensors[[t.name for t in run.mask_tensors].index(name)].shape
            )
            np.testing.assert_array_equal(got.ravel(), rows[i])


def test_iter_client_masks_groups_interleaved_rows_by_round(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "r", client_rows=KNOWN_CLIENT_ROWS))
    assert run.has_client_masks and run.client_mask_rows == 5
    groups = list(run.iter_client_masks())
    assert [g.round for g in groups] == [3, 5]
    np.testing.assert_array_equal(groups[0].clients, [0, 1, 2])
    np.testing.assert_array_equal(groups[1].clients, [4, 7])
    m = groups[0].masks("fc.weight")
    assert m.shape == (3, 5)
    np.testing.assert_array_equal(m[1], [True, True, False, True, False])


def test_side_groups_are_read_on_demand(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "r"))
    up = run.client_uplink()
    assert up is not None and len(up["bytes"]) == 16
    part = run.partition()
    assert part is not None and part["label_counts"].shape == (10, 3)
    model = run.final_model()
    assert model is not None
    flat, mask = model
    assert flat.dtype == np.float32 and mask is not None and mask.size == 17


def test_crash_truncated_datasets_are_cut_to_the_common_length(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "crashed", status="running", rounds_planned=20)
    h5 = run_dir / "run.h5"
    # A crash in round 9: some metrics appended, others not; the mask round index written
    # but only one tensor's row.
    append_rows(h5, "metrics/round", np.array([9]))
    append_rows(h5, "metrics/test_accuracy", np.array([0.99]))
    append_rows(h5, "masks/rounds", np.array([10]))
    append_rows(h5, "masks/conv1.weight", np.zeros((1, 2), dtype=np.uint8))
    run = load_run(run_dir)
    assert {len(v) for v in run.metrics.values()} == {8}
    assert run.rounds_done == 8 and run.rounds_planned == 20
    np.testing.assert_array_equal(run.mask_rounds, KNOWN_MASK_ROUNDS)
    assert len(list(run.iter_masks())) == 4


def test_tensor_rows_ahead_of_the_round_index_are_ignored(tmp_path: Path) -> None:
    h5 = write_run(tmp_path / "r") / "run.h5"
    append_rows(h5, "masks/conv1.weight", np.zeros((1, 2), dtype=np.uint8))
    append_rows(h5, "masks/fc.weight", np.zeros((1, 1), dtype=np.uint8))
    run = load_run(h5)
    assert len(run.mask_rounds) == 4


def test_run_without_rounds_or_masks(tmp_path: Path) -> None:
    empty = {k: v[:0] for k, v in default_metrics(1).items()}
    run = load_run(write_run(tmp_path / "r", metrics=empty, masks={}, status="running"))
    assert run.num_rounds == 0 and run.rounds_done == 0
    assert not run.has_masks and list(run.iter_masks()) == []


# --- refusing bad input --------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_run(tmp_path / "nope")


def test_directory_without_run_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a run directory"):
        load_run(tmp_path)


def test_not_an_hdf5_file(tmp_path: Path) -> None:
    p = tmp_path / "run.h5"
    p.write_text("hello\n")
    with pytest.raises(InputError, match="not an HDF5 file"):
        load_run(p)


def test_hdf5_file_that_is_not_a_run_file(tmp_path: Path) -> None:
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(InputError, match="no format_version") as e:
        load_run(p)
    assert "\n" not in str(e.value)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "r", format_version=SUPPORTED_FORMAT_VERSION + 1)
    with pytest.raises(InputError, match="newer run-file format .*format_version 2.*upgrade"):
        load_run(run_dir)


def test_non_integer_format_version_is_refused(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "r")
    with h5py.File(run_dir / "run.h5", "a") as f:
        f.attrs["format_version"] = "one"
    with pytest.raises(InputError, match="not an integer"):
        load_run(run_dir)


def test_truncated_file_gives_input_error_with_reason(tmp_path: Path) -> None:
    p = write_run(tmp_path / "r") / "run.h5"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cannot read .*truncated") as e:
        load_run(p)
    assert "\n" not in str(e.value)


def test_inconsistent_mask_attributes_are_refused(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "r")
    with h5py.File(run_dir / "run.h5", "a") as f:
        f["masks/fc.weight"].attrs["numel"] = 50
        f["masks/fc.weight"].attrs["shape"] = np.array([50])
    with pytest.raises(InputError, match=r"fc.weight has shape \(4, 1\)"):
        load_run(run_dir)


def test_analysis_imports_neither_torch_nor_mpi4py() -> None:
    code = (
        "import sys, hpc_fedprune.analysis\n"
        "bad = [m for m in ('torch', 'mpi4py', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)


# --- untrusted files: reads bounded by what the file holds ---------------------------


def test_metrics_claiming_more_rows_than_stored_are_refused(tmp_path: Path) -> None:
    h5 = write_run(tmp_path / "r") / "run.h5"
    with h5py.File(h5, "a") as f:
        f["metrics/test_loss"].resize((10**10,))  # 74.5 GiB if read; nothing stored
    with pytest.raises(InputError, match=r"metrics/test_loss claims 10000000000 rows"):
        load_run(h5)


def test_a_row_resized_but_not_written_by_a_crash_is_still_read(tmp_path: Path) -> None:
    h5 = write_run(tmp_path / "r") / "run.h5"
    with h5py.File(h5, "a") as f:
        f["metrics/test_loss"].resize((9,))  # the crash came between resize and write
    assert load_run(h5).num_rounds == 8


def test_forged_mask_numel_is_refused(tmp_path: Path) -> None:
    h5 = write_run(tmp_path / "r") / "run.h5"
    with h5py.File(h5, "a") as f:
        f["model/mask"].attrs["numel"] = 10**11  # 93 GiB of booleans if believed
    with pytest.raises(InputError, match=r"/model/mask claims 100000000000 entries"):
        load_run(h5).final_model()


def test_forged_model_shape_is_refused(tmp_path: Path) -> None:
    h5 = write_run(tmp_path / "r") / "run.h5"
    with h5py.File(h5, "a") as f:
        del f["model/flat"]
        f.create_dataset("model/flat", shape=(10**10,), dtype=np.float32, chunks=(4096,))
    with pytest.raises(InputError, match="model/flat claims"):
        load_run(h5).final_model()


def test_forged_mask_record_count_is_refused(tmp_path: Path) -> None:
    h5 = write_run(tmp_path / "r") / "run.h5"
    with h5py.File(h5, "a") as f:
        for name in ("rounds", "conv1.weight", "fc.weight"):
            f["masks"][name].resize(10**9, axis=0)
    with pytest.raises(InputError, match="masks/rounds claims"):
        load_run(h5)


# --- one round as a dict, the table as a DataFrame ------------------------------------


def test_row_is_one_round_of_every_column_as_python_numbers(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "r"))
    known = default_metrics(8)
    last, third = run.row(), run.row(2)
    assert set(last) == set(known)
    assert last["round"] == 8 and type(last["round"]) is int and type(last["clients"]) is int
    assert last["test_accuracy"] == pytest.approx(0.9) and third["round"] == 3
    assert np.isnan(third["test_accuracy"])  # not evaluated in odd rounds
    assert third["test_loss"] == pytest.approx(1 / 3) and type(third["test_loss"]) is float
    with pytest.raises(IndexError, match="round index 8 of 8"):
        run.row(8)


def test_to_pandas_has_one_row_per_round_and_the_metrics_as_columns(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    run = load_run(write_run(tmp_path / "r"))
    frame = run.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(run.metrics) and list(frame.columns)[0] == "round"
    assert len(frame) == 8 and list(frame["round"]) == list(range(1, 9))
    known = default_metrics(8)
    for name, column in known.items():
        np.testing.assert_array_equal(frame[name].to_numpy(), column)
        assert frame[name].dtype == column.dtype, name


def test_to_pandas_without_pandas_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    run = load_run(write_run(tmp_path / "r"))
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    with pytest.raises(ImportError, match=r"needs pandas.*pip install pandas"):
        run.to_pandas()


def test_pandas_is_no_dependency() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    declared = " ".join(project["project"]["dependencies"]).lower()
    assert "pandas" not in declared
