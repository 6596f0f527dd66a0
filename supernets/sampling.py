"""Path samplers for weight-sharing supernets, generic over "layers with m choices".

A supernet describes what can be switched per training step as an ordered list of
:class:`ChoiceLayer` (a label and its choices, smallest first when the choices are ordered).
A sampler turns that list into the paths one optimizer step trains on the same batch:

* ``uniform``: one path, every choice uniform at random (single-path one-shot, SPOS;
  Guo et al., arXiv 1904.00420).
* ``strict-fair``: FairNAS (Chu et al., arXiv 1907.01845): each layer draws a random
  permutation of its m choices and path j takes the j-th element, so m paths per step and
  every choice of every layer is trained exactly once per step. Layers with fewer choices
  than the widest layer (m_l < m) draw from a stream of fresh permutations, so their choices
  are used ``m / m_l`` times per step when m_l divides m and within one of that otherwise
  (balanced, not strictly equal; documented deviation, FairNAS assumes equal m).
* ``sandwich``: the largest path, the smallest path and ``n_random`` random paths (BigNAS,
  Yu et al., arXiv 2003.11142; OFA's "sandwich rule"). Unordered layers (an op family) take a
  random choice in the largest and smallest paths too.

Samplers count how often each choice was sampled (``counts``) and carry their RNG in
``state_dict`` so a resumed training continues the same sequence. No torch here: the GAN
generator supernet (path / operator / channel choices) reuses the same machinery.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from spaces.registry import Registry

Path = dict[str, Any]

__all__ = [
    "ChoiceLayer", "PathSampler", "UniformSampler", "StrictFairSampler", "SandwichSampler",
    "PATH_SAMPLERS", "make_path_sampler", "list_path_samplers",
]


@dataclass(frozen=True)
class ChoiceLayer:
    """One switchable layer of a supernet: ``label`` (the space's dimension label) and its
    ``choices``; ``ordered`` means the choices go from smallest to largest sub-network."""

    label: str
    choices: tuple
    ordered: bool = True

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"choice layer {self.label!r}: expected at least one choice, found none")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"choice layer {self.label!r}: expected distinct choices, found {list(self.choices)!r}")

    @property
    def m(self) -> int:
        return len(self.choices)


class PathSampler:
    """Base class. Lifecycle: ``paths()`` once per optimizer step (returns the list of paths
    trained on that step's batch, counts updated); ``state_dict()`` / ``load_state_dict()``
    around checkpoints."""

    name = "base"

    def __init__(self, layers: Sequence[ChoiceLayer], seed: int = 0) -> None:
        if not layers:
            raise ValueError("a path sampler needs at least one choice layer, found none")
        labels = [layer.label for layer in layers]
        if len(set(labels)) != len(labels):
            raise ValueError(f"choice layer labels must be unique, found {labels}")
        self.layers = tuple(layers)
        self.rng = random.Random(seed)
        self.counts: dict[str, Counter] = {layer.label: Counter() for layer in self.layers}
        self.steps = 0

    def _draw(self) -> list[Path]:
        raise NotImplementedError

    def paths(self) -> list[Path]:
        out = self._draw()
        for path in out:
            for label, value in path.items():
                self.counts[label][repr(value)] += 1
        self.steps += 1
        return out

    def count(self, label: str, choice: Any) -> int:
        """Times ``choice`` of layer ``label`` was in a sampled path."""
        return self.counts[label][repr(choice)]

    @property
    def paths_per_step(self) -> int:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rng": _rng_state(self.rng), "steps": self.steps,
                "counts": {k: dict(v) for k, v in self.counts.items()}, **self._extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"sampler state is for {state.get('name')!r}, this sampler is {self.name!r}")
        self.rng.setstate(_rng_from_state(state["rng"]))
        self.steps = int(state["steps"])
        self.counts = {label: Counter(state["counts"].get(label, {})) for label in self.counts}
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        return None


class UniformSampler(PathSampler):
    """One path per step, every layer's choice uniform at random (SPOS)."""

    name = "uniform"

    @property
    def paths_per_step(self) -> int:
        return 1

    def _draw(self) -> list[Path]:
        return [{layer.label: self.rng.choice(layer.choices) for layer in self.layers}]


class StrictFairSampler(PathSampler):
    """FairNAS strict fairness: m paths per step, built from one permutation per layer."""

    name = "strict-fair"

    def __init__(self, layers: Sequence[ChoiceLayer], seed: int = 0) -> None:
        super().__init__(layers, seed)
        self.m = max(layer.m for layer in self.layers)
        self._queues: dict[str, list[int]] = {layer.label: [] for layer in self.layers}

    @property
    def paths_per_step(self) -> int:
        return self.m

    def _take(self, layer: ChoiceLayer) -> list[Any]:
        q = self._queues[layer.label]
        while len(q) < self.m:
            perm = list(range(layer.m))
            self.rng.shuffle(perm)
            q.extend(perm)
        taken, self._queues[layer.label] = q[: self.m], q[self.m:]
        return [layer.choices[i] for i in taken]

    def _draw(self) -> list[Path]:
        columns = {layer.label: self._take(layer) for layer in self.layers}
        return [{label: col[j] for label, col in columns.items()} for j in range(self.m)]

    def _extra_state(self) -> dict[str, Any]:
        return {"queues": {k: list(v) for k, v in self._queues.items()}}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._queues = {label: list(state.get("queues", {}).get(label, [])) for label in self._queues}


class SandwichSampler(PathSampler):
    """Largest + smallest + ``n_random`` uniform paths per step (BigNAS / OFA sandwich rule)."""

    name = "sandwich"

    def __init__(self, layers: Sequence[ChoiceLayer], seed: int = 0, n_random: int = 2) -> None:
        super().__init__(layers, seed)
        if not isinstance(n_random, int) or n_random < 0:
            raise ValueError(f"sandwich n_random: expected an integer >= 0, found {n_random!r}")
        self.n_random = n_random

    @property
    def paths_per_step(self) -> int:
        return 2 + self.n_random

    def _end(self, layer: ChoiceLayer, index: int) -> Any:
        return layer.choices[index] if layer.ordered else self.rng.choice(layer.choices)

    def _draw(self) -> list[Path]:
        largest = {layer.label: self._end(layer, -1) for layer in self.layers}
        smallest = {layer.label: self._end(layer, 0) for layer in self.layers}
        rand = [{layer.label: self.rng.choice(layer.choices) for layer in self.layers} for _ in range(self.n_random)]
        return [largest, smallest, *rand]


PATH_SAMPLERS: Registry = Registry("path sampler", entry_point_group="abacus.path_samplers",
                                   list_hint="see supernets.sampling.list_path_samplers()")
PATH_SAMPLERS.register("uniform", UniformSampler)
PATH_SAMPLERS.register("strict-fair", StrictFairSampler)
PATH_SAMPLERS.register("sandwich", SandwichSampler)


def make_path_sampler(name: str, layers: Sequence[ChoiceLayer], seed: int = 0, **options: Any) -> PathSampler:
    """The sampler registered as ``name`` over ``layers`` (options: ``n_random`` for sandwich)."""
    factory: Callable[..., PathSampler] = PATH_SAMPLERS.get(name)
    return factory(layers, seed, **options)


def list_path_samplers(pattern: str = "*") -> list[str]:
    return PATH_SAMPLERS.names(pattern)


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_state(state: Sequence) -> tuple:
    version, internal, gauss = state
    return (int(version), tuple(int(v) for v in internal), gauss)
