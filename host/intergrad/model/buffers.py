"""On-chip SRAM buffers of finite size: the DRAM traffic of a pass's tile order.

A pass laid on the array (``rows_ext`` x ``cols_ext`` resident operand, stream length T) runs
its ``nr x nc`` tiles in row-major order (row tile i outer, column tile j inner), as
:mod:`intergrad.plan` does.  Per tile the array needs, besides its resident tile:

* the **top** stream (WS: the streamed operand, T x c_j; OS / IG: the operand entering the
  columns): column block j, used again by every row tile i, i.e. cyclically;
* the **left** stream (OS / IG only: the operand entering the rows, T x r_i): row block i,
  used by the consecutive tiles (i, 0..nc-1);
* the **output** block (WS and IG's dX: T x r_i partial sums, accumulated over j = 0..nc-1,
  consecutively); OS / IG accumulators (r x c) drain once per tile.

Three buffers hold them (``top``, ``left``, ``out`` KiB; with SRAM double buffering half of each
holds the data in use while the other half prefetches).  A buffer keeps the most recently used
blocks that fit (LRU); a block larger than it streams through.  Then, exactly (the test
simulates the tile order with LRU buffers and counts the same):

* top: all column blocks fit together -> each read once (``T*c``); else every access misses
  (a cyclic pattern longer than an LRU buffer always misses): ``nr*T*c``, except when only
  the narrower last block fits at all: it then stays and is read once;
* left: row block i read once if it fits, else once per tile of its row (``nc`` times);
* out: block i fits -> written once at data width; else each tile but the last of a row
  writes its partial sums (accumulator width) and each but the first reads them back;
* resident tiles are read once (``r*c``), drained accumulators written once (``r*c``).

Counts are in elements split by width (``*_data``: DATA_W elements, ``*_acc``: ACC_W).
With no buffer sizes the model uses compulsory traffic instead (see :mod:`.profile`).
"""
from __future__ import annotations

import numpy as np

from ..core import MODES

#: order of the three buffer sizes in ``Array.buffer_kb``
BUFFERS = ("top", "left", "out")


def _cdiv(a, b):
    return -(-a // b)


ROLES = ("top", "left", "resident", "out", "drain")


def dram_elems(R: int, C: int, rows_ext, cols_ext, T, mode: str, buffer_bytes,
               data_bytes: float, acc_bytes: float, scale: dict | None = None
               ) -> dict[str, np.ndarray]:
    """DRAM element counts of one pass (per group), vectorized over layers.

    ``buffer_bytes``: usable bytes of the (top, left, out) buffers.  ``scale``: per role (see
    :data:`ROLES`), the unique tensor elements per matrix element of the operand in that
    role (an im2col operand holds each input element up to k_h*k_w times; the buffer holds
    unique elements, so fits and counts scale by it; default 1).  Returns ``read_data``,
    ``read_acc``, ``write_data``, ``write_acc`` element arrays."""
    r = np.asarray(rows_ext, dtype=np.int64)
    c = np.asarray(cols_ext, dtype=np.int64)
    T = np.asarray(T, dtype=np.int64)
    sc = {k: 1.0 for k in ROLES}
    sc.update(scale or {})
    top_b, left_b, out_b = buffer_bytes
    nr, nc = _cdiv(r, R), _cdiv(c, C)
    r_last = r - (nr - 1) * R
    zero = np.zeros(np.broadcast(r, c, T).shape)
    read_d, read_a, write_d, write_a = (zero.copy() for _ in range(4))
    # top stream: column blocks j of T x c_j, cyclic over the row tiles.  Blocks larger than
    # the buffer stream through; if only the narrower last block fits, it stays resident
    s, eb = sc["top"], data_bytes * sc["top"]
    c_last = c - (nc - 1) * C
    fits_all = T * c * eb <= top_b
    only_last = (T * C * eb > top_b) & (T * c_last * eb <= top_b)
    read_d += s * np.where(fits_all, T * c,
                           np.where(only_last, nr * T * (c - c_last) + T * c_last, nr * T * c))
    if MODES[mode].accumulates:
        # left stream: row block i (T x r_i), reused by its row's consecutive tiles
        s, eb = sc["left"], data_bytes * sc["left"]
        full = (T * R * eb <= left_b)
        last = (T * r_last * eb <= left_b)
        read_d += s * ((nr - 1) * T * R * np.where(full, 1, nc)
                       + T * r_last * np.where(last, 1, nc))
    if MODES[mode].uses_weights:
        read_d += sc["resident"] * r * c                  # resident tiles, once each
        # output blocks i (T x r_i partial sums) accumulated over the row's nc tiles
        s, eb = sc["out"], acc_bytes * sc["out"]
        full = (T * R * eb <= out_b)
        last = (T * r_last * eb <= out_b)
        for n, rows, fits in ((nr - 1, R, full), (1, r_last, last)):
            blk = s * n * T * rows
            write_d += blk
            spill = np.where(fits, 0, (nc - 1) * blk)
            write_a += spill
            read_a += spill
    if MODES[mode].accumulates:
        write_d += sc["drain"] * r * c                    # drained accumulators, once each
    return {"read_data": read_d, "read_acc": read_a, "write_data": write_d,
            "write_acc": write_a}


def simulate(R: int, C: int, r: int, c: int, T: int, mode: str, buffer_bytes,
             data_bytes: float, acc_bytes: float) -> dict[str, int]:
    """Brute force of :func:`dram_elems` for one layer: walk the tiles in order with an LRU
    buffer per role and count every element that moves to or from DRAM."""
    nr, nc = _cdiv(r, R), _cdiv(c, C)
    caps = dict(zip(BUFFERS, buffer_bytes))
    lru = {b: [] for b in BUFFERS}          # [(key, bytes)], most recent last
    cnt = dict.fromkeys(("read_data", "read_acc", "write_data", "write_acc"), 0)

    def access(buf, key, nbytes) -> bool:
        """True on a hit; on a miss inserts the block (if it fits at all), LRU eviction."""
        lst = lru[buf]
        for k, (kk, nb) in enumerate(lst):
            if kk == key:
                lst.append(lst.pop(k))
                return True
        if nbytes <= caps[buf]:
            lst.append((key, nbytes))
            while sum(nb for _, nb in lst) > caps[buf]:
                lst.pop(0)
        return False

    for i in range(nr):
        ri = min(R, r - i * R)
        for j in range(nc):
            cj = min(C, c - j * C)
            if not access("top", ("top", j), T * cj * data_bytes):
                cnt["read_data"] += T * cj
            if MODES[mode].accumulates:
                if not access("left", ("left", i), T * ri * data_bytes):
                    cnt["read_data"] += T * ri
            if MODES[mode].uses_weights:
                cnt["read_data"] += ri * cj                     # resident tile
                held = access("out", ("out", i), T * ri * acc_bytes) and j > 0
                resident = any(k == ("out", i) for k, _ in lru["out"])
                if j > 0 and not held:
                    cnt["read_acc"] += T * ri                   # partial sums back
                if j == nc - 1:
                    cnt["write_data"] += T * ri                 # final result
                elif not resident:
                    cnt["write_acc"] += T * ri                  # partial sums out
            if MODES[mode].accumulates:
                cnt["write_data"] += ri * cj                    # drained accumulators
    return cnt
