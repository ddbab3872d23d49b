"""One NVML session: NVML started once, its GPUs counted, opened and classified in one place, every reading
through one funnel, NVML shut down once (cf. nvitop's ``libnvml``: a lazy init per process, ``nvmlQuery``, an
exit-time shutdown that leaves a call in flight alone).

Every NVML reader in envcheck (the ``nvml`` and ``fabric`` probes, burn's telemetry sampler) is a reader over a
session. The probes share the process's session (:func:`shared`): a doctor run starts the ``nvml`` and
``fabric`` probes at once in their own threads, and burn asks the ``nvml`` probe who the GPUs are before its
sampler watches them; one ``nvmlInit`` serves them all, and NVML is shut down when the process ends. A sampler
that is handed no session opens one of its own and shuts it down when it closes.

Every NVML call goes through :func:`query`, the one funnel that maps NVML's errors: a reading the card or driver
does not offer becomes :class:`NA` (GeForce has no ECC; an older driver lacks newer functions), a reading the
driver refuses to this user becomes an NA whose reason the GPU checks turn into a warning, a lost GPU raises
:class:`GpuLost` so that its reader can flag that GPU and go on with the others. Failures of ``nvmlInit`` itself
are classified into the distinct situations users meet (:data:`INIT_FAILURES`), each with its own fix in
``doctor/checks/driver.py``.

The ``pynvml`` module found at run time may not be nvidia-ml-py: the deprecated ``pynvml`` distribution and old
vendored copies install one that lacks functions, constants and error classes, or that does not import at all.
So nothing here uses an optional pynvml name at import time or by attribute: functions are looked up by name (a
missing one is a reading that is not available), NVML's constants and return codes are the C values
(:mod:`envcheck.probes.nvml.constants`), and errors are told apart by their return code, not by the binding's
exception classes. What the module lacked is kept in :class:`Bindings` for ``packages.pynvml_deprecated``.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from envcheck.core.model import NA, error_line
from envcheck.probes.nvml.constants import (
    ERROR_DRIVER_NOT_LOADED,
    ERROR_FUNCTION_NOT_FOUND,
    ERROR_GPU_IS_LOST,
    ERROR_LIB_RM_VERSION_MISMATCH,
    ERROR_LIBRARY_NOT_FOUND,
    ERROR_NO_PERMISSION,
    ERROR_NOT_SUPPORTED,
)

# Why a reading is missing, in words a person reads next to "N/A".
NOT_SUPPORTED = "not supported by this GPU or driver"
OLDER_DRIVER = "function missing from this (older) driver"
NO_PERMISSION = "no permission"
NOT_IN_BINDINGS = "function missing from the installed pynvml module"

#: The pynvml functions envcheck calls; without the first five nothing can be read at all.
CORE_FUNCTIONS = ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "NVMLError")
READ_FUNCTIONS = (
    "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion", "nvmlSystemGetNVMLVersion",
    "nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetPciInfo", "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses",
    "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetTemperature", "nvmlDeviceGetTemperatureThreshold",
    "nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementDefaultLimit",
    "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetCurrPcieLinkWidth", "nvmlDeviceGetMaxPcieLinkWidth", "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkGeneration", "nvmlDeviceGetEccMode", "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetRetiredPagesPendingStatus", "nvmlDeviceGetRemappedRows", "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetComputeMode", "nvmlDeviceGetMigMode",
)  # fmt: skip
#: r535 renamed the throttle reasons to clocks-event reasons; bindings older than that only have the old name.
OPTIONAL_FUNCTIONS = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")

#: nvmlInit return code -> the status the driver check judges.
INIT_FAILURES = {
    ERROR_LIBRARY_NOT_FOUND: "no_library",
    ERROR_DRIVER_NOT_LOADED: "driver_not_loaded",
    ERROR_LIB_RM_VERSION_MISMATCH: "driver_library_mismatch",
    ERROR_NO_PERMISSION: "no_permission",
}


class GpuLost(Exception):
    """NVML says the GPU is lost (fallen off the bus, Xid 79): nothing more can be read from it."""


class NoCount(Exception):
    """NVML started but cannot count the GPUs; its words are the reader's error."""


@dataclass
class Bindings:
    """The ``pynvml`` module this process imported, and what of it envcheck could not use."""

    path: str | None = None
    #: ``ImportError: ...`` when importing pynvml raised (nothing could be read then).
    import_error: str | None = None
    #: Functions envcheck calls that the module does not have.
    missing: list[str] = field(default_factory=list)
    #: Function -> the error (not an NVML error) it raised: a broken or mismatched copy of the bindings.
    failing: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Everything envcheck calls is there and behaved."""
        return self.import_error is None and not self.failing and not self.missing

    @property
    def lacking(self) -> list[str]:
        """The missing functions whose readings are lost: of the two throttle-reason names one is enough."""
        optional_found = [n for n in OPTIONAL_FUNCTIONS if n not in self.missing]
        return [n for n in self.missing if not (n in OPTIONAL_FUNCTIONS and optional_found)]

    def copy(self) -> Bindings:
        """A copy whose lists a reader may extend without touching the session's."""
        return replace(self, missing=list(self.missing), failing=dict(self.failing))


@dataclass(frozen=True)
class NvmlGpu:
    """A GPU as the session found it when it opened it: its handle, or why there is none. With neither ``lost``
    nor ``refused`` and no handle, the bindings broke opening it (that says nothing about the card)."""

    index: int
    handle: Any = None
    #: What NVML said: the GPU is lost, or NVML counts it but cannot open it (as good as lost for work).
    lost: str | None = None
    #: What NVML said when the driver refused to open it to this user (NVML_ERROR_NO_PERMISSION on its handle:
    #: the device node /dev/nvidiaN is not open to this user). Not lost: refused.
    refused: str | None = None


def nvml_code(exc: BaseException) -> int | None:
    """The NVML return code an exception from the bindings carries, or None when it is not an NVML error.

    Every pynvml raises ``NVMLError(code)`` (a subclass per code where the binding has them) with the code in
    ``.value``; the class is recognised by name so that a copy lacking the subclasses is read the same way.
    """
    if not any(cls.__name__ == "NVMLError" for cls in type(exc).__mro__):
        return None
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def query(
    fn: Callable[..., Any],
    *args: Any,
    missing: list[str] | None = None,
    failing: dict[str, str] | None = None,
    name: str | None = None,
) -> Any:
    """Call one NVML function and map its errors: the one funnel every reading goes through.

    A lost GPU raises :class:`GpuLost`; every other failure is an :class:`NA` saying why. An exception that
    is not an NVML error comes from a broken copy of the bindings: it is kept in ``failing`` (under ``name``,
    else the function's own), not raised.
    """
    name = name or getattr(fn, "__name__", repr(fn))
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - a foreign pynvml may raise anything; the reading is then N/A
        code = nvml_code(exc)
        if code == ERROR_GPU_IS_LOST:
            raise GpuLost(str(exc)) from exc
        if code == ERROR_NOT_SUPPORTED:
            return NA(NOT_SUPPORTED)
        if code == ERROR_FUNCTION_NOT_FOUND or type(exc).__name__ == "NVMLLibraryMismatchError":
            # nvidia-ml-py raises NVMLLibraryMismatchError when an unversioned wrapper's _vN is not in the driver.
            if missing is not None and name not in missing:
                missing.append(name)
            return NA(OLDER_DRIVER)
        if code == ERROR_NO_PERMISSION:
            return NA(NO_PERMISSION)
        if code is not None:
            return NA(f"NVML error: {exc}")
        if failing is not None:
            failing[name] = error_line(exc)
        return NA(f"the pynvml module failed: {error_line(exc)}")


def as_text(value: Any) -> Any:
    """NVML strings come back as bytes from some bindings and str from others."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


class NvmlSession:
    """NVML started once (:meth:`open`) and shut down once (:meth:`close`). ``status`` is ``ok`` or one of the
    ways NVML fails to start (``no_bindings`` and ``bindings_broken``: the pynvml module is missing, or does
    not import, or lacks NVML's core functions); ``pynvml`` is the module, None unless NVML started."""

    def __init__(self, pynvml: Any, status: str, error: str | None = None, bindings: Bindings | None = None) -> None:
        self.pynvml = pynvml
        self.status = status
        self.error = error
        self.bindings = bindings or Bindings()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._closed = pynvml is None

    @classmethod
    def open(cls) -> NvmlSession:
        """Import pynvml and start NVML; a session whose ``status`` says why not when it cannot."""
        try:
            import pynvml
        except ModuleNotFoundError as exc:
            if exc.name == "pynvml":
                return cls(None, "no_bindings", "no pynvml module (nvidia-ml-py is not installed)")
            return _broken_import(exc)
        except Exception as exc:  # noqa: BLE001 - whatever a foreign pynvml raises at import is reported, not raised
            return _broken_import(exc)
        bindings = Bindings(path=_module_path(pynvml))
        bindings.missing = [n for n in (*CORE_FUNCTIONS, *READ_FUNCTIONS) if not callable(getattr(pynvml, n, None))]
        core_missing = [n for n in CORE_FUNCTIONS if n in bindings.missing]
        if core_missing:
            return cls(None, "bindings_broken", f"the pynvml module lacks {', '.join(core_missing)}", bindings)
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - see nvml_code: NVML errors by code, anything else is the module's
            code = nvml_code(exc)
            if code is None:
                bindings.failing["nvmlInit"] = error_line(exc)
                return cls(None, "bindings_broken", bindings.failing["nvmlInit"], bindings)
            return cls(None, INIT_FAILURES.get(code, "error"), error_line(exc), bindings)
        return cls(pynvml, "ok", bindings=bindings)

    @property
    def available(self) -> bool:
        return self.status == "ok"

    @property
    def closed(self) -> bool:
        """NVML is shut down (or never started)."""
        return self._closed

    def __enter__(self) -> NvmlSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> bool:
        """Shut NVML down, once. Not while a call is in flight (a wedged driver: shutting down under it is not
        safe), which returns False and leaves NVML to the process's exit."""
        with self._lock:
            if self._closed:
                return True
            if self._in_flight:
                return False
            self._closed = True
        try:
            self.pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down is best effort
            pass
        return True

    @contextmanager
    def calling(self) -> Iterator[None]:
        """Around every NVML call: :meth:`close` leaves NVML alone while one is in flight."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def reader(self, *, missing: list[str] | None = None, failing: dict[str, str] | None = None) -> Reader:
        """A reader of this session that notes the functions the driver lacks in ``missing`` and the binding's
        own failures in ``failing``: each probe reports its own."""
        return Reader(self, [] if missing is None else missing, {} if failing is None else failing)

    def count(self, read: Reader) -> int:
        """How many GPUs NVML counts; :class:`NoCount` when it cannot say."""
        count = read("nvmlDeviceGetCount")
        if isinstance(count, NA):
            raise NoCount(f"cannot count GPUs: {count.reason}")
        return int(count)

    def gpus(self, read: Reader, indices: Iterable[int] | None = None) -> list[NvmlGpu]:
        """Every GPU NVML counts (or those of ``indices``), opened and classified: lost, refused, or a handle."""
        return [self._open_gpu(read, index) for index in (range(self.count(read)) if indices is None else indices)]

    def _open_gpu(self, read: Reader, index: int) -> NvmlGpu:
        try:
            with self.calling():
                return NvmlGpu(index, self.pynvml.nvmlDeviceGetHandleByIndex(index))
        except Exception as exc:  # noqa: BLE001 - mapped by NVML code below
            code = nvml_code(exc)
            if code == ERROR_NO_PERMISSION:
                return NvmlGpu(index, refused=str(exc))
            if code == ERROR_GPU_IS_LOST:
                return NvmlGpu(index, lost=str(exc))
            if code is None:
                # Not an NVML error: the bindings are broken (packages.pynvml_deprecated says which copy), and
                # that says nothing about the card, so it is not called lost. Its readings stay not available.
                read.failing["nvmlDeviceGetHandleByIndex"] = error_line(exc)
                return NvmlGpu(index)
            return NvmlGpu(index, lost=f"cannot open GPU {index}: {exc}")


class Reader:
    """Calls pynvml functions by name through :func:`query`, so that a function the module lacks is a reading
    that is not available rather than an AttributeError."""

    def __init__(self, session: NvmlSession, missing: list[str], failing: dict[str, str]) -> None:
        self.session, self.missing, self.failing = session, missing, failing

    def __call__(self, name: str, *args: Any) -> Any:
        fn = getattr(self.session.pynvml, name, None)
        if not callable(fn):
            return NA(NOT_IN_BINDINGS)
        with self.session.calling():
            return query(fn, *args, missing=self.missing, failing=self.failing, name=name)

    def on(self, handle: Any) -> Callable[..., Any]:
        """This reader bound to one GPU's handle: ``q("nvmlDeviceGetName")``."""

        def q(name: str, *args: Any) -> Any:
            return self(name, handle, *args)

        return q


def _broken_import(exc: BaseException) -> NvmlSession:
    error = error_line(exc)
    return NvmlSession(None, "bindings_broken", f"import pynvml failed: {error}", Bindings(_module_path(), error))


def _module_path(module: Any = None) -> str | None:
    """Where the pynvml module is (or would be imported from, when its import fails)."""
    path = getattr(module, "__file__", None)
    if path:
        return str(path)
    import importlib.util

    try:
        spec = importlib.util.find_spec("pynvml")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin != "namespace":
        return spec.origin
    return next(iter(spec.submodule_search_locations or []), None)


_shared: NvmlSession | None = None
_shared_lock = threading.Lock()


def shared() -> NvmlSession:
    """The process's session, started by the first reader that asks (under a lock: the doctor's probes ask at
    once) and shut down when the process ends. A start that failed is not kept: the next reader tries again,
    as each did before there was a session, and says why in its own result."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared.closed:
            session = NvmlSession.open()
            if not session.available:
                return session
            _shared = session
        return _shared


@atexit.register
def _close_shared() -> None:
    if _shared is not None:
        _shared.close()
