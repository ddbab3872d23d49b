"""The errors envcheck recognises: one :class:`Signature` per known failure, each with what it means, the
doctor's checks that decide whether *this* machine shows its cause, the fix, and the public thread it was
learnt from. ``envcheck explain`` reads pasted logs with it; the bench's compile case names the check behind
a failed ``torch.compile`` with it. It lives with the doctor because what it maps to is the doctor's checks.

Adding one is one entry in :data:`SIGNATURES` (tests/doctor/test_signatures.py holds every entry to
naming checks that exist, a fix and a source). The messages are those researchers paste, as catalogued
with their causes in the project's list of failures (rows 1-28) and the doctor's own failure classes.

A pattern is searched in a whole block of log text at once, so it must stay within one line: ``[^\\n]``
and ``[ \\t]``, never ``.*`` across ``\\s`` (``.`` stops at a newline; ``\\s`` does not). Each of its
top-level alternatives is compiled on its own (:func:`_p`) and must start with a literal of a few
characters (:func:`needle`): a block of log is first asked whether it holds each literal at all (a
substring test, a fraction of a millisecond per MB for all of them together), and only the patterns whose
literal is there are run (benchmarks/explain_scan.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envcheck.probes.symbols import CUDA_LIBRARIES, missing_cuda_library, undefined_symbol


@dataclass(frozen=True)
class Signature:
    """One known error. ``checks`` decide whether this machine shows the cause; ``there`` says what to
    look at on the machine where the error happened when they pass here; ``analyse`` (optional) reads the
    first line that matched for more (which package, which side is wrong) and returns JSON-able facts
    whose ``fix``, when given, replaces the entry's own. ``requires`` narrows a check that judges several
    causes at once (``kernel.events``: peermem errors, segfaults, OOM kills; ``kernel.xid``: every Xid): its
    warning shows *this* cause only where the predicate holds on its details (:func:`event`, :func:`xid`), so
    an OOM kill in the log does not make a peermem error "shown", nor an Xid 94 a GPU that fell off the bus."""

    id: str
    title: str
    #: Any of these found in a line is this error (each one literal-prefixed: :func:`_p`).
    patterns: tuple[re.Pattern[str], ...]
    meaning: str
    checks: tuple[str, ...]
    fix: str
    there: str
    #: Public threads it was learnt from, ``owner/repo#N`` (GitHub issues and pull requests).
    sources: tuple[str, ...]
    command: str | None = None
    analyse: Callable[[str], dict[str, Any]] | None = None
    #: Check id -> a predicate on that check's details that must hold for its warning or failure to count.
    requires: Mapping[str, Callable[[dict[str, Any]], bool]] = field(default_factory=dict, hash=False, compare=False)

    def shows(self, check: str, details: dict[str, Any]) -> bool:
        """Whether a failing or warning ``check`` with these details shows this signature's cause."""
        predicate = self.requires.get(check)
        return predicate is None or predicate(details)


def event(kind: str) -> Mapping[str, Callable[[dict[str, Any]], bool]]:
    """``requires`` for a signature that one kind of ``kernel.events`` event decides: the check's
    ``events`` detail names each kind it found, keyed by the kind alone for this boot (the only events
    it warns on) and ``KIND (earlier boots)`` for the others."""
    return {"kernel.events": lambda details: kind in (details.get("events") or {})}


def xid(decides: Callable[[int], bool], table: str = "xids") -> Mapping[str, Callable[[dict[str, Any]], bool]]:
    """``requires`` for a signature that some Xids decide: kernel.xid's failure or warning shows it only where a
    row the verdict counts (``status`` fail or warn: not information, a reset GPU's or another environment's)
    has a code ``decides`` holds for. ``table``: ``xids`` (a GPU's Xid, a GPU off the bus as 79) or ``sxids``
    (an NVSwitch's SXid)."""
    key = table.removesuffix("s")

    def counted(details: dict[str, Any]) -> bool:
        rows = details.get(table) or []
        return any(r.get("status") in ("fail", "warn") and decides(r.get(key)) for r in rows)

    return {"kernel.xid": counted}


#: Characters that end a pattern's literal prefix.
_SYNTAX = set(".^$*+?{}[]()|")
#: Quantifiers: the literal character before one is optional or repeated, so not part of the prefix.
_QUANTIFIERS = set("*+?{")


def needle(pattern: re.Pattern[str]) -> str:
    """The literal text every match of ``pattern`` starts with (``NVRM: Xid \\(`` → ``NVRM: Xid (``): its
    leading characters up to the first piece of syntax, escapes of punctuation read as the character."""
    text, out, i = pattern.pattern, [], 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            escaped = text[i + 1 : i + 2]
            if not escaped or escaped.isalnum():  # \d, \w, \b...: a class or an anchor
                break
            out.append(escaped)
            i += 2
        elif char in _SYNTAX:
            if char in _QUANTIFIERS and out:
                out.pop()
            break
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _p(pattern: str) -> tuple[re.Pattern[str], ...]:
    """``pattern``'s top-level alternatives (``a|b(c|d)`` → ``a``, ``b(c|d)``), each compiled on its own so
    that each keeps its literal prefix, the engine's fast path."""
    parts, depth, start, i = [], 0, 0, 0
    in_class = False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":  # a "]" first in a class is a member
                i += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return tuple(re.compile(part) for part in parts)


#: Xids that name GPU memory: 48 double-bit ECC, 63/64 page retirement or row remapping, 92 high
#: single-bit rate, 94/95 contained and uncontained ECC errors (NVIDIA's Xid catalogue).
MEMORY_XIDS = (48, 63, 64, 92, 94, 95)
#: Xids that name NVLink: 74 (up to Hopper), 144-150 (Blackwell's NVLink and its fabric).
NVLINK_XIDS = (74, *range(144, 151))
#: The Xid of a GPU that fell off the bus (kernel.xid counts a GPU off the bus without an Xid line as it).
OFF_BUS_XID = 79
_MEMORY_XIDS = "|".join(map(str, MEMORY_XIDS))
_NVLINK_XIDS = "|".join(map(str, NVLINK_XIDS))
_XID = r"NVRM: Xid \([^)\n]*\): "

SIGNATURES: tuple[Signature, ...] = (
    # -- torch and the GPU's architecture ----------------------------------------------------------------
    Signature(
        "torch.unsupported_gpu",
        "This GPU is newer than the torch build",
        _p(r"with CUDA capability sm_\d+ is not compatible with the current PyTorch installation"),
        "The torch wheel carries no kernels for this GPU's compute capability (a cu121-cu126 wheel on a "
        'Blackwell card); every CUDA op then fails with "no kernel image is available".',
        ("torch.arch",),
        "Install a torch build whose arch list covers the GPU (CUDA 12.8 or newer wheels for Blackwell, "
        "sm_100/sm_120); extensions built for the old torch (flash-attn, kornia) must follow.",
        "Compare the GPU's compute capability (`nvidia-smi --query-gpu=name,compute_cap --format=csv`) with "
        "`python -c 'import torch; print(torch.cuda.get_arch_list())'` in the job's environment.",
        ("pytorch/pytorch#150733", "pytorch/pytorch#167244", "DreamTechAI/Direct3D-S2#32"),
        # The exact install depends on the driver and every GPU: the doctor's advice picks it for the machine.
        "envcheck doctor torch.arch packages.torch",
    ),
    Signature(
        "cuda.no_kernel_image",
        "No kernel image for this GPU",
        _p(r"no kernel image is available for execution on the device|cudaErrorNoKernelImageForDevice"),
        "The code that ran has no kernels built for this GPU's compute capability: torch itself when its "
        "arch list lacks the card, or an extension (flash-attn, xformers, a custom op) built for other GPUs.",
        ("torch.arch", "packages.extension_arch"),
        "Install a torch build whose arch list covers every GPU; if torch covers it, rebuild or reinstall "
        "the extension that raised it for this GPU (TORCH_CUDA_ARCH_LIST).",
        "Compare the GPU's compute capability there with torch's arch list "
        "(`python -c 'import torch; print(torch.cuda.get_arch_list())'`) and with the extension's build.",
        ("pytorch/pytorch#150733", "pytorch/pytorch#167244"),
    ),
    Signature(
        "torch.cpu_only",
        "A CPU-only torch where CUDA is wanted",
        _p(r"Torch not compiled with CUDA enabled|Found no NVIDIA driver on your system|No CUDA GPUs are available"),
        "The job asked for CUDA but this torch cannot give it: a CPU-only build (pip's default index on some "
        "platforms, or a dependency that reinstalled torch), no driver, or CUDA_VISIBLE_DEVICES hiding "
        "every GPU.",
        ("torch.cuda_build", "torch.devices", "env.gpu_vars"),
        "Install the CUDA build of torch that fits this driver and these GPUs (`envcheck doctor "
        "torch.cuda_build` gives the exact command), and check CUDA_VISIBLE_DEVICES is not empty.",
        "In the job's environment: `python -c 'import torch; print(torch.__version__, torch.version.cuda, "
        "torch.cuda.device_count())'` and `echo $CUDA_VISIBLE_DEVICES`.",
        ("pytorch/pytorch#28111",),
    ),
    Signature(
        "flash_attn.needs_ampere",
        "FlashAttention needs an Ampere or newer GPU",
        _p(r"FlashAttention only supports Ampere GPUs or newer"),
        "flash-attn 2 has kernels for compute capability 8.0 and newer only (not Turing, not V100); "
        "xformers' bundled FlashAttention has the same floor.",
        ("packages.extension_arch", "gpu.inventory", "torch.arch"),
        'Use PyTorch\'s scaled_dot_product_attention (attn_implementation="sdpa") on this GPU, or run on '
        "an Ampere-or-newer GPU.",
        "Read the GPU's compute capability there (`nvidia-smi --query-gpu=name,compute_cap --format=csv`): "
        "below 8.0, flash-attn 2 cannot run.",
        ("Dao-AILab/flash-attention#762", "Dao-AILab/flash-attention#1540"),
    ),
    # -- driver and CUDA runtime ---------------------------------------------------------------------------
    Signature(
        "torch.driver_too_old",
        "The NVIDIA driver is too old for this torch",
        _p(r"The NVIDIA driver on your system is too old"),
        "torch's CUDA runtime needs a newer driver than the one installed (a dependency pulled a cu12.8+ "
        "torch onto an R535 driver).",
        ("torch.driver_compat", "driver.version"),
        "Pin torch to a CUDA version the driver supports (`--index-url .../whl/cu121`), or upgrade the driver.",
        "Compare `nvidia-smi` (the driver's CUDA version, top right) with `python -c 'import torch; "
        "print(torch.version.cuda)'` there.",
        ("rapidsai/cugraph-gnn#410",),
    ),
    Signature(
        "cuda.driver_insufficient",
        "CUDA driver older than the CUDA runtime",
        _p(r"CUDA driver version is insufficient for CUDA runtime version|cudaErrorInsufficientDriver"),
        "The CUDA runtime (in the image or the wheel) is newer than the host's driver supports.",
        ("torch.driver_compat", "driver.version"),
        "Use an image or wheel built for an older CUDA, or upgrade the host driver.",
        "Compare the host driver's CUDA version (`nvidia-smi`) with the runtime the job ships (the image's "
        "CUDA_VERSION, or torch.version.cuda).",
        ("NVIDIA/nvidia-docker#700", "NVIDIA/nvidia-docker#747"),
    ),
    Signature(
        "cuda.compat_mismatch",
        "CUDA forward compatibility does not apply (errors 803, 804)",
        _p(
            r"system has unsupported display driver / cuda driver combination|cudaErrorSystemDriverMismatch"
            r"|CUDA_ERROR_SYSTEM_DRIVER_MISMATCH|forward compatibility was attempted on non supported HW"
            r"|cudaErrorCompatNotSupportedOnDevice|CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE"
        ),
        "A CUDA forward-compatibility package (cuda-compat, libcuda from the image) does not match the "
        "kernel driver (803), or the GPU does not support forward compatibility at all: only data-centre "
        "GPUs do (804).",
        ("torch.driver_compat", "driver.version", "env.ld_library_path"),
        "Remove the compat libcuda from LD_LIBRARY_PATH (or the image) on GPUs without forward compatibility, "
        "or install the compat package matching the host driver.",
        "On that node: `nvidia-smi` (driver version), `ldconfig -p | grep libcuda` and LD_LIBRARY_PATH in "
        "the job (a /usr/local/cuda/compat directory first?).",
        ("NVIDIA/nvidia-docker#1256", "NVIDIA/nvidia-container-toolkit#234"),
    ),
    Signature(
        "nvml.unknown_error",
        "NVML answers Unknown Error",
        _p(r"Failed to initialize NVML: Unknown Error"),
        "Inside a container, GPU access was lost after the host ran `systemctl daemon-reload` (the cgroup "
        "device rules were rewritten); on a host, the driver is in a bad state.",
        ("driver.nvml", "host.container"),
        "Restart the container; for good, configure the NVIDIA container toolkit with systemd cgroup "
        "management or use CDI devices.",
        "In the failing container: `nvidia-smi`; on the host whether `systemctl daemon-reload` ran since it started.",
        ("NVIDIA/nvidia-docker#1730", "NVIDIA/nvidia-container-toolkit#251"),
    ),
    Signature(
        "nvml.version_mismatch",
        "NVIDIA driver and library versions differ",
        _p(r"Driver/library version mismatch|NVML_ERROR_LIB_RM_VERSION_MISMATCH|LibRmVersionMismatch"),
        "The driver's user-space libraries were upgraded (unattended-upgrades, a package update) while the "
        "old kernel module is still loaded.",
        ("driver.nvml",),
        "Reboot (or unload and reload the nvidia modules); then hold the driver packages so it cannot happen mid-job.",
        "Compare `cat /proc/driver/nvidia/version` with the installed driver package there, and look in "
        "/var/log/apt/history.log for a driver upgrade.",
        ("lyulyul/shine-cluster#30", "NVIDIA/ubuntu-packaging-nvidia-driver#3"),
        "sudo apt-mark hold 'nvidia-*' 'libnvidia-*'",
    ),
    Signature(
        "fabric.not_initialized",
        "NVSwitch fabric not ready (CUDA error 802)",
        _p(
            r"system not yet initialized|cudaErrorSystemNotReady|CUDA_ERROR_SYSTEM_NOT_READY"
            r"|fabric manager NVIDIA GPU driver interface version"
        ),
        "On NVSwitch systems (HGX, DGX) CUDA refuses work until the fabric manager has set up the fabric; "
        "it is not running, or runs at another version than the driver.",
        ("fabric.manager",),
        "Install and start nvidia-fabricmanager at exactly the driver's version.",
        "On that node: `systemctl status nvidia-fabricmanager`, its version against `nvidia-smi`'s driver "
        "version, and `nvidia-smi -q | grep -A2 Fabric`.",
        ("dstackai/dstack#2348", "huggingface/huggingface_hub#4134"),
        "sudo systemctl enable --now nvidia-fabricmanager",
    ),
    Signature(
        "container.no_driver",
        "The container runtime found no NVIDIA driver",
        _p(r"nvidia-container-cli: initialization error: load library failed: libnvidia-ml\.so"),
        "The host has no NVIDIA driver, or the NVIDIA container toolkit is not configured for this runtime.",
        ("driver.nvml", "host.container"),
        "Install the driver on the host, then configure the runtime for the toolkit and restart it.",
        "On the host: `nvidia-smi`, then `nvidia-ctk runtime configure --runtime=docker` and a restart of the runtime.",
        ("NVIDIA/libnvidia-container#231", "NVIDIA/nvidia-container-toolkit#154"),
        "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker",
    ),
    Signature(
        "container.driver_timeout",
        "The container runtime timed out on the driver",
        _p(r"nvidia-container-cli: initialization error: driver error: timed out"),
        "Without persistence mode the driver tears the GPUs down between uses and sets them up again for "
        "each container, slowly enough to time out (typical on Azure VMs).",
        ("gpu.persistence",),
        "Run the persistence daemon so the driver keeps the GPUs initialised.",
        "On the host: `nvidia-smi -q | grep Persistence` and `systemctl status nvidia-persistenced`.",
        ("NVIDIA/nvidia-docker#723",),
        "sudo systemctl enable --now nvidia-persistenced",
    ),
    Signature(
        "gpu.lost",
        "A GPU fell off the bus",
        _p(
            r"fallen off the bus|Unable to determine the device handle for GPU"
            r"|GPU is lost|NVML_ERROR_GPU_IS_LOST|" + _XID + rf"{OFF_BUS_XID}\b"
        ),
        "The GPU stopped answering on PCIe (Xid 79): power, heat, seating or a riser; corrected PCIe (AER) "
        "errors often come first.",
        ("kernel.xid", "gpu.inventory", "driver.nvml"),
        "Drain the node and reboot it; if it happens again, check cooling, power and seating and ask the "
        "vendor for an RMA.",
        "On that node: `sudo dmesg -T | grep -iE 'xid|fallen off|AER'` and `nvidia-smi` (a lost GPU shows "
        "ERR! or is missing).",
        ("haotian-liu/LLaVA#1466", "rwth-i6/returnn#1486", "NVIDIA/open-gpu-kernel-modules#1151"),
        "sudo dmesg -T | grep -iE 'xid|fallen off|AER'",
        requires=xid(lambda code: code == OFF_BUS_XID),
    ),
    # -- the kernel log: NVSwitch, PCIe, crashes -------------------------------------------------------------
    Signature(
        "nvswitch.sxid",
        "An NVSwitch reported an SXid error",
        _p(r"SXid \(PCI:[^)\n]*\): \d+, (?:Fatal|Non-fatal)"),
        "The NVSwitch driver logged an error on a switch port (SXid): a fatal one stalls the GPUs' NVLink traffic "
        "through it (their jobs end with Xid 45), and a link that went down (20034) often comes with Xid 79 or 74.",
        ("kernel.xid", "fabric.manager", "fabric.nvlink"),
        "Drain the node; for a fatal SXid restart it (the fabric is reset with it); an SXid that comes back after "
        "reboots needs the vendor (the NVSwitch tray, the baseboard).",
        "On that node: `sudo dmesg -T | grep -E 'SXid|Xid'` and `journalctl -u nvidia-fabricmanager`.",
        ("leptonai/gpud#338",),
        "envcheck doctor kernel.xid",
        requires=xid(lambda code: True, table="sxids"),
    ),
    Signature(
        "pcie.aer",
        "PCIe errors (AER) on a device's link",
        _p(r"PCIe Bus Error: severity=|AER: (?:Multiple )?(?:Corrected|Uncorrected|Correctable)"),
        "The PCIe link of a device reported errors: corrected ones are a link that retries (riser, cable, slot, "
        "seating) and often come before the device drops off the bus; uncorrected or fatal ones lose data and take "
        "it off.",
        ("kernel.pcie_aer", "fabric.pcie_replay"),
        "Drain the node; reseat the card and check its riser, cable and slot; if errors keep coming, move the card "
        "or ask the vendor.",
        "On that node: `sudo dmesg -T | grep -E 'AER|PCIe Bus Error'` (which device, how often) and `sudo lspci "
        "-vvv -s <address>`.",
        ("wilicc/gpu-burn#1", "rwth-i6/returnn#1500"),
        "envcheck doctor kernel.pcie_aer",
    ),
    Signature(
        "rdma.peermem_invalid_context",
        "nvidia-peermem: invalid context",
        _p(r"nvidia-peermem [^\n]*ERROR detected invalid context"),
        "nvidia-peermem was asked about GPU memory that a NIC registration still pointed at after it was freed: "
        "collectives over GPUDirect RDMA may hang or fail.",
        ("kernel.events",),
        "Update the GPU driver (and with it nvidia-peermem), or use DMA-BUF instead of peermem (the open kernel "
        "module, a recent kernel and NCCL).",
        "On that node: `sudo dmesg -T | grep peermem`, the driver version (`nvidia-smi`), and the job's NCCL log.",
        ("Mellanox/nv_peer_memory#120", "NVIDIA/nccl#1474", "leptonai/gpud#74"),
        requires=event("peermem"),
    ),
    Signature(
        "nccl.segfault",
        "A process crashed inside NCCL or CUDA",
        _p(r"segfault at [^\n]* in lib(?:nccl|cuda|nvidia)"),
        "The kernel logged a segfault inside libnccl or the CUDA libraries: the rank died, and the others hang "
        "until their watchdog fires.",
        ("kernel.events", "torch.libs"),
        "Read the job's log for the first error; rerun with NCCL_DEBUG=INFO; try the NCCL version torch ships, and "
        "check the driver's libraries match its module (driver.nvml).",
        "On that node: `sudo dmesg -T | grep segfault` (which library, which process) and the rank's own log.",
        ("scitix/sichek#45",),
        requires=event("segfault"),
    ),
    Signature(
        "driver.api_mismatch",
        "The NVIDIA kernel module and the driver's libraries differ (kernel log)",
        _p(r"NVRM: API mismatch"),
        "The kernel module refused a client of another driver version: the driver's libraries were upgraded while "
        "the old module stayed loaded, and CUDA and NVML fail until it is reloaded.",
        ("kernel.events", "driver.nvml"),
        "Reboot the node, or unload and reload the nvidia modules when no process uses them; then hold the driver "
        "packages so it cannot happen mid-job.",
        "On that node: `cat /proc/driver/nvidia/version` against the installed driver package.",
        ("NVIDIA/nvidia-docker#182", "stackhpc/ansible-slurm-appliance#287"),
        "cat /proc/driver/nvidia/version",
        requires=event("api_mismatch"),
    ),
    Signature(
        "host.oom_kill",
        "The OOM killer killed a process",
        _p(r"Out of memory: Killed process|out of memory: Killed process"),
        "The host (or the job's cgroup) ran out of RAM and the kernel killed a process; a DataLoader worker killed "
        'this way shows in the job as "killed by signal: Killed".',
        ("kernel.events", "host.memory"),
        "Fewer DataLoader workers, smaller prefetch and pinned-memory buffers, or a higher memory limit for the job.",
        "On that node: `sudo dmesg -T | grep -i 'killed process'` and `free -g`.",
        ("ymoslem/OpenNMT-Tutorial#6", "TorchSSL/TorchSSL#4"),
        "envcheck doctor kernel.events host.memory",
        requires=event("oom_kill"),
    ),
    # -- GPU memory --------------------------------------------------------------------------------------
    Signature(
        "cuda.out_of_memory",
        "CUDA out of memory",
        _p(r"CUDA out of memory|CUDA error: out of memory|cudaErrorMemoryAllocation|CUDA_ERROR_OUT_OF_MEMORY"),
        "The GPU had no room for the allocation: the job needs more than the card has, another process (or a "
        'zombie of an earlier run) holds the memory ("Process N has X GiB memory in use"), or '
        "fragmentation.",
        ("gpu.memory",),
        "Stop the processes that hold the GPU (a stale PID of an earlier run); for fragmentation set "
        "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True; else a smaller batch or more GPUs.",
        "On that node: `nvidia-smi --query-compute-apps=pid,used_memory --format=csv`, and whether those "
        "PIDs still belong to a live job.",
        ("kaito-project/kaito#976", "pytorch/pytorch#173049", "vllm-project/vllm#41158"),
        "nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv",
    ),
    Signature(
        "gpu.memory_errors",
        "GPU memory (ECC) errors",
        _p(
            r"uncorrectable ECC error encountered|cudaErrorECCUncorrectable|CUDA_ERROR_ECC_UNCORRECTABLE"
            r"|" + _XID + rf"(?:{_MEMORY_XIDS})\b"
        ),
        "The GPU's memory reported errors ECC could not correct (Xid 48, 63, 64, 92, 94, 95): the job's data "
        "is not trustworthy, and the page or row must be retired or remapped.",
        ("kernel.xid", "gpu.ecc", "gpu.retired_memory"),
        "Drain the GPU and reset it (or reboot) so pending retirements and row remaps take effect; if "
        "errors recur or remapping fails, ask the vendor for an RMA.",
        "On that node: `nvidia-smi -q -d ECC,ROW_REMAPPER,PAGE_RETIREMENT` and `sudo dmesg -T | grep -i xid`.",
        ("vllm-project/vllm#5222", "huggingface/accelerate#1192"),
        "nvidia-smi -q -d ECC,ROW_REMAPPER,PAGE_RETIREMENT",
        requires=xid(lambda code: code in MEMORY_XIDS),
    ),
    Signature(
        "gpu.xid",
        "The NVIDIA driver logged an Xid error",
        _p(_XID + rf"(?!(?:{_MEMORY_XIDS}|{_NVLINK_XIDS}|{OFF_BUS_XID})\b)\d+"),
        "An Xid is the driver's record of a GPU fault: 13/31/43/45 are usually the application's (an illegal "
        "address, a killed context), 62/119/120 the GPU's firmware, others hardware.",
        ("kernel.xid", "gpu.inventory", "gpu.ecc", "gpu.retired_memory"),
        "Look the number up in NVIDIA's Xid catalogue; an Xid that recurs on one GPU whatever job runs means "
        "draining it.",
        "On that node: `sudo dmesg -T | grep -i xid` (which GPU, how often, with which jobs).",
        ("NVIDIA/open-gpu-kernel-modules#1150", "NVIDIA/open-gpu-kernel-modules#1151"),
        requires=xid(lambda code: code not in (*MEMORY_XIDS, *NVLINK_XIDS, OFF_BUS_XID)),
    ),
    Signature(
        "fabric.nvlink_error",
        "NVLink error",
        _p(_XID + rf"(?:{_NVLINK_XIDS})\b|uncorrectable NVLink error|cudaErrorNvlinkUncorrectable"),
        "An NVLink reported an error (Xid 74; 144-150 on Blackwell): collectives over it hang or fail, and "
        "the link may be down.",
        ("kernel.xid", "fabric.nvlink"),
        "Reset the GPUs (or reboot); a link that keeps failing needs the vendor (reseat the board or the bridge).",
        "On that node: `nvidia-smi nvlink -s` and `nvidia-smi nvlink -e` for the link states and counters.",
        ("pytorch/pytorch#58155", "NVIDIA/open-gpu-kernel-modules#1355"),
        "nvidia-smi nvlink -s",
        requires=xid(lambda code: code in NVLINK_XIDS),
    ),
    Signature(
        "cuda.kernel_fault",
        "A CUDA kernel faulted",
        _p(
            r"an illegal memory access was encountered|cudaErrorIllegalAddress|CUDA_ERROR_ILLEGAL_ADDRESS"
            r"|an illegal instruction was encountered|CUDA error: misaligned address"
            r"|unspecified launch failure|cudaErrorLaunchFailure|CUDA_ERROR_LAUNCH_FAILED"
        ),
        "A kernel touched memory it does not own, ran an illegal instruction, or died (the driver logs Xid 13, "
        "31 or 43 for it): most often a bug in the kernel or its inputs (an index out of range, a tensor on "
        "another device); where the same code runs cleanly on the other GPUs of the same model, the GPU itself "
        "(its memory: ECC errors, retired pages). A launch failure is also what a job sees when its GPU falls "
        "off the bus (Xid 79).",
        ("gpu.ecc", "gpu.retired_memory", "kernel.xid"),
        "Rerun with CUDA_LAUNCH_BLOCKING=1 to name the kernel that faulted; where the same code passes on the "
        "node's other GPUs (as envcheck bench's own benchmarks do), drain this GPU and reset it, and ask the "
        "vendor for an RMA if the fault returns.",
        "On that node: `sudo dmesg -T | grep -i xid` (an Xid 13, 31 or 43 names the GPU and the process; a 79 "
        "or a memory Xid says the GPU is at fault) and `nvidia-smi -q -d ECC`.",
        ("pytorch/examples#548", "pytorch/pytorch#74235", "opendatalab/MinerU#426"),
        "sudo dmesg -T | grep -i xid",
        # the Xids that say the GPU is at fault (13, 31 and 43 blame the application: kernel.xid lists them
        # as information): its memory's, and a GPU off the bus
        requires=xid(lambda code: code in MEMORY_XIDS or code == OFF_BUS_XID),
    ),
    Signature(
        "cuda.invalid_device",
        "Invalid device ordinal",
        _p(r"invalid device ordinal|cudaErrorInvalidDevice|CUDA_ERROR_INVALID_DEVICE"),
        "The job asked for a GPU index this process cannot see: CUDA_VISIBLE_DEVICES narrows the list, "
        "and under MIG one process enumerates only one MIG instance.",
        ("torch.devices", "env.gpu_vars", "gpu.mig"),
        "Ask for the devices the process sees (LOCAL_RANK within CUDA_VISIBLE_DEVICES); under MIG run one "
        "process per MIG instance (CUDA_VISIBLE_DEVICES=MIG-<uuid>).",
        "In the job: `echo $CUDA_VISIBLE_DEVICES`, `nvidia-smi -L` (MIG instances), and "
        "`python -c 'import torch; print(torch.cuda.device_count())'`.",
        ("pytorch/pytorch#102715", "pytorch/pytorch#95784"),
    ),
    # -- libraries -----------------------------------------------------------------------------------------
    Signature(
        "cudnn.no_nvrtc",
        "cuDNN 8 cannot find an unversioned libnvrtc.so",
        _p(r"Could not load library libcudnn\w*\.so\.8[^\n]*libnvrtc\.so"),
        "cuDNN 8's sub-libraries dlopen an unversioned `libnvrtc.so`, which the nvidia-* wheels do not "
        "ship: convolutions fail at their first call.",
        ("torch.libs", "torch.libraries", "env.ld_library_path"),
        "Upgrade torch (cuDNN 9 does not need it), or link libnvrtc.so to the wheel's libnvrtc.so.N.",
        "Look for `libnvrtc.so` without a number where the job's cuDNN is (site-packages/nvidia/cuda_nvrtc/lib).",
        ("AUTOMATIC1111/stable-diffusion-webui#10230",),
    ),
    Signature(
        "cudnn.missing",
        "A cuDNN library cannot be loaded",
        _p(r"Could not load library libcudnn\w*\.so[.\d]*(?![^\n]*libnvrtc)|Unable to load any of \{libcudnn"),
        "A package needs a cuDNN major that is not in this environment: two libraries (CTranslate2 or "
        "onnxruntime beside torch) want cuDNN 8 and 9, or LD_LIBRARY_PATH hides the one torch ships.",
        ("torch.libraries", "torch.libs", "env.ld_library_path"),
        "Install the cuDNN major the failing package needs (`nvidia-cudnn-cu12==8.*` or `==9.*`) or a build "
        "of that package for the cuDNN torch ships; do not point LD_LIBRARY_PATH at another cuDNN.",
        "List the cuDNN libraries the job can load (`ls site-packages/nvidia/cudnn/lib`, `ldconfig -p | grep "
        "cudnn`) against the major the failing package names.",
        ("jianchang512/stt#76",),
    ),
    Signature(
        "cuda.library_missing",
        "A CUDA library of another major version is missing",
        _p("|".join(rf"lib{n}\.so\.\d+[.\d]*[^\n]{{0,40}}cannot open shared object file" for n in CUDA_LIBRARIES)),
        "A compiled module was built for another CUDA major than this environment has: it links a CUDA "
        "runtime library that is not installed.",
        ("packages.extensions", "torch.cuda_build", "env.ld_library_path"),
        "Install the package's build for the CUDA torch uses, or the matching nvidia-*-cuNN runtime wheels.",
        "Compare the CUDA major the message names with torch.version.cuda in the job's environment.",
        ("Dao-AILab/flash-attention#853", "bitsandbytes-foundation/bitsandbytes#1559"),
        analyse=missing_cuda_library,
    ),
    Signature(
        "extension.undefined_symbol",
        "A compiled extension does not match the libraries it links",
        _p(r"undefined symbol: "),
        "A compiled module was built against other versions of the libraries it links: c10::, at:: or "
        "torch:: symbols mean another torch (or another C++ ABI); cuda* symbols another CUDA.",
        ("packages.extensions", "packages.torch", "packages.dependencies", "torch.libraries"),
        "Reinstall the package named here for this torch: its wheel for this torch and CUDA, or built "
        "against it (`pip install --no-build-isolation --force-reinstall PACKAGE`).",
        "Compare, in the job's environment, the torch version the package was built for (its wheel name or "
        "release notes) with `pip show torch`.",
        (
            "Dao-AILab/flash-attention#723",
            "Dao-AILab/flash-attention#1832",
            "Dao-AILab/flash-attention#853",
            "vllm-project/vllm#13608",
            "vllm-project/vllm#5501",
        ),
        analyse=undefined_symbol,
    ),
    Signature(
        "xformers.no_extensions",
        "xFormers runs without its C++/CUDA extensions",
        _p(r"xFormers can't load C\+\+/CUDA extensions"),
        "xformers was built for another torch (or a CUDA torch where this one is CPU-only): the import "
        "succeeds but every fast kernel is gone.",
        ("packages.extension_builds", "packages.torch", "packages.dependencies", "torch.cuda_build"),
        "Install xformers from the same index as torch (the build for this torch and CUDA); xformers 0.0.34 "
        "and newer need only torch >= the one they were built for.",
        "Run `python -m xformers.info` in the job's environment: it names the torch it was built for.",
        ("facebookresearch/xformers#982", "facebookresearch/xformers#1241"),
    ),
    Signature(
        "bitsandbytes.no_cuda_library",
        "bitsandbytes has no library for this CUDA",
        _p(r"CUDA Setup failed despite GPU being available|libbitsandbytes_cuda\d+\.so[^\n]*not found"),
        "bitsandbytes loads libbitsandbytes_cudaXYZ.so for torch's CUDA version (or BNB_CUDA_VERSION): that "
        "file is not shipped in the installed version.",
        ("packages.extension_builds", "torch.cuda_build", "env.gpu_vars"),
        "Upgrade bitsandbytes to a release that ships torch's CUDA, and unset BNB_CUDA_VERSION unless you "
        "know the override is right.",
        "Run `python -m bitsandbytes` in the job's environment, and look for BNB_CUDA_VERSION there.",
        ("bitsandbytes-foundation/bitsandbytes#572", "bitsandbytes-foundation/bitsandbytes#1559"),
    ),
    Signature(
        "deepspeed.no_cuda_home",
        "DeepSpeed cannot find the CUDA toolkit",
        _p(r"MissingCUDAException|CUDA_HOME does not exist, unable to compile CUDA op"),
        "DeepSpeed builds its CUDA ops with nvcc at import or first use (even when imported by trl or "
        "accelerate), and no toolkit was found.",
        ("packages.extension_builds", "torch.nvcc"),
        "Install a CUDA toolkit of torch's major version and set CUDA_HOME, or install DeepSpeed with its "
        "ops prebuilt (DS_BUILD_OPS=1).",
        "Run `ds_report` and `which nvcc; echo $CUDA_HOME` in the job's environment.",
        ("deepspeedai/DeepSpeed#2772", "hiyouga/LlamaFactory#9270"),
    ),
    Signature(
        "deepspeed.ops_mismatch",
        "DeepSpeed's compiled ops are for another torch or CUDA",
        _p(r"PyTorch and CUDA version mismatch! DeepSpeed ops were compiled"),
        "DeepSpeed's prebuilt ops were compiled against another torch or CUDA than the ones installed now "
        "(torch was upgraded after DeepSpeed was built).",
        ("packages.extension_builds", "packages.torch", "torch.nvcc"),
        "Rebuild DeepSpeed's ops for this torch (`DS_BUILD_OPS=1 pip install --no-build-isolation "
        "--force-reinstall deepspeed`), or let them compile just in time.",
        "Run `ds_report` in the job's environment: it shows the torch and CUDA the ops were built for.",
        ("deepspeedai/DeepSpeed#2772",),
    ),
    Signature(
        "triton.unknown_gpu",
        "Triton's compiler does not know this GPU",
        _p(r"is not a recognized processor for this target"),
        "The installed Triton's LLVM predates this GPU (sm_120 on an older Triton): torch.compile and "
        "Triton kernels cannot be built for it.",
        ("packages.dependencies", "torch.arch"),
        "Install the Triton release that the torch build pins (torch and Triton go together), new enough for this GPU.",
        "Compare `pip show triton` with the `triton==` pin in `pip show torch` (Requires) in the job's environment.",
        ("lllyasviel/Fooocus#3862",),
    ),
    Signature(
        "apex.cuda_mismatch",
        "The CUDA toolkit differs from torch's CUDA",
        _p(r"The detected CUDA version \([\d.]+\) mismatches the version that was used to compile PyTorch"),
        "Building an extension (apex, a custom op) with an nvcc of another CUDA major than torch's.",
        ("torch.nvcc",),
        "Point CUDA_HOME at a toolkit of torch's CUDA major before building.",
        "Compare `nvcc --version` with torch.version.cuda in the build environment.",
        ("NVIDIA/apex#550", "NVIDIA/apex#323"),
    ),
    Signature(
        "compile.no_libcuda",
        "The linker cannot find libcuda.so (torch.compile)",
        _p(r"cannot find -lcuda\b"),
        "Triton links its kernels against an unversioned `libcuda.so`, which a driver installed without "
        "its development link (or a container) lacks.",
        ("compile.libcuda",),
        "Point TRITON_LIBCUDA_PATH at the directory holding libcuda.so.1, or create the libcuda.so link there.",
        "On that node: `ldconfig -p | grep libcuda` (is there a libcuda.so without a number?).",
        ("pytorch/pytorch#103417", "pytorch/pytorch#92745", "state-spaces/mamba#123"),
        "ldconfig -p | grep libcuda",
    ),
    Signature(
        "compile.no_c_compiler",
        "No C compiler for Triton / Inductor",
        _p(r"Failed to find C compiler"),
        "torch.compile (Inductor and Triton) compiles C code at run time; there is no compiler on PATH and "
        "CC is not set.",
        ("compile.compiler",),
        "Install a C compiler (`apt install build-essential`) or set CC to one.",
        "In the job's environment: `which cc gcc; echo $CC`.",
        ("apple/ml-cross-entropy#5", "thu-ml/SageAttention#7"),
        "sudo apt install build-essential",
    ),
    Signature(
        "compile.no_cxx_compiler",
        "No working C++ compiler for Inductor",
        _p(r"No working C\+\+ compiler found|InvalidCxxCompiler"),
        "Inductor compiles every graph it runs on a CPU to C++ (and its wrappers on a GPU too); the C++ compiler "
        "it tries (CXX, else g++, else clang++) is missing or does not run.",
        ("compile.compiler",),
        "Install a C++ compiler (`apt install build-essential`, `dnf install gcc-c++`) or set CXX to one.",
        "In the job's environment: `which g++ c++; echo $CXX`.",
        ("pytorch/pytorch#92745", "2noise/ChatTTS#133"),
        "sudo apt install build-essential",
    ),
    Signature(
        "compile.cache_unusable",
        "torch.compile's cache directory cannot hold or run code",
        _p(
            r"failed to map segment from shared object"
            r"|\[Errno 13\] Permission denied: '[^'\n]*(?:torchinductor|triton)"
            r"|\[Errno 30\] Read-only file system: '[^'\n]*(?:torchinductor|triton)"
        ),
        "Inductor and Triton write compiled code to their cache directories (TORCHINDUCTOR_CACHE_DIR, "
        "TRITON_CACHE_DIR, else under /tmp and ~/.triton) and load it from there: a read-only, foreign-owned or "
        "noexec directory fails the first compile.",
        ("compile.cache_dirs",),
        "Point TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR at a directory you own on a filesystem mounted "
        "without noexec.",
        "In the job's environment: `findmnt -T /tmp -o OPTIONS` (noexec?) and the owner of the cache directories.",
        ("pytorch/pytorch#91005", "pytorch/pytorch#123054", "pytorch/torchdynamo#2004"),
    ),
    Signature(
        "compile.no_python_headers",
        "No Python headers for Triton / Inductor",
        _p(r"Python\.h: No such file or directory"),
        "torch.compile builds small C extensions at run time (Triton's kernel launchers, Inductor's C++ "
        "wrappers) that include Python.h: the Python development headers of the job's interpreter are not "
        "installed.",
        ("compile.python_headers",),
        "Install the headers of the Python the job runs (`sudo apt-get install python3.X-dev` for the system's "
        "Python 3.X, `dnf install python3-devel`; a conda or uv Python ships them).",
        "In the job's environment: `python -c 'import sysconfig; print(sysconfig.get_paths()[\"include\"])'` "
        "and look for Python.h there.",
        ("pytorch/pytorch#97146", "pytorch/pytorch#129351"),
    ),
    Signature(
        "jax.cuda_backend",
        "JAX's CUDA backend did not start",
        _p(r"CUDA backend failed to initialize|but a CUDA-enabled jaxlib is not installed"),
        "torch and jax load different nvidia-* library versions into one process (the first import wins), "
        "or JAX's CUDA plugin is not installed. JAX does not raise: it runs on the CPU.",
        ("jax.backend", "jax.cuda_plugin", "jax.with_torch", "torch.libs", "env.ld_library_path"),
        "Align the nvidia-* wheels both need (install jax[cuda12] after torch and check the cuDNN version it "
        "names), or import jax before torch, or keep torch and JAX in separate processes.",
        "In the job's environment: `pip list | grep -iE 'nvidia|jax'`, and whether torch is imported before jax.",
        ("jax-ml/jax#18032", "jax-ml/jax#18027", "conda-forge/jax-feedstock#149"),
    ),
    Signature(
        "rocm.no_binary",
        "The ROCm build has no code for this GPU",
        _p(r"hipErrorNoBinaryForGpu|Unable to find code object for all current devices"),
        "The ROCm torch build lacks this GPU's gfx target.",
        ("torch.arch",),
        "Install a ROCm torch build for this gfx target (HSA_OVERRIDE_GFX_VERSION works for some cards, unsupported).",
        "Compare `rocminfo | grep gfx` with torch's arch list in the job's environment.",
        ("pytorch/pytorch#73534", "ROCm/vllm#390"),
    ),
    Signature(
        "mps.unavailable",
        "MPS is built but not available",
        _p(r"The MPS backend is supported on macOS|MPS backend is not available"),
        "torch's macOS check misreads newer macOS versions, or Python runs under Rosetta (x86) or in a sandbox.",
        ("host.os", "host.python"),
        "Use an arm64 Python outside a sandbox, and a torch release that knows this macOS.",
        "In the job's environment: `python -c 'import platform; print(platform.machine())'` (arm64?) and `sw_vers`.",
        ("pytorch/pytorch#167679", "pytorch/pytorch#177819", "openai/codex#10199"),
    ),
    # -- NCCL and the network ----------------------------------------------------------------------------
    Signature(
        "nccl.shared_memory",
        "NCCL cannot create its shared memory",
        _p(
            r"shm_open failed|Error while creating shared memory segment|/dev/shm/nccl-[^\n]*(?:No space left"
            r"|Permission denied)|unable to allocate shared memory"
        ),
        "NCCL's intra-node transport lives in /dev/shm, which is too small (a container's 64 MB default) or "
        "not writable.",
        ("host.shm",),
        "Give the container a larger /dev/shm (`--shm-size=16g`, or `--ipc=host`; in Kubernetes an emptyDir "
        "with medium: Memory).",
        "In the job's container: `df -h /dev/shm` and a test write there.",
        ("NVIDIA/nccl#328", "NVIDIA/nccl#1683", "NVIDIA/nccl-tests#166"),
    ),
    Signature(
        "dataloader.bus_error",
        "A DataLoader worker died of a bus error",
        _p(r"DataLoader worker \(pid[^\n]*Bus error|ERROR: Unexpected bus error encountered in worker"),
        "DataLoader workers pass batches through /dev/shm; when it is full (a container's 64 MB default) a "
        "worker dies of SIGBUS.",
        ("host.shm",),
        "Give the container a larger /dev/shm (`--shm-size=16g` or `--ipc=host`), or fewer workers.",
        "In the job's container: `df -h /dev/shm`.",
        ("pytorch/pytorch#5040", "pytorch/pytorch#108861"),
    ),
    Signature(
        "rdma.memlock",
        "RDMA memory registration failed",
        _p(r"Call to ibv_(?:reg_mr\w*|create_cq|create_qp) failed"),
        "Registering memory with the NIC needs locked memory, and the memlock limit is too low (a "
        "container's or a systemd unit's 64 KiB default).",
        ("host.ulimits", "net.gpudirect"),
        "Raise the locked-memory limit to unlimited (`--ulimit memlock=-1`, LimitMEMLOCK=infinity, "
        "/etc/security/limits.conf).",
        "In the job: `ulimit -l`.",
        ("NVIDIA/nccl-tests#206", "horovod/horovod#98"),
        "ulimit -l unlimited",
    ),
    Signature(
        "nccl.system_error",
        "NCCL: unhandled system error",
        _p(r"unhandled system error"),
        "A system call inside NCCL failed: usually /dev/shm, locked-memory limits for RDMA, or a network "
        "device; NCCL_DEBUG=INFO names which.",
        ("host.shm", "host.ulimits", "host.container"),
        "Rerun with NCCL_DEBUG=INFO to see the failing call; raise /dev/shm and the memlock limit "
        "(`ulimit -l unlimited`) where those are short.",
        "In the job: `df -h /dev/shm`, `ulimit -l`, and the NCCL_DEBUG=INFO lines just before the error.",
        ("NVIDIA/nccl#328", "NVIDIA/nccl#1683"),
        "NCCL_DEBUG=INFO",
    ),
    Signature(
        "nccl.p2p",
        "GPU peer-to-peer does not work",
        _p(
            r"peer access is not supported between these two devices|cudaErrorPeerAccessUnsupported"
            r"|peer mapping resources exhausted|NCCL_P2P_DISABLE=1|Missing \"iommu=pt\" from kernel command line"
        ),
        "Direct GPU-to-GPU copies fail or hang: PCIe ACS or the IOMMU routes them through the root complex, "
        "or the cards (GeForce) have P2P disabled; collectives then hang until NCCL_P2P_DISABLE=1.",
        ("fabric.p2p", "fabric.topology", "pcie.acs"),
        "Disable ACS in the BIOS (NVIDIA's NCCL troubleshooting guide; `pcie.acs` shows the bridges) and set "
        "`iommu=pt` on the kernel command line; for GeForce cards keep NCCL_P2P_DISABLE=1.",
        "On that node: `sudo lspci -vvv | grep ACSCtl` (SrcValid+ ReqRedir+ means redirected), "
        "`cat /proc/cmdline`, and `envcheck comm` there.",
        ("NVIDIA/nccl#257", "NVIDIA/nccl#2079", "NVIDIA/nccl#667", "NVIDIA/nccl-tests#117", "ROCm/vllm#390"),
        "envcheck comm",
    ),
    Signature(
        "nccl.gdr_disabled",
        "GPUDirect RDMA disabled",
        _p(r"GPU Direct RDMA Disabled for HCA"),
        "NCCL falls back to copies through host memory (180 -> 10 GB/s): the nvidia-peermem module is not "
        "loaded, or NCCL <= 2.22.3 looks only for the old nv_peer_mem.",
        ("net.gpudirect", "net.affinity", "net.ports"),
        "Load nvidia-peermem (`modprobe nvidia-peermem`, and at boot), or use NCCL 2.23 or newer; "
        "`envcheck doctor net.gpudirect` names what is missing.",
        "On that node: `envcheck doctor net.gpudirect` (or `lsmod | grep peermem` and "
        "`ls /sys/kernel/mm/memory_peers`), and `envcheck comm`, whose transport section shows GPUDirect RDMA "
        "per rank.",
        ("NVIDIA/nccl#1676", "NVIDIA/nccl#1537", "NVIDIA/nccl#897"),
        "sudo modprobe nvidia-peermem",
    ),
    Signature(
        "nccl.socket_fallback",
        "NCCL fell back to TCP sockets",
        _p(
            r"NET/OFI Could not find any optimal provider|Failed to open libibverbs|fi_getinfo[^\n]*output empty"
            r" list|NET/IB : No device found|via NET/Socket/"
        ),
        "NCCL's network plugin could not use the fast NICs (no EFA or InfiniBand devices in the container, a "
        "port down, or the plugin failed to load) and fell back to TCP (`via NET/Socket`): collectives across "
        "nodes run many times slower.",
        ("net.gpudirect", "net.ports", "host.container"),
        "Pass the RDMA devices into the container (`--device /dev/infiniband/uverbs0 ...`, or the device "
        "plugin in Kubernetes) and put the NCCL net plugin on LD_LIBRARY_PATH; `envcheck doctor net.ports "
        "net.gpudirect` names a port that is down or a device that is missing.",
        "In the job's container: `envcheck doctor net.ports net.gpudirect`, `ls /dev/infiniband`, and "
        "`envcheck comm`, whose transport section flags NET/Socket on a node with HCAs.",
        ("NVIDIA/nccl#229", "aws/aws-ofi-nccl#889"),
    ),
    Signature(
        "nccl.watchdog_timeout",
        "A collective timed out (NCCL watchdog)",
        _p(r"Watchdog caught collective operation timeout"),
        "One rank did not reach a collective in time: a rank died or is slow, the ranks desynchronised "
        "(different collectives), or the network between them failed.",
        ("fabric.p2p", "fabric.nvlink", "gpu.inventory"),
        "Find the rank that did not arrive (the flight recorder, TORCH_NCCL_TRACE_BUFFER_SIZE); measure the "
        "GPUs together with `envcheck comm`.",
        "Read every rank's log for the first error (often on another node), and run `envcheck comm` across "
        "the nodes of the job.",
        ("NVIDIA/Megatron-LM#1207", "pytorch/pytorch#118369"),
        "envcheck comm",
    ),
    Signature(
        "nccl.error",
        "NCCL error",
        _p(
            r"NCCL error[^\n]*(?:invalid usage|remote process exited|internal error|unhandled cuda error)"
            r"|ncclRemoteError|ncclInternalError|ncclUnhandledCudaError"
        ),
        "NCCL reported an error of its own: a peer died (remote process exited), a CUDA error under NCCL, "
        "or mismatched collectives between ranks (invalid usage).",
        ("fabric.p2p", "fabric.nvlink", "torch.libs"),
        "Rerun with NCCL_DEBUG=INFO (and NCCL_DEBUG_SUBSYS=ALL) to see the cause; measure the GPUs together "
        "with `envcheck comm`.",
        "Read every rank's log for the first error, and the NCCL_DEBUG=INFO output on that node.",
        ("NVIDIA/nccl#1683", "pytorch/pytorch#118369"),
        "NCCL_DEBUG=INFO",
    ),
)
