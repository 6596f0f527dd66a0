"""Dimensions of a search space: categorical choices, integer and float ranges.

Why explicit labels: NNI's lesson is that auto-numbered labels break saved architectures; every
dimension here carries a stable dotted label (``stage2.op``) chosen by the space author.
Each dimension also records the paper it comes from, shown by ``abacus spaces NAME``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

Value = Any


@dataclass(frozen=True)
class Condition:
    """The dimension is active only when dimension ``label`` takes one of ``values``."""

    label: str
    values: tuple

    def holds(self, arch: Mapping[str, Value]) -> bool:
        return self.label in arch and arch[self.label] in self.values

    def to_dict(self) -> dict:
        return {"label": self.label, "values": list(self.values)}

    def describe(self) -> str:
        vals = ", ".join(repr(v) for v in self.values)
        return f"{self.label} in [{vals}]"


@dataclass(frozen=True)
class Dimension:
    """Base class: a labelled, documented choice. Subclasses define the domain."""

    label: str
    paper: str = field(default="", kw_only=True)
    help: str = field(default="", kw_only=True)
    conditions: tuple[Condition, ...] = field(default=(), kw_only=True)

    kind = "dimension"

    def active(self, arch: Mapping[str, Value]) -> bool:
        return all(c.holds(arch) for c in self.conditions)

    # -- domain hooks ------------------------------------------------------------------------
    def check(self, value: Value) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, rng: random.Random) -> Value:  # pragma: no cover - abstract
        raise NotImplementedError

    def default_value(self) -> Value:  # pragma: no cover - abstract
        raise NotImplementedError

    def domain(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _base_dict(self) -> dict:
        d: dict = {"kind": self.kind, "label": self.label}
        if self.paper:
            d["paper"] = self.paper
        if self.help:
            d["help"] = self.help
        if self.conditions:
            d["conditions"] = [c.to_dict() for c in self.conditions]
        return d

    def to_dict(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Categorical(Dimension):
    choices: tuple = ()
    default: Value = None

    kind = "categorical"

    def __post_init__(self) -> None:
        if len(self.choices) == 0:
            raise ValueError(f"dimension {self.label!r}: choices must be non-empty, got {self.choices!r}")
        if len(set(map(_key, self.choices))) != len(self.choices):
            raise ValueError(f"dimension {self.label!r}: choices must be distinct, got {list(self.choices)!r}")
        if self.default is not None and not _in(self.default, self.choices):
            raise ValueError(f"dimension {self.label!r}: default {self.default!r} is not one of {list(self.choices)!r}")

    def check(self, value: Value) -> str | None:
        if not _in(value, self.choices):
            return f"{self.label}: expected one of {list(self.choices)!r}, found {value!r}"
        return None

    def sample(self, rng: random.Random) -> Value:
        return self.choices[rng.randrange(len(self.choices))]

    def default_value(self) -> Value:
        return self.choices[0] if self.default is None else self.default

    def domain(self) -> str:
        return "{" + ", ".join(str(c) for c in self.choices) + "}"

    def to_dict(self) -> dict:
        d = self._base_dict()
        d["choices"] = list(self.choices)
        if self.default is not None:
            d["default"] = self.default
        return d


@dataclass(frozen=True)
class IntRange(Dimension):
    low: int = 0
    high: int = 0
    step: int = 1
    log: bool = False
    default: int | None = None

    kind = "int"

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"dimension {self.label!r}: low <= high must hold, but got low={self.low}, high={self.high}")
        if self.step < 1:
            raise ValueError(f"dimension {self.label!r}: step >= 1 must hold, but got step={self.step}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError(f"dimension {self.label!r}: a log range needs low >= 1 and step 1, got low={self.low}, step={self.step}")
        if self.default is not None and self.check(self.default):
            raise ValueError(f"dimension {self.label!r}: default {self.default!r} is outside {self.domain()}")

    def check(self, value: Value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{self.label}: expected an integer in {self.domain()}, found {value!r}"
        if not self.low <= value <= self.high or (value - self.low) % self.step:
            return f"{self.label}: expected an integer in {self.domain()}, found {value}"
        return None

    def sample(self, rng: random.Random) -> int:
        if self.log:
            return int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
        n = (self.high - self.low) // self.step
        return self.low + self.step * rng.randint(0, n)

    def default_value(self) -> int:
        return self.low if self.default is None else self.default

    def domain(self) -> str:
        step = f" step {self.step}" if self.step != 1 else ""
        return f"[{self.low}, {self.high}]{step}{' log' if self.log else ''}"

    def to_dict(self) -> dict:
        d = self._base_dict()
        d.update(low=self.low, high=self.high, step=self.step, log=self.log)
        if self.default is not None:
            d["default"] = self.default
        return d


@dataclass(frozen=True)
class FloatRange(Dimension):
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    default: float | None = None

    kind = "float"

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"dimension {self.label!r}: low <= high must hold, but got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"dimension {self.label!r}: a log range needs low > 0, got low={self.low}")
        if self.default is not None and self.check(self.default):
            raise ValueError(f"dimension {self.label!r}: default {self.default!r} is outside {self.domain()}")

    def check(self, value: Value) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{self.label}: expected a number in {self.domain()}, found {value!r}"
        if not self.low <= value <= self.high:
            return f"{self.label}: expected a number in {self.domain()}, found {value}"
        return None

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def default_value(self) -> float:
        if self.default is not None:
            return self.default
        return math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2

    def domain(self) -> str:
        return f"[{self.low:g}, {self.high:g}]{' log' if self.log else ''}"

    def to_dict(self) -> dict:
        d = self._base_dict()
        d.update(low=self.low, high=self.high, log=self.log)
        if self.default is not None:
            d["default"] = self.default
        return d


_KINDS: dict[str, type[Dimension]] = {"categorical": Categorical, "int": IntRange, "float": FloatRange}


def dimension_from_dict(d: Mapping[str, Any]) -> Dimension:
    """Inverse of ``Dimension.to_dict`` (JSON round trip of a space definition)."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"dimension {d.get('label')!r}: 'kind' must be one of {sorted(_KINDS)}, found {kind!r}")
    conds = tuple(Condition(c["label"], tuple(c["values"])) for c in d.pop("conditions", []))
    if kind == "categorical":
        d["choices"] = tuple(d["choices"])
    return _KINDS[kind](conditions=conds, **d)


def _key(v: Value) -> tuple:
    # True == 1 in Python; keep bools distinct from numbers when checking distinct choices.
    return (isinstance(v, bool), v)


_KEYSETS: dict[int, tuple[tuple, frozenset | None]] = {}


def _in(value: Value, choices: tuple) -> bool:
    """Membership that never confuses a bool with 0/1 (JSON keeps ``1`` and ``1.0`` equal anyway).

    The keys of hashable choices are kept in a set per choices tuple (a dict lookup instead of a
    scan: validation runs once per architecture on the cost model's fast path)."""
    hit = _KEYSETS.get(id(choices))
    if hit is None or hit[0] is not choices:
        try:
            keys: frozenset | None = frozenset(_key(c) for c in choices)
        except TypeError:
            keys = None
        hit = _KEYSETS[id(choices)] = (choices, keys)
    if hit[1] is not None:
        try:
            return (isinstance(value, bool), value) in hit[1]
        except TypeError:
            return False
    return any(_key(value) == _key(c) for c in choices)
