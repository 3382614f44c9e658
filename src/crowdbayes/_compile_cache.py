"""JAX's persistent compilation cache, on by default in the user's cache directory.

A fresh process (a CLI call, a script that fits once) spends most of its time
compiling; with the cache, a program compiled once (same model, shapes and jax
version) is read back from disk by later processes instead.

:func:`configure` runs once, when crowdbayes first imports jax (``crowdbayes.inference``);
it is the one place the library calls ``jax.config.update``. It does nothing when the
user configured a cache of their own (``jax_compilation_cache_dir`` set, or the
``JAX_COMPILATION_CACHE_DIR`` environment variable) or turned JAX's cache off
(``jax_enable_compilation_cache=False``). Environment variables:

- ``CROWDBAYES_NO_CACHE=1``: no persistent cache (JAX's default).
- ``CROWDBAYES_CACHE_DIR=DIR``: the cache directory (default: ``$XDG_CACHE_HOME/crowdbayes/jax``,
  ``~/.cache/crowdbayes/jax``; ``~/Library/Caches/crowdbayes/jax`` on macOS,
  ``%LOCALAPPDATA%\\crowdbayes\\jax`` on Windows).

Programs are kept in a subdirectory per host CPU (``<dir>/<machine>-<hash of the CPU
flags>``), so a cache directory shared between machines (an NFS home) never hands one
machine code compiled for another's instruction set. JAX's cache is process-wide: once
crowdbayes has set it, other jitted code in the process is cached there too.

XLA's CPU loader logs two ERROR lines for every program it reads back ("Target machine
feature +prefer-no-gather is not supported on the host machine"; jax-ml/jax#38445,
openxla/xla#44565): it takes LLVM tuning hints for instruction sets. The program loads
and runs correctly; with crowdbayes' cache, C++ logs below FATAL are silenced while a
cached program is read (the per-CPU subdirectory makes the check moot).

JAX writes an entry without a lock: processes that compile the same program at the same
moment may, rarely, read a half-written entry; JAX then warns ("Error reading persistent
compilation cache entry") and compiles it again.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "code_tag",
    "configure",
    "default_cache_dir",
    "load_program",
    "program_dir",
    "save_program",
]

# JAX writes a program to the cache only if it took this long to compile (JAX's default 1 s
# would skip most of ours: an EM program compiles in 0.1-1 s, and they add up)
MIN_COMPILE_TIME_S = 0.0

_configured: Path | bool | None = False  # False: not yet; None: no cache; a Path: ours


def _off(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no")


def default_cache_dir() -> Path | None:
    """The directory crowdbayes would use, or None when ``CROWDBAYES_NO_CACHE`` is set."""
    if _off(os.environ.get("CROWDBAYES_NO_CACHE")):
        return None
    if chosen := os.environ.get("CROWDBAYES_CACHE_DIR"):
        return Path(chosen).expanduser().absolute()
    if sys.platform == "win32" and (local := os.environ.get("LOCALAPPDATA")):
        return Path(local) / "crowdbayes" / "jax"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "crowdbayes" / "jax"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "crowdbayes" / "jax"


def configure() -> Path | None:
    """Point JAX's persistent cache at :func:`default_cache_dir` unless the user chose
    otherwise (see the module docstring); returns the directory in use by crowdbayes, or
    None. Only the first call acts."""
    global _configured
    if _configured is not False:
        return _configured if isinstance(_configured, Path) else None
    _configured = None
    import jax

    if (
        getattr(jax.config, "jax_compilation_cache_dir", None)  # the user's own (or env)
        or os.environ.get("JAX_COMPILATION_CACHE_DIR")
        or not getattr(jax.config, "jax_enable_compilation_cache", True)
    ):
        return None
    path = default_cache_dir()
    if path is None:
        return None
    path = path / _host_tag()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # read-only home, a file in the way: run without the cache
    if not os.access(path, os.W_OK | os.X_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    if "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES" not in os.environ:
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # any size
    _quiet_cache_reads()
    _configured = path
    return path


def _host_tag() -> str:
    """``<machine>-<8 hex digits>`` naming this host's instruction set (Linux: the CPU
    flags in /proc/cpuinfo; elsewhere the processor name)."""
    ident = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):  # x86, ARM
                    ident = line.split(":", 1)[-1].strip()
                    break
    except OSError:
        pass
    digest = hashlib.sha256(ident.encode()).hexdigest()[:8]
    return f"{platform.machine().lower() or 'cpu'}-{digest}"


def _cpp_log_level() -> int:
    """The C++ minimum log level JAX set up (TF_CPP_MIN_LOG_LEVEL, default WARNING)."""
    import jax

    names = {"CRITICAL": 3, "FATAL": 3, "ERROR": 2, "WARN": 1, "WARNING": 1, "INFO": 0}
    level = getattr(jax.config, "jax_logging_level", None)
    if level in names:
        return names[level]
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1"))
    except ValueError:
        return 1


def _quiet_cache_reads() -> None:
    """Silence C++ logs below FATAL while JAX reads a program from the persistent cache
    (see the module docstring); does nothing where JAX's internals differ."""
    try:
        from jax._src import compilation_cache
        from jax._src.lib import utils
    except ImportError:  # pragma: no cover - another jax layout
        return
    read = getattr(compilation_cache, "get_executable_and_time", None)
    set_level = getattr(utils, "absl_set_min_log_level", None)
    if read is None or set_level is None or getattr(read, "_crowdbayes_quiet", False):
        return

    def quiet_read(*args: Any, **kwargs: Any) -> Any:
        set_level(3)
        try:
            return read(*args, **kwargs)
        finally:
            set_level(_cpp_log_level())

    quiet_read._crowdbayes_quiet = True  # type: ignore[attr-defined]
    compilation_cache.get_executable_and_time = quiet_read


# ------------------------------------------------------------------ compiled EM programs
#: Where :func:`load_program` / :func:`save_program` keep whole compiled programs, under
#: crowdbayes' cache directory (per host CPU, as JAX's entries).
PROGRAM_DIR = "crowdbayes-programs"
#: jax.monitoring events recorded on a program read back / compiled (tests count them).
PROGRAM_HIT, PROGRAM_MISS = "/crowdbayes/program_cache/hits", "/crowdbayes/program_cache/misses"
#: jax.monitoring event recorded when a program read back fails to run and is dropped.
PROGRAM_DROPPED = "/crowdbayes/program_cache/dropped"


def program_dir() -> Path | None:
    """The directory of crowdbayes' own compiled programs, or None: only where
    :func:`configure` set JAX's cache to crowdbayes' directory (a cache the user set up,
    or none, is left to JAX)."""
    return _configured / PROGRAM_DIR if isinstance(_configured, Path) else None


_file_hashes: dict[tuple[str, int, int], bytes] = {}


def _closure(module_names: list[str]) -> list[str]:
    """The files of the named crowdbayes modules and of every crowdbayes module they
    reach through their module-level names (imported modules, functions, classes).
    Packages are not followed: their names grow with every submodule imported later, so
    the set (and a program's key) would depend on what the process loaded before."""
    seen: set[str] = set()
    stack = list(module_names)
    while stack:
        name = stack.pop()
        module = sys.modules.get(name)
        if name in seen or module is None or hasattr(module, "__path__"):
            continue
        seen.add(name)
        for value in list(vars(module).values()):
            ref = (
                value.__name__
                if isinstance(value, type(sys))
                else getattr(value, "__module__", None)
            )
            if isinstance(ref, str) and ref.startswith("crowdbayes.") and ref not in seen:
                stack.append(ref)
    return sorted({f for n in seen if (f := getattr(sys.modules[n], "__file__", None))})


def code_tag(module: str) -> str:
    """What a program compiled for a family of ``module`` depends on besides its
    arguments: the source of ``module``, of ``crowdbayes.inference`` and of the crowdbayes
    modules they reach (:func:`_closure`), the jax and jaxlib versions, the flags that
    change what is traced or compiled (x64, ``XLA_FLAGS``) and the device."""
    import jax
    import jaxlib

    h = hashlib.sha256()
    names = [module, "crowdbayes.inference.em", "crowdbayes.inference.segments"]
    for file in _closure(names):
        try:
            st = os.stat(file)
            mark = (file, st.st_mtime_ns, st.st_size)
            if mark not in _file_hashes:
                _file_hashes[mark] = hashlib.sha256(Path(file).read_bytes()).digest()
            digest = _file_hashes[mark]
        except OSError:
            digest = b"?"
        h.update(Path(file).name.encode() + b"\0" + digest)
    device = jax.devices()[0]
    for part in (
        jax.__version__,
        jaxlib.__version__,
        str(getattr(jax.config, "jax_enable_x64", None)),
        str(getattr(jax.config, "jax_default_matmul_precision", None)),
        os.environ.get("XLA_FLAGS", ""),
        device.platform,
        getattr(device, "device_kind", ""),
    ):
        h.update(b"\0" + part.encode())
    return h.hexdigest()


def load_program(key: str, devices: Any = None) -> Any | None:
    """The compiled program (a ``jax.stages.Compiled``) saved under ``key``, or None (no
    cache, not saved, unreadable: the caller compiles it). ``devices``: the devices it
    runs on, in its order (a program over a mesh of some of the devices, as a
    multi-process fit's with several devices per process: XLA aborts the process when a
    program is loaded on devices other than its own); default all of them."""
    folder = program_dir()
    if folder is None:
        return None
    path = folder / f"{key}.pkl"
    if not path.is_file():
        return None
    from jax._src.lib import utils
    from jax.experimental import serialize_executable

    set_level = getattr(utils, "absl_set_min_log_level", None)
    try:
        if set_level is not None:
            set_level(3)  # XLA's spurious CPU-loader ERROR lines (see the module docstring)
        blob, in_tree, out_tree = _loads(path.read_bytes())
        return serialize_executable.deserialize_and_load(
            blob, in_tree, out_tree, execution_devices=devices
        )
    except Exception:  # an unreadable entry: dropped, the caller compiles the program
        path.unlink(missing_ok=True)
        return None
    finally:
        if set_level is not None:
            set_level(_cpp_log_level())


def _dumps(entry: Any) -> bytes:
    """``pickle.dumps(entry)``, with each JAX device (in the argument tree of a program
    over a mesh: a multi-process fit's) written as its id."""
    import io
    import pickle

    import jax

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return ("device", obj.id) if isinstance(obj, jax.Device) else None

    with io.BytesIO() as f:
        Pickler(f).dump(entry)
        return f.getvalue()


def _loads(data: bytes) -> Any:
    """What :func:`_dumps` wrote, each device id read back as this process's JAX device of
    that id (program keys name the devices, so the ids are the ones it was saved with)."""
    import io
    import pickle

    import jax

    devices = {d.id: d for d in jax.devices()}

    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "device":
                return devices[pid[1]]
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")

    return Unpickler(io.BytesIO(data)).load()


def drop_program(key: str) -> None:
    """Remove the program saved under ``key`` (one that was read back but does not run)."""
    folder = program_dir()
    if folder is not None:
        (folder / f"{key}.pkl").unlink(missing_ok=True)


_jax_cache_events = {"cache_hits": 0, "compile_requests_use_cache": 0}


def _count_jax_cache_events(event: str, **kwargs: str | int) -> None:
    for what in _jax_cache_events:
        if event == f"/jax/compilation_cache/{what}":
            _jax_cache_events[what] += 1


def compile_fresh(lowered: Any) -> tuple[Any, bool]:
    """``lowered.compile()`` and whether XLA compiled it just now: JAX looked it up in
    its persistent cache (every compile with the cache on is one request) and did not
    read it back. An executable JAX read from its cache, or kept in memory after reading
    it (no request), serialises without its code, so only a fresh one may be saved by
    :func:`save_program`. (A miss is no sign of a fresh compile: JAX records one only
    when it writes the entry, and in a multi-process run only process 0 writes.)"""
    import jax

    global _listening
    if not _listening:
        jax.monitoring.register_event_listener(_count_jax_cache_events)
        _listening = True
    before = dict(_jax_cache_events)
    compiled = lowered.compile()
    fresh = (
        _jax_cache_events["cache_hits"] == before["cache_hits"]
        and _jax_cache_events["compile_requests_use_cache"] > before["compile_requests_use_cache"]
    )
    return compiled, fresh


_listening = False


def _calls_custom_kernels(compiled: Any) -> bool:
    """Whether ``compiled``'s code calls custom kernels (``custom-call`` ops; an
    executable whose text cannot be read counts as one)."""
    try:
        return "custom-call" in compiled.as_text()
    except Exception:  # pragma: no cover - no text: do not save it
        return True


def save_program(key: str, compiled: Any) -> None:
    """Save ``compiled`` (compiled in this process: see :func:`compile_fresh`) under
    ``key``, written to a temporary file and renamed, so a concurrent reader never sees
    half an entry; does nothing without a cache, where it cannot be serialised, or where
    it calls custom kernels (LAPACK's, from ``jnp.linalg``): their addresses are compiled
    into the code, valid only in this process, so read back whole in another one it
    crashes that process (HierarchicalDawidSkene's EM loop did); JAX's own cache keeps those."""
    folder = program_dir()
    if folder is None or _calls_custom_kernels(compiled):
        return
    import tempfile

    from jax.experimental import serialize_executable

    tmp = None
    try:
        data = _dumps(serialize_executable.serialize(compiled))
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, folder / f"{key}.pkl")
    except Exception:  # pragma: no cover - serialisation unsupported, disk full
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
