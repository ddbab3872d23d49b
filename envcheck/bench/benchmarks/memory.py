"""Memory bandwidth: on the device (copy), and across the host link in both directions.

A device-to-device copy reads and writes every byte, so it counts 2 × size (the convention of
NVIDIA's bandwidthTest and of STREAM's "copy"); that is the figure comparable with the datasheet's
memory bandwidth. Buffers are at least eight times the L2 cache (and never under 512 MiB on a GPU) so
that no repeat is served from cache. Host↔device copies count the bytes moved once, with pinned
memory (DMA straight from the buffer: what a DataLoader with ``pin_memory=True`` gets) and pageable
memory (staged through a driver buffer: what everything else gets). Each copy is checked bit-exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envcheck.bench import common
from envcheck.bench.model import Check, Options, Plan, Workload, benchmark
from envcheck.devices.model import DeviceInfo

if TYPE_CHECKING:
    import torch

MiB = 1 << 20


def device_buffer_bytes(dev: DeviceInfo, quick: bool) -> int:
    """Per-buffer size: far beyond the caches, within a quarter of the memory this process may still
    allocate there (two buffers, and the check's comparison mask of a quarter of one, fit with room to
    spare). On a CPU that is RAM within the cgroup's limit: past it the kernel's OOM killer ends the
    whole run with SIGKILL, which no retry at a smaller size can catch."""
    if dev.is_cuda:
        size = max(8 * (dev.l2_bytes or 0), 512 * MiB) * (1 if quick else 2)
    else:
        size = (64 if quick else 256) * MiB
    if dev.free_bytes is not None:
        size = min(size, dev.free_bytes // 4)
    return max(size // MiB, 1) * MiB


def host_buffer_bytes(quick: bool) -> int:
    return (128 if quick else 512) * MiB


def exact(got: torch.Tensor, want: torch.Tensor, reference: str) -> Check:
    """Copies must be bit-exact: count the elements that differ (compared on ``want``'s device)."""
    import torch

    wrong = int((got.to(want.device).view(torch.int32) != want.view(torch.int32)).sum())
    detail = "bit-exact" if not wrong else f"{wrong} of {want.numel()} elements differ after the copy"
    return Check(wrong == 0, wrong / want.numel(), 0.0, reference, detail)


def build_d2d(dev: DeviceInfo, nbytes: int) -> Workload:
    import torch

    device = dev.torch_device
    src = common.randn((nbytes // 4,), torch.float32, device, common.generator(device, common.case_seed("d2d", nbytes)))
    dst = common.empty(src.shape, torch.float32, device)
    return Workload(
        case=f"copy {nbytes // MiB} MiB",
        params={"bytes": nbytes, "counted": "read + write"},
        step=lambda: dst.copy_(src),
        verify=lambda: exact(dst, src, "source buffer"),
        work_per_step=2.0 * nbytes,
        work_unit="byte",
        peak_key="memory",
    )


def build_host_copy(dev: DeviceInfo, to_device: bool, pinned: bool, nbytes: int) -> Workload:
    import torch

    device = dev.torch_device
    n = nbytes // 4
    gen = common.generator("cpu", common.case_seed("host", to_device, pinned, nbytes))
    if to_device:
        host = common.randn((n,), torch.float32, "cpu", gen)
        host = host.pin_memory() if pinned else host
        target = common.empty((n,), torch.float32, device)

        def step() -> None:
            target.copy_(host, non_blocking=pinned)

        def verify() -> Check:
            return exact(target, host, "host buffer")

    else:
        src = common.randn((n,), torch.float32, "cpu", gen).to(device)
        host = torch.empty((n,), dtype=torch.float32, pin_memory=pinned)

        def step() -> None:
            host.copy_(src, non_blocking=pinned)

        def verify() -> Check:
            common.synchronize(dev)
            return exact(host, src, "device buffer")

    direction = "host->device" if to_device else "device->host"
    return Workload(
        case=f"{direction} {'pinned' if pinned else 'pageable'} {nbytes // MiB} MiB",
        params={"bytes": nbytes, "direction": direction, "pinned": pinned, "counted": "bytes moved once"},
        step=step,
        verify=verify,
        work_per_step=float(nbytes),
        work_unit="byte",
        peak_key=None,  # the host link's peak depends on the slot and platform, not the card
    )


@benchmark("memory.d2d", "device memory copy")
def memory_d2d(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Device-to-device copy bandwidth, bytes read + written, buffers ≫ L2 (RAM copy on a CPU): GB/s."""
    size = device_buffer_bytes(dev, opts.quick)
    return [Plan("copy", None, lambda scale: build_d2d(dev, max(MiB, int(size * scale) // MiB * MiB)))]


def _host_plan(dev: DeviceInfo, opts: Options, to_device: bool, pinned: bool) -> list[Plan]:
    label = f"{'h2d' if to_device else 'd2h'} {'pinned' if pinned else 'pageable'}"
    if not dev.is_cuda:
        return [Plan(label, None, skip="a CPU has no host<->device link")]
    size = host_buffer_bytes(opts.quick)
    return [
        Plan(
            label, None, lambda scale: build_host_copy(dev, to_device, pinned, max(MiB, int(size * scale) // MiB * MiB))
        )
    ]


@benchmark("memory.h2d_pinned", "host to device, pinned", host_bound=True)
def memory_h2d_pinned(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Host-to-device copy from pinned memory: GB/s."""
    return _host_plan(dev, opts, to_device=True, pinned=True)


@benchmark("memory.h2d_pageable", "host to device, pageable", host_bound=True)
def memory_h2d_pageable(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Host-to-device copy from ordinary (pageable) memory: GB/s."""
    return _host_plan(dev, opts, to_device=True, pinned=False)


@benchmark("memory.d2h_pinned", "device to host, pinned", host_bound=True)
def memory_d2h_pinned(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Device-to-host copy into pinned memory: GB/s."""
    return _host_plan(dev, opts, to_device=False, pinned=True)


@benchmark("memory.d2h_pageable", "device to host, pageable", host_bound=True)
def memory_d2h_pageable(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Device-to-host copy into ordinary (pageable) memory: GB/s."""
    return _host_plan(dev, opts, to_device=False, pinned=False)
