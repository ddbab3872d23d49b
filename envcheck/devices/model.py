"""The device every GPU-using command works on: :class:`DeviceInfo`, plain data, resolved once
(envcheck.devices.resolve) and passed down as this object.

Two names for one device, kept apart: :attr:`DeviceInfo.name` is the *label* (``cpu``, ``cuda:3``: what
the user wrote after ``--device`` and what every report shows), and :attr:`DeviceInfo.torch_device` is
what torch is handed in the process that uses it. They differ in a worker pinned to its GPU by
``CUDA_VISIBLE_DEVICES`` (envcheck.devices.resolve.pin): CUDA numbers that card 0 there, whatever the
user calls it, so the worker works on :meth:`DeviceInfo.pinned` and reports under the same label.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class DeviceInfo:
    """What a command needs to know of a device to size and skip its work, and to tie a figure to a card.

    ``free_bytes`` is what this process may still allocate there: free GPU memory, or on the CPU the
    available RAM capped by the cgroup's memory limit (a container's limit is where the OOM killer
    strikes, not the host's RAM). ``uuid`` and ``pci_bus_id`` are NVML's, so that a figure can be tied to
    the physical card whatever ``CUDA_VISIBLE_DEVICES`` renumbered; None where NVML cannot say."""

    name: str  # the label: "cpu", "cuda:3" (the user's CUDA numbering); never handed to torch
    kind: str  # "cpu" or "cuda"
    model: str  # "NVIDIA H100 80GB HBM3", or the CPU model
    index: int | None = None  # CUDA's index in the user's numbering (the label's N)
    capability: tuple[int, int] | None = None
    total_bytes: int | None = None
    free_bytes: int | None = None
    l2_bytes: int | None = None
    multiprocessors: int | None = None
    threads: int | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    #: CUDA's index for the device in the process that uses it: None means :attr:`index` (the parent's
    #: numbering); 0 in a worker pinned to it. Local to a process, so never in a report or a job.
    ordinal: int | None = None

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def cuda_index(self) -> int | None:
        """CUDA's index for the card in *this* process (None for a CPU)."""
        if not self.is_cuda:
            return None
        return self.index if self.ordinal is None else self.ordinal

    @property
    def torch_device(self) -> str:
        """``"cpu"`` or ``"cuda:N"``, N as CUDA numbers the card in *this* process: what torch is handed."""
        return "cpu" if not self.is_cuda else f"cuda:{self.cuda_index}"

    def pinned(self) -> DeviceInfo:
        """This device as a worker pinned to it sees it (CUDA's device 0 there), under the same label."""
        return replace(self, ordinal=0) if self.is_cuda else self

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model,
            "index": self.index,
            "capability": ".".join(map(str, self.capability)) if self.capability else None,
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "l2_bytes": self.l2_bytes,
            "multiprocessors": self.multiprocessors,
            "threads": self.threads,
            "uuid": self.uuid,
            "pci_bus_id": self.pci_bus_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceInfo:
        """Back from :meth:`to_json`: a device travels to its worker, and back, this way."""
        capability = data.get("capability")
        major, _, minor = (capability or "").partition(".")
        fields = {k: data.get(k) for k in ("index", "total_bytes", "free_bytes", "l2_bytes", "multiprocessors")}
        return cls(
            data["name"],
            data["kind"],
            data["model"],
            capability=(int(major), int(minor)) if capability else None,
            threads=data.get("threads"),
            uuid=data.get("uuid"),
            pci_bus_id=data.get("pci_bus_id"),
            **fields,
        )
