"""Write generated brain-age volumes to an HDF5 file, piece by piece, for ``data.on_demand``.

The volumes are those of the ``synthetic_volumes`` loader (`hpc_fedprune.data.synthetic`)
at any size, by default the brain-age data's 91 x 109 x 91 voxels, written ``--piece``
subjects at a time, so the file may be far larger than memory. Each piece draws from
its own stream keyed by the seed, the split and the piece's index. Layout: ``x_train``
``(N, 1, D, H, W)`` float32 with one chunk per volume, uncompressed (the fastest to read
one subject at a time), ``y_train`` float32 ages in years, and the same for the test set:
what the ``hdf5`` loader reads, in memory or on demand.

    .venv/bin/python benchmarks/volumes_h5.py /scratch/volumes.h5 --train 3000 --test 200

Prints one JSON line: the file, its size, subjects and seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h5py
import numpy as np

from hpc_fedprune.data.synthetic import _draw_volumes
from hpc_fedprune.rng import Stream, numpy_rng

_KEY = 7  # DATA-stream key of these files (the loaders use 1-3)


def write(path: Path, train: int, test: int, shape, piece: int, seed: int, noise: float) -> None:
    with h5py.File(path, "w") as f:
        for split, n, part in (("train", train, 0), ("test", test, 1)):
            x = f.create_dataset(f"x_{split}", (n, *shape), dtype=np.float32, chunks=(1, *shape))
            y = f.create_dataset(f"y_{split}", (n,), dtype=np.float32)
            for k, lo in enumerate(range(0, n, piece)):
                hi = min(lo + piece, n)
                rng = numpy_rng(seed, Stream.DATA, _KEY, part, k)
                vol, age = _draw_volumes(rng, hi - lo, tuple(shape), noise)
                x[lo:hi] = vol
                y[lo:hi] = age


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--shape", type=int, nargs=4, default=[1, 91, 109, 91])
    parser.add_argument("--piece", type=int, default=25, help="subjects generated at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=1.0)
    args = parser.parse_args()
    start = time.perf_counter()
    write(args.path, args.train, args.test, args.shape, args.piece, args.seed, args.noise)
    print(
        json.dumps(
            {
                "bench": "volumes_h5",
                "path": str(args.path),
                "train": args.train,
                "test": args.test,
                "shape": args.shape,
                "gib": round(args.path.stat().st_size / 2**30, 2),
                "seconds": round(time.perf_counter() - start, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
