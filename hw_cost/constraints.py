"""Hard constraints on cost metrics for the search: ``parse_constraint("lut <= 0.8 * device")``.

Grammar: ``FIELD OP VALUE`` with OP in ``<=, <, >=, >`` and VALUE a number or ``F * device`` /
``device * F`` / ``device`` (F times the device's capacity for that resource field: lut, ff, dsp, bram).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .devices import DeviceProfile, get_device

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_RESOURCE = ("lut", "ff", "dsp", "bram")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``field op value`` where value is ``number`` or ``factor x device capacity``."""

    field: str
    op: str
    value: float
    relative: bool = False
    text: str = ""

    def bound(self, device: DeviceProfile | str | None) -> float:
        if not self.relative:
            return self.value
        if device is None:
            raise ValueError(f"constraint '{self.text}' is relative to the device, but no device was given")
        return self.value * get_device(device).capacity(self.field)

    def check(self, report_dict: Mapping[str, Any] | Any, device: DeviceProfile | str | None = None) -> tuple[bool, str]:
        """(ok, message) for a report dict (or a CostReport); the message states value and bound."""
        d = report_dict.to_dict() if hasattr(report_dict, "to_dict") else report_dict
        if self.field not in d:
            raise ValueError(f"constraint '{self.text}': metric '{self.field}' not in the report (have {sorted(d)})")
        v = float(d[self.field])
        b = self.bound(device)
        ok = bool(_OPS[self.op](v, b))
        rel = f" ({self.value:g} x device)" if self.relative else ""
        return ok, f"{self.field} = {v:.6g} {'satisfies' if ok else 'violates'} {self.op} {b:.6g}{rel}"


def parse_constraint(text: str) -> Constraint:
    """Parse ``"lut <= 0.8 * device"``, ``"latency_ms <= 5"``, ``"dsp < 0.5*device"``; one-line ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"constraint must be a string like 'latency_ms <= 5', got {type(text).__name__}")
    m = _RE.match(text)
    if not m:
        raise ValueError(f"constraint {text!r}: expected 'FIELD OP VALUE' with OP one of <=, <, >=, > (e.g. 'lut <= 0.8 * device')")
    fld, op, rhs = m.group(1), m.group(2), m.group(3).replace(" ", "")
    if re.fullmatch(_NUM, rhs):
        return Constraint(fld, op, float(rhs), False, text.strip())
    rm = re.fullmatch(rf"(?:({_NUM})\*)?device(?:\*({_NUM}))?", rhs, flags=re.IGNORECASE)
    if rm and not (rm.group(1) and rm.group(2)):
        if fld not in _RESOURCE:
            raise ValueError(f"constraint {text!r}: '* device' only applies to {', '.join(_RESOURCE)}, not '{fld}'")
        factor = float(rm.group(1) or rm.group(2) or 1.0)
        return Constraint(fld, op, factor, True, text.strip())
    raise ValueError(f"constraint {text!r}: value {m.group(3)!r} must be a number or 'F * device'")
