"""Watch every GPU's own telemetry through NVML while something else loads it (``envcheck burn``).

One :class:`Sampler` reads NVML for all the watched GPUs about once a second, on a background thread, as a reader
over one NVML session (:class:`~envcheck.probes.nvml.session.NvmlSession`: init once, many reads, shut down once;
its own, or one it is handed, such as the process's session the ``nvml`` probe already started) through the one
funnel: a reading the card or driver does not offer is an
:class:`~envcheck.core.model.NA` in the sample, never an exception, and a GPU that falls off the bus mid-run
becomes samples that say so while the others go on being read. One sampler rather than one per worker: NVML
is read at one rate, once per GPU, and the workers do nothing but load their GPU.

Every :class:`Sample` is stamped ``t_s``, seconds since the sampler started on its clock (injectable; by
default ``time.monotonic``). Workers' throughput is stamped on the same clock (:meth:`Sampler.now`,
:meth:`Sampler.since_start`, :meth:`Sampler.record`), so a report can line up "SM clock dropped 30 % at 7:00
when the GPU reached 87 °C" with "and the throughput with it".

Xid events (the driver's error reports, ``dmesg``'s ``NVRM: Xid``) come through an NVML event set where the
driver offers them (``nvmlEventSetCreate``, ``nvmlDeviceRegisterEvents`` for
``nvmlEventTypeXidCriticalError``, drained with ``nvmlEventSetWait_v2`` and a 1 ms timeout each round); where
it does not (NotSupported in some VMs and containers, NoPermission), each sample's ``xids`` is an NA saying why.

Bounded: the thread is a daemon, and :meth:`Sampler.stop` waits for it at most ``stop_timeout_s``. An NVML
call that never returns (a wedged driver) cannot hang the caller: ``stop`` gives up, says so (``hung``), and
NVML is then left initialised (shutting it down under a call in flight is not safe); the daemon thread dies
with the process. Recording throughput never waits on NVML (a lock of its own).

Nothing here changes GPU state or needs root. NVML's constants are the C values from ``nvml.h``
(:mod:`envcheck.probes.nvml.constants`), so any pynvml copy works.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envcheck.core.model import NA, available, error_line, first_line, to_jsonable
from envcheck.probes.nvml.constants import (
    CLOCK_MEM,
    CLOCK_SM,
    ERROR_GPU_IS_LOST,
    ERROR_NOT_SUPPORTED,
    EVENT_TYPE_XID,
    FIELD_MEMORY_TEMP,
    MEMORY_ERROR_TYPE_CORRECTED,
    MEMORY_ERROR_TYPE_UNCORRECTED,
    SUCCESS,
    TEMPERATURE_GPU,
    TEMPERATURE_THRESHOLD_GPU_MAX,
    TEMPERATURE_THRESHOLD_MEM_MAX,
    TEMPERATURE_THRESHOLD_SHUTDOWN,
    TEMPERATURE_THRESHOLD_SLOWDOWN,
    VALUE_MEMBERS,
    VOLATILE_ECC,
    reason_names,
)
from envcheck.probes.nvml.inventory import clocks_event_reasons, watts
from envcheck.probes.nvml.session import NOT_SUPPORTED, GpuLost, NoCount, NvmlSession, Reader, as_text

#: Seconds between rounds: once a second is what ``nvidia-smi dmon`` and DCGM's default watches use, often
#: enough to see a slowdown start, cheap enough (about 15 NVML reads per GPU) to cost the burn nothing.
DEFAULT_INTERVAL_S = 1.0
#: The longest :meth:`Sampler.stop` waits for the thread before calling it hung.
STOP_TIMEOUT_S = 5.0
#: How long each ``nvmlEventSetWait_v2`` may wait for an Xid (ms), and how many events one round takes at
#: most: a storm of events must not stall the sampling.
XID_WAIT_MS = 1
MAX_EVENTS_PER_ROUND = 64

#: What an ECC count says on a GPU whose ECC is off.
ECC_OFF = "ECC is off on this GPU"

#: A device key for recorded values: a GPU's NVML index (so its throughput lines up with its samples), or a
#: name of the caller's (``"cpu"``).
DeviceKey = Hashable


@dataclass(frozen=True)
class Sample:
    """One GPU's readings at one moment. Every reading is a number or an :class:`NA` saying why not; a GPU
    that is lost has ``lost`` set and nothing else."""

    #: The GPU's NVML index.
    device: int
    #: Seconds since the sampler started, on its clock.
    t_s: float
    sm_clock_mhz: int | NA = NA()
    mem_clock_mhz: int | NA = NA()
    power_w: float | NA = NA()
    #: The power limit the driver enforces now (the lower of the board's and any set by an administrator).
    power_limit_w: float | NA = NA()
    temperature_c: int | NA = NA()
    #: HBM temperature, where the board has a sensor for it.
    memory_temperature_c: int | NA = NA()
    #: The driver's thresholds (read once when the sampler opens, repeated here so a sample stands alone):
    #: the GPU slows down at ``slowdown_c``; ``memory_max_c`` is the highest the memory may run at.
    slowdown_c: int | NA = NA()
    memory_max_c: int | NA = NA()
    utilization_gpu_pct: int | NA = NA()
    utilization_memory_pct: int | NA = NA()
    #: The raw ``nvmlClocksEventReason*`` bitmask; :attr:`reasons` names its bits.
    clocks_event_reasons: int | NA = NA()
    #: Since the driver loaded (or the GPU was last reset).
    ecc_volatile_uncorrected: int | NA = NA()
    ecc_volatile_corrected: int | NA = NA()
    row_remap_pending: bool | NA = NA()
    row_remap_failed: bool | NA = NA()
    rows_remapped_correctable: int | NA = NA()
    rows_remapped_uncorrectable: int | NA = NA()
    pcie_replay: int | NA = NA()
    #: Xids the driver reported on this GPU since the previous sample; NA when Xid events are not watched
    #: here (the reason says why).
    xids: tuple[int, ...] | NA = NA()
    lost: bool = False
    #: What NVML said when the GPU was lost.
    error: str | None = None

    @property
    def reasons(self) -> tuple[str, ...]:
        """The clocks-event reasons active at this moment, by name (``hw_thermal``, ``sw_power_cap``...)."""
        return reason_names(self.clocks_event_reasons)

    def to_json(self) -> dict[str, Any]:
        data = to_jsonable(self)
        data["reasons"] = list(self.reasons)
        return data


@dataclass(frozen=True)
class HostSample:
    """The host at one moment, on the same clock: a ``--device cpu`` burn has no NVML telemetry, and a GPU
    burn whose CPU is pegged feeds its GPUs late."""

    t_s: float
    cpu_pct: float | NA = NA()
    #: The hottest CPU package or core sensor psutil finds (Linux hwmon); NA where there is none.
    cpu_temperature_c: float | NA = NA()

    def to_json(self) -> dict[str, Any]:
        return to_jsonable(self)


@dataclass(frozen=True)
class Point:
    """A value a caller recorded (a worker's throughput), stamped on the sampler's clock."""

    t_s: float
    value: float


@dataclass(frozen=True)
class WatchedGpu:
    """A GPU the sampler was asked to watch, as it found it when it opened."""

    index: int
    name: str | NA = NA()
    uuid: str | NA = NA()
    pci_bus_id: str | NA = NA()
    slowdown_c: int | NA = NA()
    shutdown_c: int | NA = NA()
    #: The GPU's maximum operating temperature (DCGM's DCGM_FI_DEV_GPU_MAX_OP_TEMP) and its memory's.
    gpu_max_c: int | NA = NA()
    memory_max_c: int | NA = NA()
    #: ECC on: only then are its error counts read (GeForce has no ECC; with ECC off the counts mean nothing).
    ecc_mode: bool | NA = NA()
    #: True when its Xid events are watched; NA saying why not.
    xid_events: bool | NA = NA()
    #: Why it is not read at all (the driver refused to open it to this user); None when it is.
    error: str | None = None


@dataclass(frozen=True)
class Telemetry:
    """Everything a sampler saw, frozen: what the burn's verdicts and report read.

    ``status`` is the ``nvml`` probe's vocabulary (``ok``, or how NVML failed to start; ``driver.nvml``
    judges that), or ``unused`` when no GPU was asked for (a ``--device cpu`` burn)."""

    status: str
    interval_s: float
    error: str | None = None
    gpus: tuple[WatchedGpu, ...] = ()
    #: NVML index -> its samples in time order.
    samples: Mapping[int, tuple[Sample, ...]] = field(default_factory=dict)
    host: tuple[HostSample, ...] = ()
    #: Device key -> the values recorded for it (:meth:`Sampler.record`), in the order recorded.
    values: Mapping[DeviceKey, tuple[Point, ...]] = field(default_factory=dict)
    #: GPUs asked for (index or UUID) that the driver does not have.
    unresolved: tuple[str, ...] = ()
    #: The sampling thread did not stop in time: an NVML call hung (the driver is wedged).
    hung: bool = False
    #: What stopped the sampling thread early, if anything did.
    thread_error: str | None = None
    missing_functions: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error": self.error,
            "interval_s": self.interval_s,
            "gpus": to_jsonable(self.gpus),
            "samples": {str(k): [s.to_json() for s in v] for k, v in self.samples.items()},
            "host": [h.to_json() for h in self.host],
            "values": {str(k): to_jsonable(v) for k, v in self.values.items()},
            "unresolved": list(self.unresolved),
            "hung": self.hung,
            "thread_error": self.thread_error,
            "missing_functions": list(self.missing_functions),
        }


@dataclass
class _Open:
    """A watched GPU while the sampler runs: its handle, and whether it has been lost."""

    watched: WatchedGpu
    handle: Any
    lost_error: str | None = None


class Sampler:
    """Samples the selected GPUs' telemetry every ``interval_s`` on a daemon thread.

    Use it as a context manager (``with Sampler([0, 1]) as s: ...; s.telemetry()``), or drive it by hand:
    :meth:`open`, then :meth:`sample` for one round now (what the thread calls; tests step a fake clock and
    call it), :meth:`start` / :meth:`stop` for the thread, :meth:`close`.

    ``devices``: NVML indices, or UUIDs (``GPU-...``, a unique prefix is enough); None watches every GPU;
    an empty sequence watches none and does not start NVML (``--device cpu``). ``host`` adds a
    :class:`HostSample` each round. ``session``: an NVML session to read through (the process's, which the
    ``nvml`` probe already started to tell who the GPUs are), left open on :meth:`close`; without one the
    sampler starts NVML itself and shuts it down on :meth:`close`.
    """

    def __init__(
        self,
        devices: Sequence[int | str] | None = None,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        host: bool = True,
        xid_wait_ms: int = XID_WAIT_MS,
        session: NvmlSession | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {interval_s!r}")
        self.devices = None if devices is None else list(devices)
        self.interval_s = interval_s
        self.clock = clock
        self.stop_timeout_s = stop_timeout_s
        self.host = host
        self.xid_wait_ms = xid_wait_ms
        #: The sampler's zero on ``clock``: set by :meth:`open`.
        self.t0: float | None = None
        self.hung = False
        self._session = session
        self._owns_session = session is None
        self._status, self._error = "unused", None
        self._missing: list[str] = []
        self._read: Reader | None = None
        self._gpus: list[_Open] = []
        self._unresolved: list[str] = []
        self._event_set: Any = None
        self._samples: dict[int, list[Sample]] = {}
        self._host: list[HostSample] = []
        self._values: dict[DeviceKey, list[Point]] = {}
        self._thread: threading.Thread | None = None
        self._thread_error: str | None = None
        self._stopping = threading.Event()
        self._nvml_lock = threading.Lock()  # one round of NVML reads at a time
        self._data_lock = threading.Lock()  # the recorded data; never held across an NVML call

    # -- the clock ------------------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the sampler started, on its clock: the ``t_s`` of a sample taken now."""
        return self.since_start(self.clock())

    def since_start(self, clock_value: float) -> float:
        """``clock_value`` (a reading of the sampler's clock: ``time.monotonic()`` by default, which is one
        clock for every process on the machine) as seconds since the sampler started."""
        if self.t0 is None:
            raise RuntimeError("the sampler has not been opened")
        return clock_value - self.t0

    def record(self, key: DeviceKey, value: float, t_s: float | None = None) -> Point:
        """Record a value (a worker's throughput) for ``key`` at ``t_s`` (now, by default) on the sampler's
        clock. Key a GPU's values by its NVML index so they line up with its samples. Thread-safe, and never
        waits on NVML."""
        point = Point(self.now() if t_s is None else t_s, float(value))
        with self._data_lock:
            self._values.setdefault(key, []).append(point)
        return point

    # -- life cycle -----------------------------------------------------------------------------------
    def __enter__(self) -> Sampler:
        self.open()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()

    def open(self) -> None:
        """Start NVML, open the selected GPUs, read what does not change (thresholds, identity), register for
        Xid events, and set the clock's zero."""
        if self.devices != []:
            if self._session is None:
                self._session = NvmlSession.open()
            session = self._session
            self._status, self._error = session.status, session.error
            if session.available:
                self._read = session.reader(missing=self._missing)
                self._open_gpus(session)
        if self.host:
            _cpu_percent()  # psutil's first reading is meaningless: prime it
        with self._data_lock:
            self._samples = {g.watched.index: [] for g in self._gpus if g.watched.error is None}
        self.t0 = self.clock()

    def start(self) -> None:
        """Sample every ``interval_s`` on a daemon thread until :meth:`stop`."""
        if self.t0 is None:
            self.open()
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="envcheck-telemetry", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop the thread, waiting at most ``timeout_s`` (``stop_timeout_s`` by default). False, and
        :attr:`hung` set, when it is stuck in an NVML call that does not return."""
        thread = self._thread
        if thread is None:
            return True
        self._stopping.set()
        thread.join(self.stop_timeout_s if timeout_s is None else timeout_s)
        if thread.is_alive():
            self.hung = True
            return False
        self._thread = None
        return True

    def close(self) -> None:
        """Free the event set and shut NVML down, unless the thread is stuck inside NVML (see :attr:`hung`):
        then both are left to the process's exit."""
        if self._thread is not None and self._thread.is_alive():
            self.hung = True
            return
        if self._event_set is not None and self._read is not None:
            self._read("nvmlEventSetFree", self._event_set)
            self._event_set = None
        if self._owns_session and self._session is not None:
            self._session.close()

    def _run(self) -> None:
        # The clock stamps the samples; the wait between rounds is real time (Event.wait), so stop()
        # interrupts it at once. A round that overran its interval is not made up for with a burst.
        due = time.monotonic()
        while not self._stopping.is_set():
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the run silently: say it in the telemetry
                self._thread_error = error_line(exc)
                return
            due += self.interval_s
            wait = due - time.monotonic()
            if wait < 0:
                due, wait = time.monotonic(), 0.0
            self._stopping.wait(wait)

    # -- reading --------------------------------------------------------------------------------------
    def sample(self) -> list[Sample]:
        """Take one round now: one :class:`Sample` per watched GPU (and a host sample), all stamped with the
        same ``t_s``; Xid events that arrived since the last round go to their GPUs' samples."""
        with self._nvml_lock:
            t_s = self.now()
            xids = self._drain_xids()
            taken = [self._sample_gpu(gpu, t_s, xids.get(gpu.watched.index, ())) for gpu in self._readable()]
            host = _host_sample(t_s) if self.host else None
        with self._data_lock:
            for sample in taken:
                self._samples[sample.device].append(sample)
            if host is not None:
                self._host.append(host)
        return taken

    def telemetry(self) -> Telemetry:
        """What has been sampled and recorded so far, frozen (safe to call while the thread runs)."""
        with self._data_lock:
            samples = {k: tuple(v) for k, v in self._samples.items()}
            values = {k: tuple(v) for k, v in self._values.items()}
            host = tuple(self._host)
        return Telemetry(
            status=self._status,
            error=self._error,
            interval_s=self.interval_s,
            gpus=tuple(g.watched for g in self._gpus),
            samples=samples,
            host=host,
            values=values,
            unresolved=tuple(self._unresolved),
            hung=self.hung,
            thread_error=self._thread_error,
            missing_functions=tuple(self._missing),
        )

    @property
    def gpus(self) -> list[WatchedGpu]:
        return [g.watched for g in self._gpus]

    def _readable(self) -> list[_Open]:
        return [g for g in self._gpus if g.watched.error is None]

    def _open_gpus(self, session: NvmlSession) -> None:
        read = self._read
        assert read is not None
        try:
            count = session.count(read)
        except NoCount as exc:
            self._status, self._error = "error", str(exc)
            return
        everything = self.devices is None or _by_uuid(self.devices)
        wanted = range(count) if everything else [i for i in _indices(self.devices) if 0 <= i < count]
        opened = {gpu.index: gpu for gpu in session.gpus(read, wanted)}
        handles = {index: gpu.handle for index, gpu in opened.items() if gpu.handle is not None}
        for index in self._select(count, handles):
            gpu = opened[index]
            if gpu.handle is not None:
                self._gpus.append(self._watch(index, gpu.handle))
            elif gpu.lost is not None:
                self._gpus.append(_Open(WatchedGpu(index=index), None, lost_error=gpu.lost))
            else:
                why = (
                    f"the driver refused to open it to this user: {gpu.refused}"
                    if gpu.refused is not None
                    else "the pynvml module failed to open it"
                )
                self._gpus.append(_Open(WatchedGpu(index=index, error=why), None))
        self._register_xids()

    def _select(self, count: int, handles: Mapping[int, Any]) -> list[int]:
        """The NVML indices asked for, in the order asked; what matches nothing goes to ``unresolved``."""
        if self.devices is None:
            return list(range(count))
        assert self._read is not None
        uuids = {i: as_text(self._read("nvmlDeviceGetUUID", h)) for i, h in handles.items()}
        chosen: list[int] = []
        for selector in self.devices:
            index = _index(selector)
            if index is None:
                matches = [i for i, u in uuids.items() if available(u) and u.startswith(str(selector))]
                index = matches[0] if len(matches) == 1 else None
            if index is None or not 0 <= index < count:
                self._unresolved.append(str(selector))
            elif index not in chosen:
                chosen.append(index)
        return chosen

    def _watch(self, index: int, handle: Any) -> _Open:
        assert self._read is not None
        q = self._read.on(handle)
        try:
            pci = q("nvmlDeviceGetPciInfo")
            ecc = q("nvmlDeviceGetEccMode")
            watched = WatchedGpu(
                index=index,
                name=as_text(q("nvmlDeviceGetName")),
                uuid=as_text(q("nvmlDeviceGetUUID")),
                pci_bus_id=as_text(pci.busId) if not isinstance(pci, NA) else pci,
                slowdown_c=q("nvmlDeviceGetTemperatureThreshold", TEMPERATURE_THRESHOLD_SLOWDOWN),
                shutdown_c=q("nvmlDeviceGetTemperatureThreshold", TEMPERATURE_THRESHOLD_SHUTDOWN),
                gpu_max_c=q("nvmlDeviceGetTemperatureThreshold", TEMPERATURE_THRESHOLD_GPU_MAX),
                memory_max_c=q("nvmlDeviceGetTemperatureThreshold", TEMPERATURE_THRESHOLD_MEM_MAX),
                ecc_mode=ecc if isinstance(ecc, NA) else bool(ecc[0]),
            )
        except GpuLost as exc:
            return _Open(WatchedGpu(index=index), handle, lost_error=str(exc))
        return _Open(watched, handle)

    def _register_xids(self) -> None:
        """One event set for every watched GPU that offers Xid events; each GPU's ``xid_events`` says whether
        its Xids are watched, or why not."""
        read = self._read
        assert read is not None
        readable = [g for g in self._readable() if g.lost_error is None]
        if not readable:
            return
        event_set = read("nvmlEventSetCreate")
        for gpu in readable:
            watching: bool | NA = event_set if isinstance(event_set, NA) else True
            try:
                if watching is True:
                    supported = read("nvmlDeviceGetSupportedEventTypes", gpu.handle)
                    if isinstance(supported, NA):
                        watching = supported
                    elif not supported & EVENT_TYPE_XID:
                        watching = NA(NOT_SUPPORTED)
                if watching is True:
                    registered = read("nvmlDeviceRegisterEvents", gpu.handle, EVENT_TYPE_XID, event_set)
                    watching = registered if isinstance(registered, NA) else True
            except GpuLost as exc:
                gpu.lost_error, watching = str(exc), NA("the GPU is lost")
            gpu.watched = _replace(gpu.watched, xid_events=watching)
        if not isinstance(event_set, NA):
            self._event_set = event_set

    def _drain_xids(self) -> dict[int, tuple[int, ...]]:
        """Xids delivered since the last round, by NVML index (at most :data:`MAX_EVENTS_PER_ROUND`)."""
        if self._event_set is None or self._read is None:
            return {}
        by_address = {_address(g.handle): g.watched.index for g in self._gpus if g.handle is not None}
        found: dict[int, list[int]] = {}
        for _ in range(MAX_EVENTS_PER_ROUND):
            try:
                event = self._read("nvmlEventSetWait_v2", self._event_set, self.xid_wait_ms)
            except GpuLost:
                break  # which GPU is not said; its own reads will show it lost
            if isinstance(event, NA):  # NVML_ERROR_TIMEOUT: nothing more has come
                break
            if not event.eventType & EVENT_TYPE_XID:
                continue
            index = by_address.get(_address(event.device))
            if index is not None:
                found.setdefault(index, []).append(int(event.eventData))
        return {index: tuple(xids) for index, xids in found.items()}

    def _sample_gpu(self, gpu: _Open, t_s: float, xids: tuple[int, ...]) -> Sample:
        index, watched = gpu.watched.index, gpu.watched
        # A GPU's last words (Xid 79) arrive with the round that finds it lost: keep them on the lost sample.
        seen = watched.xid_events if isinstance(watched.xid_events, NA) else xids
        if gpu.lost_error is not None:
            return Sample(index, t_s, lost=True, error=gpu.lost_error, xids=seen)
        assert self._read is not None
        q = self._read.on(gpu.handle)

        def ecc(kind: int) -> int | NA:
            if watched.ecc_mode is True:
                return q("nvmlDeviceGetTotalEccErrors", kind, VOLATILE_ECC)
            return watched.ecc_mode if isinstance(watched.ecc_mode, NA) else NA(ECC_OFF)

        try:
            util = q("nvmlDeviceGetUtilizationRates")
            rows = q("nvmlDeviceGetRemappedRows")
            return Sample(
                device=index,
                t_s=t_s,
                sm_clock_mhz=q("nvmlDeviceGetClockInfo", CLOCK_SM),
                mem_clock_mhz=q("nvmlDeviceGetClockInfo", CLOCK_MEM),
                power_w=watts(q("nvmlDeviceGetPowerUsage")),
                power_limit_w=watts(q("nvmlDeviceGetEnforcedPowerLimit")),
                temperature_c=q("nvmlDeviceGetTemperature", TEMPERATURE_GPU),
                memory_temperature_c=self._memory_temperature(gpu.handle),
                slowdown_c=watched.slowdown_c,
                memory_max_c=watched.memory_max_c,
                utilization_gpu_pct=util if isinstance(util, NA) else util.gpu,
                utilization_memory_pct=util if isinstance(util, NA) else util.memory,
                clocks_event_reasons=clocks_event_reasons(q),
                ecc_volatile_uncorrected=ecc(MEMORY_ERROR_TYPE_UNCORRECTED),
                ecc_volatile_corrected=ecc(MEMORY_ERROR_TYPE_CORRECTED),
                rows_remapped_correctable=rows if isinstance(rows, NA) else rows[0],
                rows_remapped_uncorrectable=rows if isinstance(rows, NA) else rows[1],
                row_remap_pending=rows if isinstance(rows, NA) else bool(rows[2]),
                row_remap_failed=rows if isinstance(rows, NA) else bool(rows[3]),
                pcie_replay=q("nvmlDeviceGetPcieReplayCounter"),
                xids=seen,
            )
        except GpuLost as exc:
            gpu.lost_error = str(exc)
            return Sample(index, t_s, lost=True, error=gpu.lost_error, xids=seen)

    def _memory_temperature(self, handle: Any) -> int | NA:
        """HBM temperature: a field value (``NVML_FI_DEV_MEMORY_TEMP``), whose own return code says whether the
        board has the sensor; the call as a whole succeeds either way."""
        assert self._read is not None
        values = self._read("nvmlDeviceGetFieldValues", handle, [FIELD_MEMORY_TEMP])
        if isinstance(values, NA):
            return values
        value = values[0]
        if value.nvmlReturn == ERROR_GPU_IS_LOST:
            raise GpuLost("the GPU is lost (NVML_FI_DEV_MEMORY_TEMP)")
        if value.nvmlReturn == ERROR_NOT_SUPPORTED:
            return NA(NOT_SUPPORTED)
        if value.nvmlReturn != SUCCESS:
            return NA(f"NVML error {value.nvmlReturn}")
        member = VALUE_MEMBERS.get(value.valueType)
        return NA(f"unknown value type {value.valueType}") if member is None else int(getattr(value.value, member))


def _index(selector: int | str) -> int | None:
    """An NVML index (``3`` or ``"3"``), or None for a UUID."""
    if isinstance(selector, int):
        return selector
    return int(selector) if selector.strip().isdigit() else None


def _indices(devices: Iterable[int | str]) -> list[int]:
    return [i for i in (_index(d) for d in devices) if i is not None]


def _by_uuid(devices: Iterable[int | str]) -> bool:
    """Some GPU is asked for by UUID: every GPU must be opened to find it."""
    return any(_index(d) is None for d in devices)


def _address(handle: Any) -> int | None:
    """The address an NVML device handle points at: how an event's device is matched to a watched GPU."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return None


def _replace(watched: WatchedGpu, **changes: Any) -> WatchedGpu:
    import dataclasses

    return dataclasses.replace(watched, **changes)


def _cpu_percent() -> float | NA:
    try:
        import psutil

        return float(psutil.cpu_percent(interval=None))
    except Exception as exc:  # noqa: BLE001 - psutil missing or refused: not available
        return NA(first_line(exc))


#: psutil's names for CPU package and core sensors (Intel coretemp, AMD k10temp/zenpower, Arm SoCs).
CPU_SENSORS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal")


def _cpu_temperature() -> float | NA:
    try:
        import psutil

        sensors = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
    except Exception as exc:  # noqa: BLE001 - /sys unreadable in a sandbox: not available
        return NA(first_line(exc))
    readings = [t.current for name in CPU_SENSORS for t in sensors.get(name, []) if t.current]
    return max(readings) if readings else NA("no CPU temperature sensor visible")


def _host_sample(t_s: float) -> HostSample:
    return HostSample(t_s, _cpu_percent(), _cpu_temperature())
