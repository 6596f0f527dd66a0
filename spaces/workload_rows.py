"""Workload rows written as numeric arrays (numpy only): the batch path without a dict per row.

A space whose architectures have many rows that are each their own (``tnt``: ~200 rows, most of
them named after their block) spends its time writing dicts, and ``hw_cost`` converting them. Here
a space writes the *numbers* of a group of rows once, as a read-only structured array (``Rows``),
shares it between every place (block index, architecture) it occurs, and hands it over inside a
``RowBlock``: the rows under a name prefix. ``hw_cost.blocks_to_array`` recognises a block by its
``workload_rows`` attribute and converts each distinct ``Rows`` once, vectorised (one numpy pass
over its rows, no Python per row), keyed by the object, so the per-architecture work is one lookup
per block. ``Rows.join`` composes a block of shared parts: the table then holds each part once,
so the cost model computes each distinct row once however many blocks contain it.

Iterating a ``RowBlock`` gives dicts equal to what the space would write (names with the
prefix; a ``NaN`` number or ``-1`` flag is a key the dict does not have), built each time (a
space caches blocks, not their dicts, which serve one architecture at a time), so ``workloads``
(the per-architecture path, ``abacus cost --rows``, the contract test) sees ordinary rows and
flattening an architecture's blocks still gives its ``workloads`` exactly.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

NAN = float("nan")
# the numeric keys of a workload row (docs/architecture.md); NaN = the row does not have the key
NUMBER_KEYS = ("ops", "params", "in_elems", "out_elems", "in_channels", "out_channels", "kernel", "out_pixels",
               "w_bits", "a_bits", "active_ratio", "transform_ops", "tiles")
# flags: 1 / 0 = the key with True / False, -1 = absent
FLAG_KEYS = ("fused", "float")
_KEYS = frozenset({"op", "name", *NUMBER_KEYS, *FLAG_KEYS})
_NANS, _ABSENT = (NAN,) * len(NUMBER_KEYS), (-1,) * len(FLAG_KEYS)
ROW_DTYPE = np.dtype([("op", "U24"), *((k, np.float64) for k in NUMBER_KEYS), *((k, np.int8) for k in FLAG_KEYS)])


class Rows:
    """The numbers of a group of rows (``ROW_DTYPE``, read-only) and their names without prefix.

    ``parts`` is set when the rows are the concatenation of other ``Rows`` (``Rows.join``): the
    cost model then stores each part once and indexes it from every block that contains it (a
    joined ``Rows`` keeps only its parts; its ``data`` and ``names`` are built when asked for)."""

    __slots__ = ("_data", "_names", "_extra", "parts", "size")

    def __init__(self, data: np.ndarray | None, names: Sequence[str] | None, parts: tuple["Rows", ...] = (),
                 extra: Sequence[Mapping[str, Any] | None] | None = None) -> None:
        if not parts:
            if data is None or data.dtype != ROW_DTYPE or data.ndim != 1 or names is None or len(names) != data.size:
                raise ValueError("Rows: expected a 1-d spaces.workload_rows.ROW_DTYPE array and one name per row")
            data.flags.writeable = False
            names = tuple(names)
        self._data = data
        self._names = names
        # keys the cost model does not read (``weight_bytes``, ...), per row, kept for the dicts
        self._extra = tuple(extra) if extra is not None and any(extra) else None
        self.parts = parts
        self.size = sum(p.size for p in parts) if parts else data.size  # type: ignore[union-attr]

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            self._data = np.concatenate([p.data for p in self.parts])
            self._data.flags.writeable = False
        return self._data

    @property
    def names(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(n for p in self.parts for n in p.names)
        return self._names

    @property
    def extra(self) -> tuple[Mapping[str, Any] | None, ...] | None:
        if self.parts and self._extra is None and any(p.extra for p in self.parts):
            self._extra = tuple(e for p in self.parts for e in (p.extra or (None,) * p.size))
        return self._extra

    @classmethod
    def from_dicts(cls, rows: Iterable[Mapping[str, Any]]) -> "Rows":
        """``Rows`` of row dicts written as usual (once per distinct group: the caller caches it).
        Keys the cost model does not read (``weight_bytes``, ...) are kept aside for the dicts."""
        rows = list(rows)
        recs = []
        extra: list[dict | None] = []
        for d in rows:
            g = d.get  # a missing (or None) number becomes NaN, a missing flag -1
            recs.append((d["op"], *map(g, NUMBER_KEYS, _NANS), *map(g, FLAG_KEYS, _ABSENT)))
            extra.append(None if _KEYS.issuperset(d) else {k: v for k, v in d.items() if k not in _KEYS})
        return cls(np.array(recs, dtype=ROW_DTYPE), [str(d.get("name", "")) for d in rows], extra=extra)

    @classmethod
    def join(cls, parts: Sequence["Rows"]) -> "Rows":
        """The rows of ``parts`` one after another, remembering the parts (see the class docstring)."""
        flat = tuple(q for p in parts for q in (p.parts or (p,)))
        if not flat:
            return cls(np.zeros(0, dtype=ROW_DTYPE), ())
        return cls(None, None, flat)

    def __len__(self) -> int:
        return self.size

    def dicts(self, prefix: str = "") -> tuple[dict[str, Any], ...]:
        """The rows as dicts, names prefixed (ints where the number is whole). Fresh dicts, not
        read-only ones: ``hw_cost.workloads_to_array`` converts them without caching them by
        identity (a RowBlock is made per architecture, its dicts would only fill that cache)."""
        out = []
        keys = ROW_DTYPE.names[1:]
        extra = self.extra or (None,) * self.size
        for name, rec, ex in zip(self.names, self.data.tolist(), extra):
            d: dict[str, Any] = {"op": rec[0]}
            for k, v in zip(keys, rec[1:]):
                if k in FLAG_KEYS:
                    if v >= 0:
                        d[k] = bool(v)
                elif v == v:  # not NaN
                    d[k] = int(v) if v.is_integer() and abs(v) < 2 ** 53 else v
            if ex:
                d.update(ex)
            d["name"] = prefix + name
            out.append(d)
        return tuple(out)


class RowBlock(Sequence):
    """A block of an architecture's rows: shared ``Rows`` under a name ``prefix``.

    ``hw_cost.blocks_to_array`` reads ``workload_rows`` (no dicts); iterating gives the dicts."""

    __slots__ = ("workload_rows", "prefix")

    def __init__(self, rows: Rows, prefix: str = "") -> None:
        self.workload_rows = rows
        self.prefix = prefix

    def __len__(self) -> int:
        return self.workload_rows.size

    def __getitem__(self, i):  # type: ignore[override]
        return self.workload_rows.dicts(self.prefix)[i]

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self.workload_rows.dicts(self.prefix))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"RowBlock({len(self)} rows, prefix={self.prefix!r})"

