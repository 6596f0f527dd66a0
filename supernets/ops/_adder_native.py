"""Build and load the C++/OpenMP AdderNet kernel (``csrc/adder_kernel.cpp``) through ctypes.

Why ctypes and not ``torch.utils.cpp_extension``: the kernel has a plain C ABI and includes no
torch or Python headers, so one ``g++`` call builds it in about a second (no ninja, no pybind).
It is built once per machine and source version into a cache directory, lazily on first use or
eagerly with ``python -m supernets.ops._adder_native --build`` (what ``make setup`` should call).

Cache directory: ``$ABACUS_EXT_DIR`` if set, else ``$XDG_CACHE_HOME/abacus/ext`` (default
``~/.cache/abacus/ext``).  The file name hashes the source, compiler, flags and the CPU's
feature flags, so ``-march=native`` builds are never reused on a different CPU.
Set ``ABACUS_ADDER_NATIVE=0`` to disable the kernel (the pure-torch path is used instead).

OpenMP: the library links ``libgomp.so.1``; torch has already loaded its own copy under that
soname, so both share one OpenMP runtime (no second spinning thread pool).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "csrc" / "adder_kernel.cpp"
ABI_VERSION = 3
BASE_FLAGS = ["-O3", "-fopenmp", "-fPIC", "-shared", "-std=c++17"]
# -march=native: built where it runs.  No -ffast-math: sums must keep IEEE semantics.
NATIVE_FLAGS = ["-march=native"]

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_load_error: str | None = None
_warned = False


def cache_dir() -> Path:
    """Directory holding the compiled kernel (created on demand)."""
    env = os.environ.get("ABACUS_EXT_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "abacus" / "ext"


def _compiler() -> str | None:
    for cand in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _library_path(cxx: str, flags: list[str]) -> Path:
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), cxx.encode(), version.encode(), " ".join(flags).encode(),
                 _cpu_signature().encode(), platform.machine().encode()):
        h.update(part)
        h.update(b"\0")
    return cache_dir() / f"adder_kernel_{h.hexdigest()[:20]}.so"


def _compile(cxx: str, flags: list[str], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # build into a temp file in the same directory, then rename: concurrent builders (pytest
    # workers, Ray actors) never load a half-written library
    fd, tmp = tempfile.mkstemp(prefix=out.stem + ".", suffix=".tmp.so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cxx, *flags, str(SOURCE), "-o", tmp], capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{cxx} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    P, I, L = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    lib.adder_kernel_abi_version.restype = I
    if lib.adder_kernel_abi_version() != ABI_VERSION:
        raise RuntimeError("stale adder kernel library (ABI version mismatch)")
    lib.adder_kernel_vector_lanes.restype = I
    lib.adder_forward_workspace.restype = L
    lib.adder_forward_workspace.argtypes = [P, I, I]
    lib.adder_backward_input_workspace.restype = L
    lib.adder_backward_input_workspace.argtypes = [P, I, I]
    lib.adder_forward.restype = I
    lib.adder_forward.argtypes = [P, P, P, P, P, ctypes.c_float, P, I, I]
    lib.adder_backward_input.restype = I
    lib.adder_backward_input.argtypes = [P, P, P, P, P, P, I, I]
    return lib


def build(force: bool = False, verbose: bool = False) -> Path:
    """Compile the kernel if needed and return the library path; raises on failure."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (tried $CXX, g++, c++, clang++)")
    errors = []
    for flags in (BASE_FLAGS + NATIVE_FLAGS, BASE_FLAGS):
        out = _library_path(cxx, flags)
        if out.exists() and not force:
            return out
        try:
            if verbose:
                print(f"compiling {SOURCE.name} -> {out}")
            _compile(cxx, flags, out)
            return out
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
    raise RuntimeError("could not build the adder kernel: " + " | ".join(errors))


def get_lib() -> ctypes.CDLL | None:
    """The loaded kernel, building it on first use; None (with one warning) if unavailable."""
    global _lib, _load_error, _warned
    if _lib is not None:
        return _lib
    if os.environ.get("ABACUS_ADDER_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    with _lock:
        if _lib is None and _load_error is None:
            try:
                import torch  # noqa: F401  (load torch's libgomp first so the kernel shares it)

                _lib = _bind(ctypes.CDLL(str(build())))
            except Exception as exc:  # any failure means "use the torch path"
                _load_error = f"{type(exc).__name__}: {exc}"
        if _lib is None and not _warned:
            _warned = True
            warnings.warn(f"AdderNet CPU kernel unavailable, using the slower pure-torch path ({_load_error})",
                          RuntimeWarning, stacklevel=3)
    return _lib


def load_error() -> str | None:
    """Why the kernel could not be loaded (None if it loaded or was never tried)."""
    return _load_error


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m supernets.ops._adder_native --build [--force]``; never fails setup."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m supernets.ops._adder_native",
                                 description="Build the AdderNet CPU kernel into the cache directory.")
    ap.add_argument("--build", action="store_true", help="compile the kernel if it is not cached")
    ap.add_argument("--force", action="store_true", help="recompile even if cached")
    args = ap.parse_args(argv)
    if not (args.build or args.force):
        ap.print_help()
        return 0
    try:
        path = build(force=args.force, verbose=True)
        _bind(ctypes.CDLL(str(path)))
    except Exception as exc:  # the pure-torch path still works, so setup must not fail
        print(f"adder kernel not built (the slower pure-torch path will be used): {exc}")
        return 0
    print(f"adder kernel ready: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
