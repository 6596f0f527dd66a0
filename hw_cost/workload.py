"""The workload protocol (docs/architecture.md) on the cost-model side: validation and the numpy table.

Why a columnar table: the same numbers feed one architecture (``estimate``) and ten thousand
(``estimate_batch``), so both paths build the same table and run the same vectorised engine;
parity between them holds by construction and is tested.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from .params import SFU_CLASSES

# lane kinds: which hardware unit executes an op class
MUL, ADD, XNOR, VEC, MOVE, NONE = 0, 1, 2, 3, 4, 5
MAC_KINDS = (MUL, ADD, XNOR)
KIND_NAMES = {MUL: "mul", ADD: "adder", XNOR: "binary", VEC: "vector", MOVE: "move", NONE: "none"}

# op class -> (lane kind, special-function class or "", flags)
_OPS: dict[str, tuple[int, str]] = {
    "conv": (MUL, ""),
    "linear": (MUL, ""),
    "dwconv": (MUL, ""),
    "transposed_conv": (MUL, ""),
    "matmul": (MUL, ""),
    "adder_conv": (ADD, ""),
    "winograd_adder": (ADD, ""),
    "binary_conv": (XNOR, ""),
    "eltwise": (VEC, "eltwise"),
    "pool": (VEC, "pool"),
    "norm": (VEC, "norm"),
    "softmax": (VEC, "softmax"),
    "gelu": (VEC, "gelu"),
    "upsample": (MOVE, "upsample"),
    "pixel_shuffle": (MOVE, "pixel_shuffle"),
    "gather": (MOVE, "gather"),  # gather/scatter of the active pixels of a spatially sparse conv (FADN)
    "identity": (NONE, ""),
}
OP_NAMES: tuple[str, ...] = tuple(_OPS)
OP_CODE = {n: i for i, n in enumerate(OP_NAMES)}
# Accepted spellings that mean one of the classes above.
ALIASES = {
    "quant_conv": "conv", "quant_linear": "linear", "mul_conv": "conv", "depthwise_conv": "dwconv",
    "adder": "adder_conv", "adder_linear": "adder_conv", "binary": "binary_conv", "xnor": "binary_conv",
    "binary_linear": "binary_conv", "deconv": "transposed_conv", "conv_transpose": "transposed_conv",
    "attention_matmul": "matmul", "bmm": "matmul", "add": "eltwise", "relu": "eltwise", "act": "eltwise",
    "batchnorm": "norm", "layernorm": "norm", "groupnorm": "norm", "silu": "gelu", "sigmoid": "gelu",
    "tanh": "gelu", "pixelshuffle": "pixel_shuffle", "interpolate": "upsample",
    "scatter": "gather",
}
OP_KIND = np.array([_OPS[n][0] for n in OP_NAMES], dtype=np.int8)
OP_SFU = np.array([SFU_CLASSES.index(_OPS[n][1]) if _OPS[n][1] else -1 for n in OP_NAMES], dtype=np.int8)
OP_IS_DW = np.array([n == "dwconv" for n in OP_NAMES])
OP_IS_WINO = np.array([n == "winograd_adder" for n in OP_NAMES])
OP_IS_POOL = np.array([n == "pool" for n in OP_NAMES])

# One row of the structured-array form of the batch path.
WORKLOAD_DTYPE = np.dtype([
    ("arch", np.int64), ("op", np.int16), ("w_bits", np.float64), ("a_bits", np.float64),
    ("is_float", np.bool_), ("ops", np.float64), ("params", np.float64), ("in_elems", np.float64),
    ("out_elems", np.float64), ("in_channels", np.float64), ("out_channels", np.float64),
    ("kernel", np.float64), ("out_pixels", np.float64), ("active_ratio", np.float64),
    ("fused", np.bool_), ("transform_ops", np.float64), ("tiles", np.float64),
])
COLUMNS = WORKLOAD_DTYPE.names


def canonical_op(op: Any) -> str | None:
    """The op class for an ``op`` string, or None when hw_cost does not know it."""
    if not isinstance(op, str):
        return None
    key = op.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in OP_CODE else None


def _num(d: Mapping[str, Any], key: str, default: float, where: str) -> float:
    v = d.get(key, default)
    if v is None:
        return default
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"workload {where}: '{key}' must be a number, got {v!r}") from None
    if not math.isfinite(f) or f < 0:
        raise ValueError(f"workload {where}: '{key}' must be a finite number >= 0, got {v!r}")
    return f


def _row_checked(ai: int, li: int, d: Any, n_batch: int, dbits: float) -> tuple[str, tuple | None, str | None]:
    """Validate one workload dict -> (name, row tuple or None, uncosted label or None). Slow, exact errors."""
    where = f"{ai}:{li}" if n_batch > 1 else f"{li}"
    if not isinstance(d, Mapping):
        raise TypeError(f"workload {where} must be a dict, got {type(d).__name__}")
    name = str(d.get("name") or f"layer{li}")
    op = canonical_op(d.get("op"))
    if op is None:
        return name, None, f"{name} (op={d.get('op')!r})"
    if "ops" not in d and op not in ("identity", "upsample", "pixel_shuffle"):
        raise ValueError(f"workload {where} ({name}): missing 'ops' (number of primitive operations)")
    w_bits = _num(d, "w_bits", dbits, where)
    a_bits = _num(d, "a_bits", dbits, where)
    if op == "binary_conv":
        w_bits, a_bits = 1.0, 1.0
    if w_bits < 1 or a_bits < 1:
        raise ValueError(f"workload {where} ({name}): bits must be >= 1, got w_bits={w_bits}, a_bits={a_bits}")
    is_float = bool(d["float"]) if "float" in d else (max(w_bits, a_bits) >= 32)
    ratio = _num(d, "active_ratio", 1.0, where)
    if ratio > 1.0:
        raise ValueError(f"workload {where} ({name}): 'active_ratio' must be in [0, 1], got {ratio}")
    tr = d.get("transform_ops")
    row = (ai, OP_CODE[op], w_bits, a_bits, is_float, _num(d, "ops", 0.0, where), _num(d, "params", 0.0, where),
           _num(d, "in_elems", 0.0, where), _num(d, "out_elems", 0.0, where), _num(d, "in_channels", 0.0, where),
           _num(d, "out_channels", 0.0, where), _num(d, "kernel", 0.0, where), _num(d, "out_pixels", 0.0, where),
           ratio, bool(d.get("fused", False)), -1.0 if tr is None else _num(d, "transform_ops", -1.0, where),
           _num(d, "tiles", 0.0, where))
    return name, row, None


# Read-only rows (``types.MappingProxyType``) a space's ``workloads_fn`` shares between calls are
# converted once per (row, default_bits): the table keeps them alive, so an id is never reused.
_FROZEN = MappingProxyType
_FROZEN_IDX: dict[tuple[int, float], int] = {}
_FROZEN_KEEP: list[Any] = []
_FROZEN_ROWS: list[tuple] = []          # rows converted one by one, not yet in the table
_FROZEN_NAMES: list[str] = []           # one per table row (by index)
_FROZEN_TABLE: list[np.ndarray] = [np.zeros(0, dtype=WORKLOAD_DTYPE)]  # rows 0 .. len(_FROZEN_NAMES) - 1, in chunks
_FROZEN_MAX = 200_000
_CONTENT: dict[bytes, int] = {}         # a converted row's bytes -> its table index (rows of ``Rows``)


def _n_rows() -> int:
    return len(_FROZEN_NAMES)


def _frozen_append(row: tuple, name: str) -> int:
    """Add one converted row to the table; its index."""
    i = len(_FROZEN_NAMES)
    _FROZEN_ROWS.append(row)
    _FROZEN_NAMES.append(name)
    return i


def _frozen_flush() -> None:
    if _FROZEN_ROWS:
        _FROZEN_TABLE.append(np.array(_FROZEN_ROWS, dtype=WORKLOAD_DTYPE))
        _FROZEN_ROWS.clear()


def _frozen_index(d: Any, dbits: float) -> int:
    key = (id(d), dbits)
    i = _FROZEN_IDX.get(key)
    if i is None:
        name, row, unc = _row_checked(0, _n_rows(), d, 1, dbits)
        if row is None:
            return -1
        _FROZEN_KEEP.append(d)
        i = _FROZEN_IDX[key] = _frozen_append(row, str(d["name"]) if d.get("name") else "")  # unnamed: "layer<i>" per architecture
    return i


def _frozen_trim() -> None:
    if _n_rows() > _FROZEN_MAX or len(_BLOCK_IDX) > _FROZEN_MAX:
        _FROZEN_IDX.clear(), _FROZEN_KEEP.clear(), _FROZEN_ROWS.clear(), _FROZEN_NAMES.clear(), _BLOCK_IDX.clear()
        _CONTENT.clear()
        _FROZEN_TABLE[:] = [np.zeros(0, dtype=WORKLOAD_DTYPE)]


def _frozen_table() -> np.ndarray:
    _frozen_flush()
    if len(_FROZEN_TABLE) > 1:
        _FROZEN_TABLE[:] = [np.concatenate(_FROZEN_TABLE)]
    return _FROZEN_TABLE[0]


def _frozen_batch(batch: Sequence[Sequence[Any]], dbits: float) -> tuple[np.ndarray, list[list[str]]] | None:
    """The structured array of a batch made only of read-only rows, by index into a table of rows
    converted once (no per-row Python conversion after the first time a row is seen); None when a
    row is not read-only or not costed (the general path then handles the batch)."""
    _frozen_trim()
    idx: list[int] = []
    counts: list[int] = []
    get = _FROZEN_IDX.get
    for wls in batch:
        if isinstance(wls, Mapping) or isinstance(wls, (str, bytes)):
            return None
        n0 = len(idx)
        for d in wls:
            if type(d) is not _FROZEN:
                return None
            i = get((id(d), dbits))
            if i is None:
                _frozen_add(wls, dbits)  # this architecture's new rows together
                i = get((id(d), dbits))
            if i is None:
                i = _frozen_index(d, dbits)
                if i < 0:
                    return None
            idx.append(i)
        counts.append(len(idx) - n0)
    table = _frozen_table()
    ii = np.fromiter(idx, dtype=np.int64, count=len(idx))
    arr = table[ii]
    arr["arch"] = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    names, k = [], 0
    for c in counts:
        names.append([_FROZEN_NAMES[j] or f"layer{li}" for li, j in enumerate(idx[k:k + c])])
        k += c
    return arr, names


# blocks (tuples of read-only rows a space caches and shares) -> their rows' indices in the table
_BLOCK_IDX: dict[tuple[int, float], np.ndarray] = {}


class WorkloadBatch(NamedTuple):
    """Many architectures' workloads as distinct rows and an index: row ``r`` of architecture
    ``arch[r]`` is ``table[idx[r]]`` (``arch`` ascending; ``n_arch`` counts architectures, one may
    have no rows). ``estimate_batch``/``estimate_reports`` take it whole and compute each distinct
    row's terms once; ``to_array()`` gives the ``WORKLOAD_DTYPE`` table ``workloads_to_array`` would."""

    table: np.ndarray
    idx: np.ndarray
    arch: np.ndarray
    n_arch: int

    def to_array(self) -> np.ndarray:
        arr = self.table[self.idx]
        arr["arch"] = self.arch
        return arr


def _block_index(block: Any, dbits: float) -> np.ndarray | None:
    _frozen_add(block, dbits)
    ii = []
    for d in block:
        if type(d) is not _FROZEN:
            return None
        i = _frozen_index(d, dbits)
        if i < 0:
            return None
        ii.append(i)
    ix = _BLOCK_IDX[(id(block), dbits)] = np.array(ii, dtype=np.int64)
    _FROZEN_KEEP.append(block)  # keeps the id unique while the entry lives
    return ix


def _blocks_index_many(blocks: Sequence[tuple], dbits: float) -> bool:
    """Index blocks of read-only dicts: the rows not converted yet, of all blocks at once, by the
    fast conversion and one vectorised number check; a batch it cannot take goes block by block
    through ``_block_index`` (exact errors, uncosted rows). False when a block cannot be indexed."""
    blocks = list({id(b): b for b in blocks}.values())
    new: dict[int, Any] = {}
    idx = _FROZEN_IDX
    for b in blocks:
        for d in b:
            if type(d) is not _FROZEN:
                return False
            if (id(d), dbits) not in idx:
                new[id(d)] = d
    arr = None
    if new:
        try:
            arr = np.array([_fast_row(d, 0, dbits) for d in new.values()], dtype=WORKLOAD_DTYPE)
            if _bad_rows(arr).any():
                arr = None
        except Exception:
            arr = None
        if arr is None:
            return all(_block_index(b, dbits) is not None for b in blocks)
        _frozen_flush()
        _FROZEN_TABLE.append(arr)
        for d in new.values():
            idx[(id(d), dbits)] = len(_FROZEN_NAMES)
            _FROZEN_KEEP.append(d)
            _FROZEN_NAMES.append(str(d["name"]) if d.get("name") else "")
    for b in blocks:
        _BLOCK_IDX[(id(b), dbits)] = np.array([idx[(id(d), dbits)] for d in b], dtype=np.int64)
        _FROZEN_KEEP.append(b)
    return True


def _rows_columns(data: np.ndarray, dbits: float) -> np.ndarray | None:
    """A space's numeric rows (``spaces.workload_rows.ROW_DTYPE``: NaN = key absent, flag -1 =
    absent) -> ``WORKLOAD_DTYPE`` rows, vectorised, by the rules of the dict conversion
    (``_fast_row``); None when a row needs the checked path (unknown op, missing ``ops``, a
    number it would refuse), which then reports it from the rows as dicts."""
    n = data.size
    arr = np.zeros(n, dtype=WORKLOAD_DTYPE)
    names, inv = np.unique(data["op"], return_inverse=True)
    codes = [OP_CODE.get(str(o), OP_CODE.get(canonical_op(str(o)) or "", -1)) for o in names]
    if -1 in codes:
        return None
    op = np.asarray(codes, dtype=np.int16)[inv.reshape(-1)]
    arr["op"] = op
    ops = data["ops"]
    if (np.isnan(ops) & ~np.isin(op, list(_NO_OPS))).any():  # 'ops' missing where it is required
        return None
    w = np.where(np.isnan(data["w_bits"]), dbits, data["w_bits"])
    a = np.where(np.isnan(data["a_bits"]), dbits, data["a_bits"])
    binary = op == _BIN_CODE
    w[binary] = 1.0
    a[binary] = 1.0
    arr["w_bits"], arr["a_bits"] = w, a
    fl = data["float"]
    arr["is_float"] = np.where(fl < 0, (w >= 32) | (a >= 32), fl > 0)
    for k in ("ops", "params", "in_elems", "out_elems", "in_channels", "out_channels", "kernel", "out_pixels", "tiles"):
        v = data[k]
        arr[k] = np.where(np.isnan(v), 0.0, v)
    arr["active_ratio"] = np.where(np.isnan(data["active_ratio"]), 1.0, data["active_ratio"])
    arr["transform_ops"] = np.where(np.isnan(data["transform_ops"]), -1.0, data["transform_ops"])
    arr["fused"] = data["fused"] > 0
    if n and _bad_rows(arr).any():
        return None
    return arr


def _rows_index_many(many: Sequence[Any], dbits: float) -> bool:
    """Index a space's ``Rows`` (``spaces.workload_rows``) in the table, converting every leaf not
    seen yet in one vectorised pass; False when a row needs the checked path. Converted once per
    object and ``default_bits``; a joined ``Rows`` indexes its parts, so a part shared by many
    blocks is one set of table rows, and rows equal in content (the same layer in another block,
    under another name) are one table row: the engine computes each distinct row once."""
    many = list({id(r): r for r in many}.values())
    leaves: dict[int, Any] = {}
    for rows in many:
        for leaf in (getattr(rows, "parts", ()) or (rows,)):
            if (id(leaf), dbits) not in _BLOCK_IDX:
                leaves[id(leaf)] = leaf
    if leaves:
        new_leaves = list(leaves.values())
        data = [leaf.data for leaf in new_leaves]
        if len(data) > 1:  # one buffer (np.concatenate would promote the fields of every array)
            dt = data[0].dtype
            data = [np.frombuffer(b"".join(d.astype(dt, copy=False).tobytes() for d in data), dtype=dt)]
        arr = _rows_columns(data[0], dbits)
        if arr is None:
            return False
        _frozen_flush()
        raw, sz, n0 = arr.tobytes(), arr.dtype.itemsize, _n_rows()
        got: list[int] = []
        new: list[int] = []
        content = _CONTENT
        for j in range(arr.size):
            k = raw[j * sz:(j + 1) * sz]
            i = content.get(k)
            if i is None:
                i = content[k] = n0 + len(new)
                new.append(j)
            got.append(i)
        if new:
            _FROZEN_TABLE.append(arr[new])
            names = [n for leaf in new_leaves for n in leaf.names]
            _FROZEN_NAMES.extend(names[j] for j in new)
        ix_all = np.array(got, dtype=np.int64)
        k = 0
        for leaf in new_leaves:
            n = leaf.data.size
            _BLOCK_IDX[(id(leaf), dbits)] = ix_all[k:k + n]
            _FROZEN_KEEP.append(leaf)
            k += n
    for rows in many:
        key = (id(rows), dbits)
        if key not in _BLOCK_IDX:  # a joined Rows: its parts' indices
            _BLOCK_IDX[key] = np.concatenate([_BLOCK_IDX[(id(q), dbits)] for q in rows.parts])
            _FROZEN_KEEP.append(rows)
    return True


def blocks_to_array(batch: Sequence[Sequence[Sequence[Mapping[str, Any]]] | None], default_bits: int | None = None,
                    ) -> WorkloadBatch | None:
    """Architectures given as sequences of *blocks* -> a ``WorkloadBatch``, without touching rows.

    A block is a tuple of read-only rows (``types.MappingProxyType``) that a space's ``workloads_fn``
    caches and shares between architectures (``SearchSpace.workload_blocks`` returns them), or a
    block with a ``workload_rows`` attribute (``spaces.workload_rows.RowBlock``: numeric rows the
    space wrote once, under a name prefix). Each distinct block (each distinct ``Rows``) is
    converted once, the new ones of a batch together in one numpy pass, so assembling a batch
    costs one lookup per block, one index concatenation and one gather, no Python work per row;
    rows of ``Rows`` are stored once per content. Returns None when a block holds a row that is
    not read-only or not costed, or an architecture is None: the caller then uses
    ``workloads_to_array`` on the flattened rows (same numbers, with names, uncosted lists and
    exact error messages)."""
    dbits = 32.0 if default_bits is None else float(default_bits)
    _frozen_trim()
    parts: list[Any] = []
    counts: list[int] = []
    pending: list[tuple[int, Any]] = []  # (position in parts, Rows) not converted yet
    pending_t: list[tuple[int, tuple]] = []  # (position in parts, block of read-only dicts) not indexed yet
    get = _BLOCK_IDX.get
    tup = tuple
    for blocks in batch:
        if blocks is None:
            return None
        c = 0
        for b in blocks:
            if type(b) is tup:
                ix = get((id(b), dbits))
                if ix is None:
                    pending_t.append((len(parts), b))
                    parts.append(None)
                    c += len(b)
                    continue
            else:
                rows = getattr(b, "workload_rows", None)  # a RowBlock: its shared numeric rows
                if rows is None:
                    return None
                ix = get((id(rows), dbits))
                if ix is None:
                    pending.append((len(parts), rows))
                    parts.append(None)
                    c += rows.size
                    continue
            parts.append(ix)
            c += ix.size
        counts.append(c)
    if pending_t:  # every new block of read-only dicts of the batch converted together
        if not _blocks_index_many([b for _, b in pending_t], dbits):
            return None
        for pos, b in pending_t:
            parts[pos] = _BLOCK_IDX[(id(b), dbits)]
    if pending:  # every new Rows of the batch converted in one numpy pass
        if not _rows_index_many([r for _, r in pending], dbits):
            return None
        for pos, rows in pending:
            parts[pos] = _BLOCK_IDX[(id(rows), dbits)]
    idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    arch = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    # keep only the rows this batch uses (the cache holds every space's rows seen so far)
    table = _frozen_table()
    used = np.zeros(table.size, dtype=bool)
    used[idx] = True
    keep = np.flatnonzero(used)
    remap = np.zeros(table.size, dtype=np.int64)
    remap[keep] = np.arange(keep.size)
    return WorkloadBatch(table[keep], remap[idx], arch, len(counts))


_BIN_CODE = OP_CODE["binary_conv"]
_NO_OPS = frozenset(OP_CODE[k] for k in ("identity", "upsample", "pixel_shuffle"))


def _fast_row(d: Any, ai: int, dbits: float) -> tuple:
    """One workload dict -> its row tuple with raw values (numpy converts them; the caller checks the
    numbers vectorised). Raises on anything unusual: the caller then takes the checked path."""
    g = d.get
    opn = g("op")
    c = OP_CODE.get(opn)
    if c is None:
        c = OP_CODE.get(ALIASES.get(opn.strip().lower(), opn.strip().lower()))
        if c is None:
            raise KeyError(opn)
    if c not in _NO_OPS and "ops" not in d:
        raise KeyError("ops")
    wb = g("w_bits")
    ab = g("a_bits")
    if wb is None:
        wb = dbits
    if ab is None:
        ab = dbits
    if c == _BIN_CODE:
        wb = ab = 1.0
    fl = g("float")
    tr = g("transform_ops")
    ar = g("active_ratio")
    return (ai, c, wb, ab, (wb >= 32 or ab >= 32) if fl is None else bool(fl), g("ops") or 0,
            g("params") or 0, g("in_elems") or 0, g("out_elems") or 0, g("in_channels") or 0,
            g("out_channels") or 0, g("kernel") or 0, g("out_pixels") or 0, 1.0 if ar is None else ar,
            bool(g("fused", False)), -1.0 if tr is None else tr, g("tiles") or 0)


def _bad_rows(arr: np.ndarray) -> np.ndarray:
    """Rows whose numbers the checked path would refuse (not finite, negative, ratio > 1, bits < 1)."""
    num = np.stack([arr[k] for k in ("w_bits", "a_bits", "ops", "params", "in_elems", "out_elems", "in_channels",
                                     "out_channels", "kernel", "out_pixels", "active_ratio", "tiles")], axis=1)
    bad = ~np.isfinite(num).all(1) | (num < 0).any(1) | (arr["active_ratio"] > 1) | (arr["w_bits"] < 1) | (arr["a_bits"] < 1)
    return bad | ((arr["transform_ops"] < 0) & (arr["transform_ops"] != -1.0))


def _frozen_add(rows: Sequence[Any], dbits: float) -> None:
    """Convert the read-only rows not yet in the table together: the fast conversion and one
    vectorised number check (4x cheaper per row than the checked path), so a space whose rows are
    mostly new (``tnt``: each architecture's blocks are its own) is not held up converting them.
    Rows it cannot take are left to ``_frozen_index`` (which raises the one-line error, or skips)."""
    new = {id(d): d for d in rows if type(d) is _FROZEN and (id(d), dbits) not in _FROZEN_IDX}
    if not new:
        return
    try:
        conv = [_fast_row(d, 0, dbits) for d in new.values()]
        arr = np.array(conv, dtype=WORKLOAD_DTYPE)
    except Exception:
        return
    if _bad_rows(arr).any():
        return
    _frozen_flush()
    _FROZEN_TABLE.append(arr)
    for d in new.values():
        _FROZEN_IDX[(id(d), dbits)] = len(_FROZEN_NAMES)
        _FROZEN_KEEP.append(d)
        _FROZEN_NAMES.append(str(d["name"]) if d.get("name") else "")


def workloads_to_array(batch: Sequence[Sequence[Mapping[str, Any]]], default_bits: int | None = None,
                       ) -> tuple[np.ndarray, list[list[str]], list[list[str]]]:
    """Lists of workload dicts (one list per architecture) -> (structured array, names, uncosted).

    Bits missing from a dict default to ``default_bits`` (or 32 = float32); binary ops are 1 bit.
    ``uncosted[i]`` lists the names of architecture i's layers whose ``op`` hw_cost does not know;
    they are left out of the table and reported, never counted as zero silently. A batch made only
    of read-only rows (``types.MappingProxyType``, which a space's ``workloads_fn`` may share between
    architectures) is assembled by index from rows converted once. Otherwise a fast loop
    builds the rows; any row it cannot take (or that fails the numeric checks) is redone by the
    checked path, which raises the one-line error.
    """
    dbits = 32.0 if default_bits is None else float(default_bits)
    fast = _frozen_batch(batch, dbits)
    if fast is not None:
        return fast[0], fast[1], [[] for _ in batch]
    rows: list[tuple] = []
    names: list[list[str]] = []
    uncosted: list[list[str]] = []
    nb = len(batch)
    for ai, wls in enumerate(batch):
        if isinstance(wls, Mapping) or isinstance(wls, (str, bytes)):
            raise TypeError(f"architecture {ai}: expected a list of workload dicts, got {type(wls).__name__}")
        an: list[str] = []
        au: list[str] = []
        for li, d in enumerate(wls):
            try:
                rows.append(_fast_row(d, ai, dbits))
                an.append(d.get("name") or f"layer{li}")
            except Exception:
                name, row, unc = _row_checked(ai, li, d, nb, dbits)
                if row is None:
                    au.append(unc)  # type: ignore[arg-type]
                else:
                    rows.append(row)
                    an.append(name)
        names.append(an)
        uncosted.append(au)
    try:
        arr = np.array(rows, dtype=WORKLOAD_DTYPE) if rows else np.zeros(0, dtype=WORKLOAD_DTYPE)
    except (TypeError, ValueError, OverflowError):
        # some value numpy cannot convert (a string, None): redo every row with exact checks
        rows = []
        for ai, wls in enumerate(batch):
            for li, d in enumerate(wls):
                _, row, _ = _row_checked(ai, li, d, nb, dbits)
                if row is not None:
                    rows.append(row)
        arr = np.array(rows, dtype=WORKLOAD_DTYPE)
    if arr.size:
        bad = _bad_rows(arr)
        if bad.any():
            i = int(np.argmax(bad))
            ai = int(arr["arch"][i])
            li = int(np.sum(arr["arch"][:i] == ai))
            # find the dict (uncosted rows were skipped) and let the checked path raise its message
            k = -1
            for lj, d in enumerate(batch[ai]):
                if canonical_op(d.get("op") if isinstance(d, Mapping) else None) is not None:
                    k += 1
                    if k == li:
                        _row_checked(ai, lj, d, nb, dbits)
            raise ValueError(f"workload {ai}:{li}: invalid numbers")
        names = [[str(n) for n in an] for an in names]
    return arr, names, uncosted


def check_array(arr: np.ndarray) -> np.ndarray:
    """Validate a structured workload array (the fast path skips per-dict checks)."""
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None:
        raise TypeError("structured workload array expected (see hw_cost.WORKLOAD_DTYPE)")
    missing = [c for c in COLUMNS if c not in arr.dtype.names]
    if missing:
        raise ValueError(f"structured workload array is missing fields {missing}")
    if arr.size and np.any(np.diff(arr["arch"]) < 0):
        raise ValueError("structured workload array: 'arch' must be sorted ascending (rows of one architecture together)")
    if arr.size and (arr["op"].min() < 0 or arr["op"].max() >= len(OP_NAMES)):
        raise ValueError(f"structured workload array: 'op' codes must be in [0, {len(OP_NAMES)})")
    return arr


def iter_op_names() -> Iterable[str]:
    return iter(OP_NAMES)
