"""FPGA device profiles: YAML files, a registry, and the ``abacus.devices`` entry-point group.

Why YAML: a board is data, not code; users add one by passing a YAML path, calling
``register_device``, or shipping an entry point in the ``abacus.devices`` group that names a YAML
path, a dict, or a ``DeviceProfile`` (a broken entry point warns and the others still load).
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

DEVICE_DIR = Path(__file__).with_name("devices")
ENTRY_POINT_GROUP = "abacus.devices"


@dataclass(frozen=True)
class DeviceProfile:
    """One board's resources and energy/timing constants (units in the field names)."""

    name: str
    part: str
    lut: int
    ff: int
    dsp: int
    dsp_type: str                 # "DSP48E1" (7-series) or "DSP48E2" (UltraScale+)
    bram36: int
    uram: int
    clock_mhz: float              # fabric clock of the accelerator
    ddr_bandwidth_gbps: float     # effective (not peak) DDR bandwidth, GB/s
    static_power_w: float         # device static power charged for the whole latency
    e_ddr_pj_per_byte: float      # off-chip DRAM access energy
    e_bram_pj_per_byte: float     # on-chip BRAM/URAM access energy
    energy_scale: float           # FPGA dynamic energy / Horowitz 45 nm ASIC energy (kappa_dev)
    util_cap: float               # fraction of LUT/FF/BRAM a routable design may use
    dsp_cap: float = 1.0          # fraction of DSPs usable
    layer_overhead_cycles: float = 1000.0  # per-layer fixed cost (DMA setup, pipeline fill)
    weights_resident: bool = True  # keep all weights on chip when they fit
    # The accelerator design, when the board runs one fixed design (a published accelerator) rather
    # than the largest array that fits: its PE array (P_in, P_out), and the taps of a depthwise
    # window it reads per cycle (0: the K taps go over the P_in input lanes; 25: a 5x5 line-buffer window).
    pe_array: tuple[int, int] | None = None
    dw_window_taps: int = 0
    description: str = ""
    unverified: tuple[str, ...] = ()  # fields whose figure is "(from memory)"
    source: str = ""              # where the profile came from (file path or "registered")

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def bram_equiv(self) -> float:
        """On-chip RAM capacity in BRAM36 equivalents (one URAM = 288 Kb = 8 BRAM36)."""
        return self.bram36 + 8 * self.uram

    def capacity(self, fieldname: str) -> float:
        """Device capacity for a resource metric name (lut, ff, dsp, bram)."""
        caps = {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram": self.bram_equiv, "uram": self.uram}
        if fieldname not in caps:
            raise ValueError(f"'{fieldname}' has no device capacity; expected one of {sorted(caps)}")
        return float(caps[fieldname])

    def replace(self, **changes: Any) -> "DeviceProfile":
        return dataclasses.replace(self, **changes)


_REQUIRED = [f.name for f in dataclasses.fields(DeviceProfile) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
_FIELDS = {f.name for f in dataclasses.fields(DeviceProfile)}


def profile_from_dict(d: Mapping[str, Any], source: str = "dict") -> DeviceProfile:
    """Build a profile from a mapping, with one-line errors for missing or unknown keys."""
    if not isinstance(d, Mapping):
        raise ValueError(f"device profile from {source} must be a mapping, got {type(d).__name__}")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ValueError(f"device profile from {source} is missing {missing}")
    unknown = sorted(set(d) - _FIELDS)
    if unknown:
        raise ValueError(f"device profile from {source} has unknown keys {unknown}; expected some of {sorted(_FIELDS)}")
    kw = dict(d)
    kw["unverified"] = tuple(kw.get("unverified") or ())
    kw.setdefault("source", source)
    for k in ("lut", "ff", "dsp", "bram36", "uram"):
        if k in kw:
            kw[k] = _number(kw[k], k, source, int)
    if kw.get("pe_array") is not None:
        pe = kw["pe_array"]
        if not isinstance(pe, (list, tuple)) or len(pe) != 2 or not all(isinstance(v, int) and v >= 1 for v in pe):
            raise ValueError(f"device profile from {source}: pe_array must be [P_in, P_out] of positive ints, got {pe!r}")
        kw["pe_array"] = (int(pe[0]), int(pe[1]))
    if "dw_window_taps" in kw:
        kw["dw_window_taps"] = _number(kw["dw_window_taps"], "dw_window_taps", source, int)
    for k in ("clock_mhz", "ddr_bandwidth_gbps", "static_power_w", "e_ddr_pj_per_byte", "e_bram_pj_per_byte",
              "energy_scale", "util_cap", "dsp_cap", "layer_overhead_cycles"):
        if k in kw:
            kw[k] = _number(kw[k], k, source, float)
    if kw.get("clock_mhz", 1.0) <= 0:
        raise ValueError(f"device profile from {source}: clock_mhz must be positive, got {kw['clock_mhz']}")
    prof = DeviceProfile(**kw)
    if not 0 < prof.util_cap <= 1 or not 0 < prof.dsp_cap <= 1:
        raise ValueError(f"device profile from {source}: util_cap and dsp_cap must be in (0, 1], got {prof.util_cap} and {prof.dsp_cap}")
    return prof


def load_device_yaml(path: str | Path) -> DeviceProfile:
    """Read one device YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"device YAML '{path}' does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"device YAML '{path}' is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise ValueError(f"device YAML '{path}' is not valid YAML ({first})") from None
    return profile_from_dict(data, source=str(p))


def _number(value: Any, key: str, source: str, kind: type) -> Any:
    """``int``/``float`` of a profile field, finite and not negative; one line naming the key."""
    import math

    try:
        if isinstance(value, bool):
            raise TypeError
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"device profile from {source}: {key} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"device profile from {source}: {key} must be a finite number >= 0, got {value!r}")
    return number


_REGISTRY: dict[str, DeviceProfile] = {}
_LOADED = False


def _coerce(obj: Any, source: str) -> DeviceProfile:
    if isinstance(obj, DeviceProfile):
        return obj
    if isinstance(obj, Mapping):
        return profile_from_dict(obj, source)
    if isinstance(obj, (str, Path)):
        return load_device_yaml(obj)
    if callable(obj):
        return _coerce(obj(), source)
    raise TypeError(f"device from {source} must be a DeviceProfile, a dict or a YAML path, got {type(obj).__name__}")


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for p in sorted(DEVICE_DIR.glob("*.yaml")):
        prof = load_device_yaml(p)
        _REGISTRY.setdefault(prof.name, prof)
    try:
        from importlib.metadata import entry_points

        eps = list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # pragma: no cover - broken metadata
        warnings.warn(f"could not read entry points of group '{ENTRY_POINT_GROUP}': {exc}", stacklevel=2)
        eps = []
    for ep in eps:
        try:
            prof = _coerce(ep.load(), f"entry point '{ep.name}'")
            _REGISTRY.setdefault(ep.name if ep.name else prof.name, prof)
        except Exception as exc:  # a broken plug-in warns, the rest load
            warnings.warn(f"device entry point '{ep.name}' ({ep.value}) failed to load: {exc}", stacklevel=2)


def register_device(profile: DeviceProfile | Mapping[str, Any] | str | Path, name: str | None = None, *, overwrite: bool = False) -> DeviceProfile:
    """Add a board (a profile, a dict, or a YAML path) under ``name`` (default: its own name)."""
    _load_builtins()
    prof = _coerce(profile, "register_device")
    key = name or prof.name
    if key in _REGISTRY and not overwrite and _REGISTRY[key] != prof:
        raise ValueError(f"device '{key}' is already registered; pass overwrite=True to replace it")
    _REGISTRY[key] = prof
    return prof


def list_devices() -> list[str]:
    """Names of all known boards (built-in YAMLs, registered ones, entry points)."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_device(device: str | Path | DeviceProfile | Mapping[str, Any]) -> DeviceProfile:
    """A profile by name, by YAML path, or passed through; unknown names list the close matches."""
    if isinstance(device, DeviceProfile):
        return device
    if isinstance(device, Mapping):
        return profile_from_dict(device)
    if isinstance(device, Path) or (isinstance(device, str) and (device.endswith((".yaml", ".yml")) or "/" in device)):
        return load_device_yaml(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a name, a YAML path, a dict or a DeviceProfile, got {type(device).__name__}")
    _load_builtins()
    if device in _REGISTRY:
        return _REGISTRY[device]
    close = difflib.get_close_matches(device, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"unknown device '{device}'{hint} (known: {', '.join(sorted(_REGISTRY))}; see hw_cost.list_devices())")
