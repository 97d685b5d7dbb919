"""Compressed encodings of sparse update vectors and boolean masks, with exact byte counts.

A buffer is ``header | values | index section``; its size is ``len(buffer)``, and
:func:`plan` gives that exact size without building the buffer (the simulator counts the
bytes of every client upload this way, cheaply). Layout of the 16-byte header (little
endian): magic ``b"FP"``, version (1 byte), method tag (1), value dtype code (1; 255 for a
mask), aux (1: Elias-Fano low width, bit 7 = complemented mask), 2 pad bytes, ``n`` (uint32),
``count`` (uint32: values on the wire, or the indices of a mask).

Methods and their exact sizes (``H = 16``, ``m`` = non-zeros after rounding to the wire
type, ``v`` = bytes per value, ``K`` = positions of the shared mask):

=========  ==================================================  ============================
method     bytes                                               index section
=========  ==================================================  ============================
dense      ``H + n*v``                                         none
values     ``H + K*v``                                         none: both sides hold the mask
coo        ``H + m*v + 4*m``                                   uint32 indices
delta      ``H + m*v + ceil(m*L/8) + ceil((m + (n-1>>L))/8)``  Elias-Fano, ``L=floor(log2(n/m))``
bitmap     ``H + m*v + ceil(n/8)``                             ``np.packbits`` of the support
=========  ==================================================  ============================

Why Elias-Fano for the delta code: bit-packed gaps at one per-buffer width pay for the
largest gap on every index (random supports: ``log2(ln m)``, 3-4 bits each, above the
mean), and varint rounds each gap up to 7-bit groups (at 10% density a 1-byte varint
costs 8 bits against 4.7 for the information bound). Elias-Fano, which unary-codes the
high parts of the gaps and bit-packs their low ``L`` bits, stays within about 0.56 bits
per index of ``log2(C(n, m))`` for any gap distribution (``benchmarks/wire_bytes.py``
prints all three).

Support: the positions whose value on the wire is not zero (NaN and inf count as
non-zero and travel). Decoding is bit-exact for every value, with one rule: zeros are
canonical, -0.0 decodes as +0.0 (``w * mask`` makes -0.0 at pruned negative weights; see
:mod:`.wire`). With ``value_dtype`` float16 or bfloat16 values are rounded to nearest even
first; a value that rounds to zero leaves the support. In every case
``decode(encode(x, value_dtype=d))`` is bit-identical to ``round_values(x, d)``.

``segments`` (tensor sizes) lets every tensor choose its own method inside a container:
``H + 4*S + sum(part sizes)``; ``auto`` keeps it only when smaller than one encoding.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from . import bitpack
from .wire import CODE_TO_DTYPE, ITEMSIZE, dtype_code, from_wire, to_wire

HEADER = struct.Struct("<2sBBBBxxII")
HEADER_BYTES = HEADER.size  # 16
MAGIC = b"FP"
VERSION = 1
MAX_N = 2**32 - 1  # n and the COO indices are uint32

_TAGS = {"dense": 0, "values": 1, "coo": 2, "delta": 3, "bitmap": 4, "segmented": 5}
_TAG_NAMES = {tag: name for name, tag in _TAGS.items()}
_NO_VALUES = 255  # dtype code of a mask buffer
_COMPLEMENT = 0x80  # aux flag of a mask buffer: the index section codes the False positions
# Ties go to the method that is cheapest to decode.
VALUE_METHODS = ("dense", "values", "bitmap", "coo", "delta")
MASK_METHODS = ("bitmap", "coo", "delta", "coo_complement", "delta_complement")


@dataclass(frozen=True)
class EncodedInfo:
    """What an encoded buffer holds and where its bytes go.

    Attributes
    ----------
    method : str
        'dense', 'values', 'coo', 'delta', 'bitmap' or 'segmented' (masks: also
        'coo_complement', 'delta_complement').
    n : int
        Length of the dense vector.
    count : int
        Values on the wire (vectors) or indices coded (masks).
    value_dtype : str or None
        Wire type of the values; None for a mask.
    header_bytes, index_bytes, value_bytes : int
        The byte breakdown; ``value_bytes`` alone is the "values only" cost of a payload.
    candidates : Mapping[str, int]
        Total size of every method considered (from :func:`plan`; empty from :func:`describe`).
    parts : tuple of EncodedInfo
        Per-segment infos of a 'segmented' buffer.
    """

    method: str
    n: int
    count: int
    value_dtype: str | None
    header_bytes: int
    index_bytes: int
    value_bytes: int
    candidates: Mapping[str, int] = field(default_factory=dict)
    parts: tuple[EncodedInfo, ...] = ()

    @property
    def total_bytes(self) -> int:
        """Exact length of the buffer in bytes."""
        return self.header_bytes + self.index_bytes + self.value_bytes


def information_bound_bytes(n: int, nnz: int, value_bytes: int = 4) -> float:
    """Bytes that any code needs for ``nnz`` values at unknown positions among ``n``.

    ``nnz * value_bytes + log2(C(n, nnz)) / 8``, with the binomial from ``math.lgamma``.
    """
    if not 0 <= nnz <= n:
        raise ValueError(f"need 0 <= nnz <= n, got nnz={nnz}, n={n}")
    log2_binom = (math.lgamma(n + 1) - math.lgamma(nnz + 1) - math.lgamma(n - nnz + 1)) / math.log(
        2
    )
    return nnz * value_bytes + max(log2_binom, 0.0) / 8


# --------------------------------------------------------------------------- index sizes


def _index_bytes(method: str, n: int, m: int) -> int:
    if method in ("dense", "values"):
        return 0
    if method == "coo":
        return 4 * m
    if method == "delta":
        return bitpack.elias_fano_nbytes(n, m)
    if method == "bitmap":
        return (n + 7) // 8
    raise ValueError(f"unknown method {method!r}")


def _encode_index(method: str, idx: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Index section and aux byte for ``idx`` (sorted int64) under ``method``."""
    if method == "coo":
        return idx.astype("<u4").view(np.uint8), 0
    if method == "delta":
        return bitpack.elias_fano_encode(idx, n)
    if method == "bitmap":
        return bitpack.indices_to_bitmap(idx, n), 0
    raise ValueError(f"unknown method {method!r}")


def _decode_index(method: str, section: np.ndarray, n: int, m: int) -> np.ndarray:
    if method == "coo":
        return section[: 4 * m].view("<u4").astype(np.int64)
    if method == "delta":
        return bitpack.elias_fano_decode(section, n, m)
    if method == "bitmap":
        idx = bitpack.bitmap_to_indices(section, n)
        if idx.size != m:
            raise ValueError("corrupt buffer: bitmap does not match the value count")
        return idx
    raise ValueError(f"unknown method {method!r}")


# --------------------------------------------------------------------------- vectors


class _Prepared:
    """A vector's support and wire values, computed once and shared by plan and encode."""

    def __init__(self, vector: np.ndarray, shared_mask: np.ndarray | None, value_dtype: str):
        dtype_code(value_dtype)
        x = np.asarray(vector)
        if x.ndim != 1:
            raise ValueError(f"expected a 1-D vector, got shape {x.shape}")
        if x.size > MAX_N:
            raise ValueError(f"vectors longer than {MAX_N} entries are not supported")
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.n = int(self.x.size)
        self.value_dtype = value_dtype
        # x != 0 is False for +-0.0 and True for NaN: signed zeros are not sent.
        support = np.flatnonzero(self.x != 0)
        wire = to_wire(self.x[support], value_dtype)
        if value_dtype != "float32":
            keep = wire != 0  # rounded to zero: nothing to send
            support, wire = support[keep], wire[keep]
        self.support = support
        self.wire = wire
        self.mask = None
        if shared_mask is not None:
            mask = np.asarray(shared_mask, dtype=bool)
            if mask.shape != (self.n,):
                raise ValueError(f"shared_mask has shape {mask.shape}, expected ({self.n},)")
            self.mask = mask

    def segment(self, start: int, stop: int) -> _Prepared:
        """The same data restricted to ``[start, stop)`` (no recomputation of the support)."""
        part = object.__new__(_Prepared)
        lo, hi = np.searchsorted(self.support, [start, stop])
        part.x = self.x[start:stop]
        part.n = stop - start
        part.value_dtype = self.value_dtype
        part.support = self.support[lo:hi] - start
        part.wire = self.wire[lo:hi]
        part.mask = None if self.mask is None else self.mask[start:stop]
        return part

    def values_allowed(self) -> bool:
        """True when every non-zero lies inside the shared mask (values-only is exact)."""
        return self.mask is not None and bool(self.mask[self.support].all())

    def sizes(self) -> dict[str, int]:
        v = ITEMSIZE[self.value_dtype]
        m = int(self.support.size)
        out = {"dense": HEADER_BYTES + self.n * v}
        if self.values_allowed():
            out["values"] = HEADER_BYTES + int(np.count_nonzero(self.mask)) * v
        for method in ("bitmap", "coo", "delta"):
            out[method] = HEADER_BYTES + m * v + _index_bytes(method, self.n, m)
        return out

    def info(self, method: str, candidates: Mapping[str, int]) -> EncodedInfo:
        v = ITEMSIZE[self.value_dtype]
        if method == "dense":
            count = self.n
        elif method == "values":
            count = int(np.count_nonzero(self.mask))
        else:
            count = int(self.support.size)
        return EncodedInfo(
            method=method,
            n=self.n,
            count=count,
            value_dtype=self.value_dtype,
            header_bytes=HEADER_BYTES,
            index_bytes=_index_bytes(method, self.n, count),
            value_bytes=count * v,
            candidates=dict(candidates),
        )

    def build(self, method: str) -> np.ndarray:
        code = dtype_code(self.value_dtype)
        if method == "dense":
            wire, section, aux = to_wire(self.x, self.value_dtype), None, 0
        elif method == "values":
            if not self.values_allowed():
                raise ValueError("method 'values' needs every non-zero inside shared_mask")
            wire, section, aux = to_wire(self.x[self.mask], self.value_dtype), None, 0
        else:
            wire = self.wire
            section, aux = _encode_index(method, self.support, self.n)
        head = HEADER.pack(MAGIC, VERSION, _TAGS[method], code, aux, self.n, wire.size)
        parts = [np.frombuffer(head, dtype=np.uint8), wire.view(np.uint8)]
        if section is not None:
            parts.append(section)
        return np.concatenate(parts)


def _choose(prep: _Prepared, method: str) -> tuple[str, dict[str, int]]:
    sizes = prep.sizes()
    if method == "auto":
        best = min(sizes, key=lambda k: (sizes[k], VALUE_METHODS.index(k)))
        return best, sizes
    if method not in VALUE_METHODS:
        raise ValueError(f"method must be 'auto' or one of {VALUE_METHODS}, got {method!r}")
    if method == "values" and "values" not in sizes:
        raise ValueError("method 'values' needs a shared_mask that covers every non-zero")
    return method, sizes


def _bounds(segments: Sequence[int], n: int) -> list[tuple[int, int]]:
    lengths = [int(s) for s in segments]
    if any(s < 0 for s in lengths) or sum(lengths) != n:
        raise ValueError(f"segments must be non-negative lengths summing to n={n}")
    edges = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _plan_segments(prep: _Prepared, segments: Sequence[int], method: str) -> EncodedInfo:
    parts = []
    for start, stop in _bounds(segments, prep.n):
        sub = prep.segment(start, stop)
        chosen, sizes = _choose(sub, method)
        parts.append(sub.info(chosen, sizes))
    table = HEADER_BYTES + 4 * len(parts)
    return EncodedInfo(
        method="segmented",
        n=prep.n,
        count=len(parts),
        value_dtype=prep.value_dtype,
        header_bytes=table + sum(p.header_bytes for p in parts),
        index_bytes=sum(p.index_bytes for p in parts),
        value_bytes=sum(p.value_bytes for p in parts),
        parts=tuple(parts),
    )


def _plan(prep: _Prepared, method: str, segments: Sequence[int] | None) -> EncodedInfo:
    chosen, sizes = _choose(prep, method if method != "segmented" else "auto")
    whole = prep.info(chosen, sizes)
    if segments is None:
        return whole
    split = _plan_segments(prep, segments, "auto" if method == "segmented" else method)
    sizes = dict(sizes, segmented=split.total_bytes)
    if method == "auto" and whole.total_bytes <= split.total_bytes:
        return prep.info(chosen, sizes)
    return replace(split, candidates=sizes)


def plan(
    vector: np.ndarray,
    *,
    shared_mask: np.ndarray | None = None,
    value_dtype: str = "float32",
    method: str = "auto",
    segments: Sequence[int] | None = None,
) -> EncodedInfo:
    """What :func:`encode` would produce, with exact sizes, without building the buffer.

    Parameters
    ----------
    vector : numpy.ndarray
        1-D float vector (float32; other float types are converted to float32 first).
    shared_mask : numpy.ndarray, optional
        Boolean mask that sender and receiver both hold; enables method 'values'
        (values at every mask position, in mask order, no indices) when every non-zero of
        ``vector`` lies inside it.
    value_dtype : str
        'float32' (default, exact), 'float16' or 'bfloat16' (rounded to nearest even).
    method : str
        'auto' (smallest), one of 'dense', 'values', 'coo', 'delta', 'bitmap', or
        'segmented' (per-segment auto; needs ``segments``).
    segments : sequence of int, optional
        Tensor lengths summing to ``len(vector)``: each segment may choose its own method.

    Returns
    -------
    EncodedInfo
        Method, byte breakdown and ``candidates`` (the size of every method considered).
    """
    if method == "segmented" and segments is None:
        raise ValueError("method 'segmented' needs segments")
    return _plan(_Prepared(vector, shared_mask, value_dtype), method, segments)


def plan_from_counts(
    n: int, nnz: int, *, value_dtype: str = "float32", shared_k: int | None = None
) -> EncodedInfo:
    """The auto choice and exact size from counts alone (no pass over the data).

    For callers that already know the counts (e.g. ``torch.count_nonzero`` on the device):
    equal to ``plan(vector, shared_mask=mask, value_dtype=value_dtype)`` whenever ``nnz``
    is the number of values that stay non-zero after rounding to ``value_dtype`` and, if
    ``shared_k`` is given, every non-zero lies inside a mask of ``shared_k`` positions.

    Parameters
    ----------
    n : int
        Vector length.
    nnz : int
        Non-zero values (after rounding to the wire type).
    value_dtype : str
        Wire type of the values.
    shared_k : int, optional
        Size of a shared mask that covers every non-zero (enables 'values').

    Returns
    -------
    EncodedInfo
        As from :func:`plan` for ``method='auto'`` without ``segments``.
    """
    v = ITEMSIZE[CODE_TO_DTYPE[dtype_code(value_dtype)]]
    if not 0 <= nnz <= n <= MAX_N:
        raise ValueError(f"need 0 <= nnz <= n <= {MAX_N}, got nnz={nnz}, n={n}")
    sizes = {"dense": HEADER_BYTES + n * v}
    if shared_k is not None:
        if not nnz <= shared_k <= n:
            raise ValueError(f"need nnz <= shared_k <= n, got shared_k={shared_k}")
        sizes["values"] = HEADER_BYTES + shared_k * v
    for method in ("bitmap", "coo", "delta"):
        sizes[method] = HEADER_BYTES + nnz * v + _index_bytes(method, n, nnz)
    best = min(sizes, key=lambda k: (sizes[k], VALUE_METHODS.index(k)))
    count = {"dense": n, "values": shared_k}.get(best, nnz)
    return EncodedInfo(
        method=best,
        n=n,
        count=count,
        value_dtype=value_dtype,
        header_bytes=HEADER_BYTES,
        index_bytes=_index_bytes(best, n, count),
        value_bytes=count * v,
        candidates=sizes,
    )


def encode(
    vector: np.ndarray,
    *,
    shared_mask: np.ndarray | None = None,
    value_dtype: str = "float32",
    method: str = "auto",
    segments: Sequence[int] | None = None,
) -> np.ndarray:
    """Encode a sparse float vector; ``len`` of the result is its exact size on the wire.

    Parameters are those of :func:`plan`. ``method='auto'`` picks the smallest buffer.

    Returns
    -------
    numpy.ndarray
        uint8 buffer (header, values, index section); :func:`describe` reads its breakdown.
    """
    if method == "segmented" and segments is None:
        raise ValueError("method 'segmented' needs segments")
    prep = _Prepared(vector, shared_mask, value_dtype)
    info = _plan(prep, method, segments)
    if info.method != "segmented":
        return prep.build(info.method)
    bounds = _bounds(segments, prep.n)
    bufs = [
        prep.segment(start, stop).build(part.method)
        for (start, stop), part in zip(bounds, info.parts, strict=True)
    ]
    code = dtype_code(value_dtype)
    head = HEADER.pack(MAGIC, VERSION, _TAGS["segmented"], code, 0, prep.n, len(bufs))
    table = np.array([b.size for b in bufs], dtype="<u4").view(np.uint8)
    return np.concatenate([np.frombuffer(head, dtype=np.uint8), table, *bufs])


def _read_header(buf: np.ndarray) -> tuple[str, int, int, int, int]:
    raw = np.asarray(buf, dtype=np.uint8)
    if raw.size < HEADER_BYTES:
        raise ValueError("buffer shorter than the 16-byte header")
    magic, version, tag, code, aux, n, count = HEADER.unpack(raw[:HEADER_BYTES].tobytes())
    if magic != MAGIC or version != VERSION or tag not in _TAG_NAMES:
        raise ValueError("not an hpc_fedprune encoded buffer (bad magic, version or tag)")
    return _TAG_NAMES[tag], code, aux, n, count


def _segment_buffers(raw: np.ndarray, count: int) -> list[np.ndarray]:
    sizes = raw[HEADER_BYTES : HEADER_BYTES + 4 * count].view("<u4").astype(np.int64)
    edges = HEADER_BYTES + 4 * count + np.concatenate([[0], np.cumsum(sizes)])
    if edges[-1] != raw.size:
        raise ValueError("corrupt segmented buffer: part sizes do not add up")
    return [raw[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]


def describe(buf: np.ndarray) -> EncodedInfo:
    """Method and byte breakdown of an encoded vector or mask buffer."""
    raw = np.asarray(buf, dtype=np.uint8)
    method, code, aux, n, count = _read_header(raw)
    if method == "segmented":
        parts = tuple(describe(part) for part in _segment_buffers(raw, count))
        return EncodedInfo(
            method=method,
            n=n,
            count=count,
            value_dtype=CODE_TO_DTYPE[code],
            header_bytes=HEADER_BYTES + 4 * count + sum(p.header_bytes for p in parts),
            index_bytes=sum(p.index_bytes for p in parts),
            value_bytes=sum(p.value_bytes for p in parts),
            parts=parts,
        )
    is_mask = code == _NO_VALUES
    if is_mask and aux & _COMPLEMENT:
        method = method + "_complement"
    base = method.removesuffix("_complement")
    value_dtype = None if is_mask else CODE_TO_DTYPE[code]
    value_bytes = 0 if is_mask else count * ITEMSIZE[value_dtype]
    info = EncodedInfo(
        method=method,
        n=n,
        count=count,
        value_dtype=value_dtype,
        header_bytes=HEADER_BYTES,
        index_bytes=_index_bytes(base, n, count),
        value_bytes=value_bytes,
    )
    if info.total_bytes != raw.size:
        raise ValueError(f"corrupt buffer: {raw.size} bytes, header implies {info.total_bytes}")
    return info


def decode(buf: np.ndarray, *, n: int, shared_mask: np.ndarray | None = None) -> np.ndarray:
    """Dense float32 vector of length ``n`` from a buffer of :func:`encode`.

    Parameters
    ----------
    buf : numpy.ndarray
        uint8 buffer (or anything ``np.asarray`` views as uint8 bytes).
    n : int
        Expected length; checked against the header.
    shared_mask : numpy.ndarray, optional
        The same mask the sender used; needed for method 'values'.

    Returns
    -------
    numpy.ndarray
        float32 vector, bit-identical to the (rounded) values that were encoded.
    """
    raw = np.asarray(buf, dtype=np.uint8)
    info = describe(raw)
    if info.n != n:
        raise ValueError(f"buffer holds a vector of length {info.n}, expected {n}")
    if info.value_dtype is None:
        raise ValueError("this buffer holds a mask: use decode_mask")
    if info.method == "segmented":
        out = np.empty(n, dtype=np.float32)
        start = 0
        for part_info, part in zip(info.parts, _segment_buffers(raw, info.count), strict=True):
            stop = start + part_info.n
            sub_mask = None if shared_mask is None else np.asarray(shared_mask)[start:stop]
            out[start:stop] = decode(part, n=part_info.n, shared_mask=sub_mask)
            start = stop
        return out
    v = ITEMSIZE[info.value_dtype]
    bits_dtype = np.uint32 if v == 4 else np.uint16
    vstart = HEADER_BYTES
    wire = raw[vstart : vstart + info.count * v].copy().view(bits_dtype)  # copy: aligned
    values = from_wire(wire, info.value_dtype)
    if info.method == "dense":
        return values
    out = np.zeros(n, dtype=np.float32)
    if info.method == "values":
        if shared_mask is None:
            raise ValueError("this buffer holds values in mask order: pass shared_mask")
        mask = np.asarray(shared_mask, dtype=bool)
        if mask.shape != (n,) or int(np.count_nonzero(mask)) != info.count:
            raise ValueError("shared_mask does not match the one the sender used")
        out[mask] = values
        return out
    idx = _decode_index(info.method, raw[vstart + info.count * v :], n, info.count)
    out[idx] = values
    return out


# --------------------------------------------------------------------------- masks


def _mask_sizes(n: int, m: int) -> dict[str, int]:
    return {
        "bitmap": HEADER_BYTES + (n + 7) // 8,
        "coo": HEADER_BYTES + 4 * m,
        "delta": HEADER_BYTES + bitpack.elias_fano_nbytes(n, m),
        "coo_complement": HEADER_BYTES + 4 * (n - m),
        "delta_complement": HEADER_BYTES + bitpack.elias_fano_nbytes(n, n - m),
    }


def _check_mask(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 1 or arr.dtype != np.bool_:
        raise ValueError(f"expected a 1-D bool mask, got {arr.dtype} of shape {arr.shape}")
    if arr.size > MAX_N:
        raise ValueError(f"masks longer than {MAX_N} entries are not supported")
    return arr


def plan_mask(mask: np.ndarray, *, method: str = "auto") -> EncodedInfo:
    """Method and exact size :func:`encode_mask` would use for a boolean ``mask``."""
    arr = _check_mask(mask)
    n, m = int(arr.size), int(np.count_nonzero(arr))
    sizes = _mask_sizes(n, m)
    if method == "auto":
        method = min(sizes, key=lambda k: (sizes[k], MASK_METHODS.index(k)))
    elif method not in sizes:
        raise ValueError(f"method must be 'auto' or one of {MASK_METHODS}, got {method!r}")
    count = n - m if method.endswith("_complement") else m
    return EncodedInfo(
        method=method,
        n=n,
        count=count,
        value_dtype=None,
        header_bytes=HEADER_BYTES,
        index_bytes=sizes[method] - HEADER_BYTES,
        value_bytes=0,
        candidates=sizes,
    )


def encode_mask(mask: np.ndarray, *, method: str = "auto") -> np.ndarray:
    """Encode a boolean mask (a local mask, or the XOR of old and new) as the smallest of
    bitmap, uint32 index list and Elias-Fano, each also of the complement.

    Parameters
    ----------
    mask : numpy.ndarray
        1-D bool array.
    method : str
        'auto' or one of :data:`MASK_METHODS`.

    Returns
    -------
    numpy.ndarray
        uint8 buffer; sizes are in :func:`plan_mask`'s ``candidates``.
    """
    info = plan_mask(mask, method=method)
    arr = np.asarray(mask)
    complement = info.method.endswith("_complement")
    base = info.method.removesuffix("_complement")
    if base == "bitmap":
        section, aux = np.packbits(arr, bitorder="little"), 0
    else:
        idx = np.flatnonzero(~arr if complement else arr)
        section, aux = _encode_index(base, idx, info.n)
    aux |= _COMPLEMENT if complement else 0
    head = HEADER.pack(MAGIC, VERSION, _TAGS[base], _NO_VALUES, aux, info.n, info.count)
    return np.concatenate([np.frombuffer(head, dtype=np.uint8), section])


def decode_mask(buf: np.ndarray, *, n: int) -> np.ndarray:
    """Boolean mask of length ``n`` from a buffer of :func:`encode_mask`."""
    raw = np.asarray(buf, dtype=np.uint8)
    info = describe(raw)
    if info.value_dtype is not None:
        raise ValueError("this buffer holds a vector: use decode")
    if info.n != n:
        raise ValueError(f"buffer holds a mask of length {info.n}, expected {n}")
    section = raw[HEADER_BYTES:]
    if info.method == "bitmap":
        return np.unpackbits(section, count=n, bitorder="little").view(bool)
    complement = info.method.endswith("_complement")
    idx = _decode_index(info.method.removesuffix("_complement"), section, n, info.count)
    out = np.full(n, complement, dtype=bool)
    out[idx] = not complement
    return out


def encode_mask_change(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Encode the positions where ``new`` differs from ``old`` (their XOR)."""
    return encode_mask(np.logical_xor(_check_mask(old), _check_mask(new)))


def apply_mask_change(old: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """The new mask from the old one and a buffer of :func:`encode_mask_change`."""
    arr = _check_mask(old)
    return np.logical_xor(arr, decode_mask(buf, n=arr.size))
