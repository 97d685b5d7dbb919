"""Encoded bytes of random-support sparse vectors against the information bound.

    .venv/bin/python benchmarks/wire_bytes.py --n 1000000 11000000

One JSON line per (n, density, value dtype): the size ``auto`` picks and every candidate
(exact ``len`` of the buffers, headers included), ``log2 C(n, nnz) / 8 + nnz * value bytes``
as the bound, and their ratio. For the choice of the delta code it also prints what two
alternatives would cost for the same support: gaps bit-packed at one per-buffer width
(``gap_fixed_width``) and LEB128 varint gaps (``gap_varint``), index bytes only.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from hpc_fedprune.comm import encodings
from hpc_fedprune.comm.wire import ITEMSIZE


def gap_alternatives(indices: np.ndarray) -> dict[str, int]:
    """Index bytes of fixed-width bit-packed gaps and of varint gaps (not implemented codes)."""
    if indices.size == 0:
        return {"gap_fixed_width": 0, "gap_varint": 0}
    gaps = np.diff(indices, prepend=-1) - 1  # >= 0
    width = max(1, int(gaps.max()).bit_length())
    varint = np.maximum(1, np.ceil(np.log2(gaps + 1) / 7)).astype(np.int64)
    return {"gap_fixed_width": (indices.size * width + 7) // 8, "gap_varint": int(varint.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument(
        "--density",
        type=float,
        nargs="+",
        default=[0.0001, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5],
    )
    parser.add_argument("--value-dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    for n in args.n:
        for density in args.density:
            rng = np.random.default_rng([args.seed, n, int(density * 1e6)])
            nnz = int(round(density * n))
            idx = np.sort(rng.choice(n, nnz, replace=False))
            x = np.zeros(n, dtype=np.float32)
            x[idx] = rng.standard_normal(nnz).astype(np.float32) + 4  # never rounds to 0
            for value_dtype in args.value_dtype:
                start = time.perf_counter()
                buf = encodings.encode(x, value_dtype=value_dtype)
                encode_s = time.perf_counter() - start
                info = encodings.plan(x, value_dtype=value_dtype)
                bound = encodings.information_bound_bytes(n, nnz, ITEMSIZE[value_dtype])
                print(
                    json.dumps(
                        {
                            "bench": "wire_bytes",
                            "n": n,
                            "density": density,
                            "nnz": nnz,
                            "value_dtype": value_dtype,
                            "method": info.method,
                            "bytes": int(buf.size),
                            "bound_bytes": round(bound, 1),
                            "ratio_to_bound": round(buf.size / bound, 4) if bound else None,
                            "index_bytes": info.index_bytes,
                            "index_bound_bytes": round(bound - nnz * ITEMSIZE[value_dtype], 1),
                            "candidates": info.candidates,
                            **gap_alternatives(idx),
                            "encode_s": round(encode_s, 4),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
