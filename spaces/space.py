"""``SearchSpace``: ordered, labelled dimensions plus what turns an architecture into work.

An *architecture* (``Arch``) is a plain ``dict`` from dotted label to value, holding the active
dimensions only. It is JSON-serialisable and identified by ``arch_id`` (a hash of its canonical
JSON), so any saved architecture can be replayed without Optuna or the search engine.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from spaces.dimensions import Dimension, dimension_from_dict

Arch = dict[str, Any]


class InvalidArchitectureError(ValueError):
    """All problems of an architecture, one per line after a summary line."""

    def __init__(self, space: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"architecture is not valid for space {space!r}: " + "; ".join(self.problems))


def canonical_json(arch: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace: the form that ``arch_id`` hashes."""
    return json.dumps(dict(arch), sort_keys=True, separators=(",", ":"))


def arch_id(arch: Mapping[str, Any]) -> str:
    """Stable 12-hex-digit id of an architecture (sha256 of its canonical JSON)."""
    return hashlib.sha256(canonical_json(arch).encode()).hexdigest()[:12]


@dataclass
class SearchSpace:
    """A named, ordered set of dimensions.

    ``builder`` and ``workloads_fn`` are ``"module:function"`` strings (or callables) so this
    package stays free of torch: ``supernets.build`` resolves the builder, and the cost model may
    call ``workloads(arch, input_shape)`` to cost an architecture without building it.
    ``presets`` maps names to (possibly partial) architectures completed with defaults.
    """

    name: str
    dimensions: Sequence[Dimension]
    description: str = ""
    builder: str | Callable | None = None
    workloads_fn: str | Callable | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # builder options (a config's ``space_options``): passed to the builder and to ``workloads_fn``
    # as keywords, so a network variant is chosen once and both cost paths see it
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dimensions = tuple(self.dimensions)
        labels = [d.label for d in self.dimensions]
        dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
        if dupes:
            raise ValueError(f"space {self.name!r}: dimension labels must be unique, found duplicates {dupes}")
        seen: set[str] = set()
        for d in self.dimensions:
            for c in d.conditions:
                if c.label not in seen:
                    raise ValueError(f"space {self.name!r}: condition of {d.label!r} refers to {c.label!r}, which must be an earlier dimension")
            seen.add(d.label)
        for pname, partial in self.presets.items():
            try:
                self.validate(self.complete(partial))
            except InvalidArchitectureError as exc:
                raise ValueError(f"space {self.name!r}: preset {pname!r} is invalid: {exc}") from None

    # -- lookup ----------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [d.label for d in self.dimensions]

    def __getitem__(self, label: str) -> Dimension:
        for d in self.dimensions:
            if d.label == label:
                return d
        raise KeyError(f"space {self.name!r} has no dimension {label!r}")

    def __len__(self) -> int:
        return len(self.dimensions)

    # -- architectures ---------------------------------------------------------------------
    def sample(self, seed: int | random.Random | None = None) -> Arch:
        """A random valid architecture; the same seed gives the same architecture."""
        rng = seed if isinstance(seed, random.Random) else random.Random(seed)
        arch: Arch = {}
        for d in self.dimensions:
            if d.active(arch):
                arch[d.label] = d.sample(rng)
        return arch

    def default(self) -> Arch:
        arch: Arch = {}
        for d in self.dimensions:
            if d.active(arch):
                arch[d.label] = d.default_value()
        return arch

    def complete(self, partial: Mapping[str, Any]) -> Arch:
        """Fill missing active dimensions with defaults and drop inactive ones (in order)."""
        arch: Arch = {}
        for d in self.dimensions:
            if d.active(arch):
                arch[d.label] = partial[d.label] if d.label in partial else d.default_value()
        return arch

    def preset(self, name: str) -> Arch:
        if name not in self.presets:
            raise KeyError(f"space {self.name!r} has no preset {name!r}; presets: {sorted(self.presets) or 'none'}")
        return self.complete(self.presets[name])

    def problems(self, arch: Mapping[str, Any]) -> list[str]:
        """Every problem of ``arch`` (unknown labels, missing or out-of-domain values, inactive values)."""
        if not isinstance(arch, Mapping):
            return [f"expected a mapping of dimension labels to values, found {type(arch).__name__}"]
        out: list[str] = []
        known = set(self.labels)
        for label in arch:
            if label not in known:
                out.append(f"{label}: unknown dimension (known: {', '.join(self.labels)})")
        for d in self.dimensions:
            if not d.active(arch):
                if d.label in arch:
                    conds = " and ".join(c.describe() for c in d.conditions)
                    out.append(f"{d.label}: set but inactive (active only when {conds})")
                continue
            if d.label not in arch:
                out.append(f"{d.label}: missing (expected {d.domain()})")
                continue
            msg = d.check(arch[d.label])
            if msg:
                out.append(msg)
        return out

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without derived caches, rebuilt on first use: the compiled validation plan is
        generated code that pickle refuses and cloudpickle ships by value, with every trial's
        spec sent to a Ray worker (measured: ~45 ms a trial in the 10,000-trial benchmark)."""
        state = dict(self.__dict__)
        state.pop("_plan", None)
        return state

    def validate(self, arch: Mapping[str, Any]) -> Arch:
        """Return ``arch`` in dimension order, or raise listing all problems at once."""
        if type(arch) is dict:
            plan = self.__dict__.get("_plan")
            if plan is None or plan[0] is not self.dimensions:
                plan = self.__dict__["_plan"] = (self.dimensions, _compiled_validation(_validation_plan(self.dimensions)))
            out = plan[1](arch)
            if out is not None:
                return out
        problems = self.problems(arch)
        if problems:
            raise InvalidArchitectureError(self.name, problems)
        return {d.label: arch[d.label] for d in self.dimensions if d.label in arch}

    def arch_id(self, arch: Mapping[str, Any]) -> str:
        return arch_id(self.validate(arch))

    def workloads(self, arch: Mapping[str, Any], input_shape: Sequence[int], **task: Any) -> list[dict] | None:
        """Per-layer workload dicts (see docs/architecture.md) without building torch modules, or
        None when the space does not describe its workloads (or not this architecture). ``task``
        carries what the builder would get besides the shape (``num_classes``)."""
        if self.workloads_fn is None:
            return None
        fn, names = _resolved(self.workloads_fn)
        if self.options:
            task = {**self.options, **task}
        kw = task if names is None else {k: v for k, v in task.items() if k in names}
        return fn(self.validate(arch), tuple(input_shape), **kw)

    def workload_blocks(self, archs: Sequence[Mapping[str, Any]], input_shape: Sequence[int],
                        **task: Any) -> list[Sequence[Sequence[Mapping[str, Any]]] | None] | None:
        """``workloads`` for many architectures, each as a sequence of row *blocks* (the batch path).

        A ``workloads_fn`` with a ``blocks`` attribute (same signature, returning the tuples of
        read-only rows it caches) hands its blocks over as they are, which ``hw_cost.blocks_to_array``
        turns into one table without any per-row work; otherwise each architecture's rows are one
        block. Flattening an architecture's blocks gives ``workloads(arch, ...)`` exactly. None
        when the space has no ``workloads_fn``; an entry is None where ``workloads`` returns None."""
        if self.workloads_fn is None:
            return None
        flat, names = _resolved(self.workloads_fn)
        fn = getattr(flat, "blocks", None) or flat
        wrap = fn is flat
        if self.options:
            task = {**self.options, **task}
        kw = task if names is None else {k: v for k, v in task.items() if k in names}
        shape = tuple(input_shape)
        validate = self.validate
        if not wrap:
            return [fn(validate(a), shape, **kw) for a in archs]
        out: list[Sequence[Sequence[Mapping[str, Any]]] | None] = []
        for a in archs:
            rows = fn(validate(a), shape, **kw)
            out.append(None if rows is None else [rows])
        return out

    def with_options(self, options: Mapping[str, Any]) -> "SearchSpace":
        """A copy whose builder and ``workloads_fn`` get these keyword options (``space_options``)."""
        import dataclasses

        if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
            raise ValueError(f"space_options: expected a mapping of option names to values, found {options!r}")
        return dataclasses.replace(self, options={**self.options, **options}) if options else self

    def restricted(self, narrow: Mapping[str, Any]) -> "SearchSpace":
        """A copy whose dimensions are narrowed: a list of choices (a subset, for categorical
        dimensions) or ``[low, high]`` inside the range (int/float). Labels and conditions stay,
        so architectures of the narrowed space are valid architectures of this one."""
        import dataclasses

        from spaces.dimensions import Categorical, FloatRange, IntRange

        unknown = [k for k in narrow if k not in self.labels]
        if unknown:
            raise ValueError(f"space {self.name!r}: cannot narrow unknown dimension(s) {unknown}; known: {', '.join(self.labels)}")
        dims = []
        for d in self.dimensions:
            if d.label not in narrow:
                dims.append(d)
                continue
            v = narrow[d.label]
            if isinstance(d, Categorical):
                values = tuple(v) if isinstance(v, (list, tuple)) else (v,)
                bad = [x for x in values if d.check(x)]
                if bad or not values:
                    raise ValueError(f"{d.label}: expected a non-empty subset of {list(d.choices)!r}, found {list(values)!r}")
                default = d.default if d.default in values else values[0]
                dims.append(dataclasses.replace(d, choices=values, default=default))
            elif isinstance(d, (IntRange, FloatRange)):
                if not (isinstance(v, (list, tuple)) and len(v) == 2 and not d.check(v[0]) and not d.check(v[1]) and v[0] <= v[1]):
                    raise ValueError(f"{d.label}: expected [low, high] inside {d.domain()}, found {v!r}")
                default = d.default if d.default is not None and v[0] <= d.default <= v[1] else None
                dims.append(dataclasses.replace(d, low=v[0], high=v[1], default=default))
            else:  # pragma: no cover - no other kinds exist
                raise TypeError(f"{d.label}: cannot narrow a {type(d).__name__}")
        presets = {}
        for name, partial in self.presets.items():
            try:
                SearchSpace(self.name, dims).validate(SearchSpace(self.name, dims).complete(partial))
                presets[name] = partial
            except (InvalidArchitectureError, ValueError):
                continue  # a preset outside the narrowed space is dropped
        return SearchSpace(self.name, dims, self.description, self.builder, self.workloads_fn, presets, dict(self.options))

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "builder": self.builder if isinstance(self.builder, str) or self.builder is None else _qualname(self.builder),
            "workloads_fn": self.workloads_fn if isinstance(self.workloads_fn, str) or self.workloads_fn is None else _qualname(self.workloads_fn),
            "dimensions": [d.to_dict() for d in self.dimensions],
            "presets": {k: dict(v) for k, v in self.presets.items()},
            **({"options": dict(self.options)} if self.options else {}),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpace":
        return cls(
            name=d["name"],
            dimensions=[dimension_from_dict(x) for x in d["dimensions"]],
            description=d.get("description", ""),
            builder=d.get("builder"),
            workloads_fn=d.get("workloads_fn"),
            presets=d.get("presets", {}),
            options=d.get("options", {}),
        )

    @classmethod
    def from_json(cls, text: str) -> "SearchSpace":
        return cls.from_dict(json.loads(text))


_MISSING = object()
_INF = float("inf")


_CAT, _CAT_BOOL, _INT, _FLOAT, _OTHER = range(5)


def _validation_plan(dims: Sequence[Dimension]) -> list[tuple]:
    """Per dimension (label, conditions as (label, values), kind, a, b, c): what the fast path of
    ``validate`` checks inline (it runs once per architecture on the cost model's 10,000
    architectures/s path). Each check accepts exactly the values ``Dimension.check`` accepts, or
    refuses some of them (the checked path then decides)."""
    from spaces.dimensions import Categorical, FloatRange, IntRange

    plan = []
    for d in dims:
        conds = tuple((c.label, c.values) for c in d.conditions)
        entry: tuple = (_OTHER, d, None, None)
        if isinstance(d, Categorical):
            try:
                if all(type(c) is bool for c in d.choices):
                    entry = (_CAT_BOOL, frozenset(d.choices), None, None)
                elif not any(isinstance(c, bool) for c in d.choices):
                    entry = (_CAT, frozenset(d.choices), None, None)
            except TypeError:
                pass  # unhashable choices: the dimension's own check
        elif isinstance(d, IntRange):
            entry = (_INT, d.low, d.high, d.step)
        elif isinstance(d, FloatRange):
            entry = (_FLOAT, d.low, d.high, None)
        plan.append((d.label, conds) + entry)
    return plan


def _compiled_validation(plan: list) -> Callable[[dict], Arch | None]:
    """``validate``'s fast path for one plan, compiled into a function of its own with the loop
    unrolled (a tenth of a microsecond per dimension instead of several: validation runs once per
    architecture on the 10,000 architectures/s path). Only generated names go into the source;
    labels, value sets and bounds are constants of the function's namespace. It returns the
    architecture in dimension order or None (the checked path then decides); it never accepts what
    the checked path refuses (``tests/spaces/test_space.py``)."""
    ns: dict[str, Any] = {"_miss": _MISSING, "_INF": _INF}
    lines = ["def _validate(arch):", " get = arch.get", " out = {}", " try:"]
    for i, (label, conds, kind, a, b, c) in enumerate(plan):
        ns[f"L{i}"], ns[f"A{i}"], ns[f"B{i}"], ns[f"C{i}"] = label, a, b, c
        pad = "  "
        if conds:
            tests = []
            for j, (cl, values) in enumerate(conds):
                ns[f"K{i}_{j}"], ns[f"V{i}_{j}"] = cl, values
                tests.append(f"(v := get(K{i}_{j}, _miss)) is not _miss and v in V{i}_{j}")
            lines.append(f"  if {' and '.join(tests)}:")
            pad = "   "
        lines.append(f"{pad}v = get(L{i}, _miss)")
        check = {
            _CAT: f"v is _miss or v not in A{i} or type(v) is bool",
            _INT: f"v is _miss or type(v) is not int or not A{i} <= v <= B{i} or (v - A{i}) % C{i}",
            _FLOAT: f"v is _miss or (type(v) is not float and type(v) is not int) or not A{i} <= v <= B{i} or not -_INF < v < _INF",
            _CAT_BOOL: f"v is _miss or type(v) is not bool or v not in A{i}",
            _OTHER: f"v is _miss or A{i}.check(v) is not None",
        }[kind]
        lines += [f"{pad}if {check}:", f"{pad} return None", f"{pad}out[L{i}] = v"]
        if conds:
            lines += [f"  elif L{i} in arch:", "   return None"]
    lines += [" except TypeError:", "  return None", " return out if len(out) == len(arch) else None"]
    exec(compile("\n".join(lines), "<spaces.space validation>", "exec"), ns)  # our own generated source
    return ns["_validate"]


def resolve(target: str | Callable) -> Callable:
    """Turn ``"package.module:function"`` into the function (callables pass through)."""
    if callable(target):
        return target
    import importlib

    module, _, attr = str(target).partition(":")
    if not module or not attr:
        raise ValueError(f"expected 'package.module:function', found {target!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


_RESOLVED: dict[Any, tuple[Callable, frozenset | None]] = {}


def _resolved(target: str | Callable) -> tuple[Callable, frozenset | None]:
    """(function, keyword names it takes or None for ``**kwargs``), cached: resolving and inspecting
    once per target keeps ``SearchSpace.workloads`` on the 10,000 architectures/s path."""
    hit = _RESOLVED.get(target)
    if hit is None:
        import inspect

        fn = resolve(target)
        params = inspect.signature(fn).parameters.values()
        names = None if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params) else frozenset(p.name for p in params)
        hit = _RESOLVED[target] = (fn, names)
    return hit


def _qualname(fn: Callable) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"
