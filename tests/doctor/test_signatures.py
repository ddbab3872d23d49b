"""The table of known errors: every entry is complete (existing checks, a fix, a public source), every
message of the failures catalogue and of the doctor's own failure classes finds its entry, and the
patterns keep the properties the scanner's speed rests on."""

from __future__ import annotations

import re

import pytest

from envcheck.doctor.areas import CHECKS
from envcheck.doctor.signatures import SIGNATURES, _p, needle
from envcheck.explain.scan import Scanner

#: Each message as users paste it (the failures catalogue's rows 1-28 and its third-party table, then the
#: doctor's own failure classes and the other known classes), and the signature that must find it.
MESSAGES = [
    (
        "NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current PyTorch installation.",
        "torch.unsupported_gpu",
    ),
    ("RuntimeError: CUDA error: no kernel image is available for execution on the device", "cuda.no_kernel_image"),
    ("RuntimeError: FlashAttention only supports Ampere GPUs or newer.", "flash_attn.needs_ampere"),
    ("RuntimeError: The NVIDIA driver on your system is too old (found version 12020).", "torch.driver_too_old"),
    ("CUDA driver version is insufficient for CUDA runtime version", "cuda.driver_insufficient"),
    ("Failed to initialize NVML: Driver/library version mismatch", "nvml.version_mismatch"),
    (
        "RuntimeError: Unexpected error from cudaGetDeviceCount(). Error 802: system not yet initialized",
        "fabric.not_initialized",
    ),
    (
        "fabric manager NVIDIA GPU driver interface version 535.183.01 don't match with driver version 535.161.08",
        "fabric.not_initialized",
    ),
    (
        "nvidia-container-cli: initialization error: load library failed: libnvidia-ml.so.1: cannot open shared "
        "object file: no such file or directory: unknown",
        "container.no_driver",
    ),
    ("nvidia-container-cli: initialization error: driver error: timed out: unknown", "container.driver_timeout"),
    (
        "Could not load library libcudnn_cnn_infer.so.8. Error: libnvrtc.so: cannot open shared object file: No "
        "such file or directory",
        "cudnn.no_nvrtc",
    ),
    (
        "Could not load library libcudnn_ops_infer.so.8. Error: libcudnn_ops_infer.so.8: cannot open shared object "
        "file",
        "cudnn.missing",
    ),
    (
        "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error",
        "nccl.system_error",
    ),
    (
        "include/shm.h:28 NCCL WARN Call to posix_fallocate failed : No space left; shm_open failed : Permission "
        "denied",
        "nccl.shared_memory",
    ),
    ("NCCL WARN Error while creating shared memory segment /dev/shm/nccl-8sQm0G (size 9637888)", "nccl.shared_memory"),
    ("all_reduce hangs; it only works with NCCL_P2P_DISABLE=1", "nccl.p2p"),
    ("NCCL INFO NET/IB : GPU Direct RDMA Disabled for HCA 0 'mlx5_0' (no module)", "nccl.gdr_disabled"),
    ("NCCL WARN NET/OFI Could not find any optimal provider", "nccl.socket_fallback"),
    ("NCCL INFO Failed to open libibverbs.so[.1]", "nccl.socket_fallback"),
    ("NET/OFI fi_getinfo: provider efa output empty list", "nccl.socket_fallback"),
    ("n03:18210:18289 [0] NCCL INFO Channel 00/0 : 1[0] -> 0[0] [receive] via NET/Socket/0", "nccl.socket_fallback"),
    (
        "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=5, OpType=ALLREDUCE, NumelIn=1, "
        "NumelOut=1, Timeout(ms)=600000) ran for 600013 milliseconds before timing out.",
        "nccl.watchdog_timeout",
    ),
    (
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
        "79.10 GiB of which 1.2 GiB is free. Process 562167 has 15.25 GiB memory in use. If reserved but "
        "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
        "cuda.out_of_memory",
    ),
    ("RuntimeError: CUDA error: invalid device ordinal", "cuda.invalid_device"),
    ("Unable to determine the device handle for GPU0000:3B:00.0: Unknown Error", "gpu.lost"),
    ("NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.", "gpu.lost"),
    ("/usr/bin/ld: cannot find -lcuda: No such file or directory", "compile.no_libcuda"),
    ("RuntimeError: Failed to find C compiler. Please specify via CC environment variable.", "compile.no_c_compiler"),
    ("/tmp/tmpn8c04nql/main.c:4:10: fatal error: Python.h: No such file or directory", "compile.no_python_headers"),
    (
        "torch._inductor.exc.InductorError: InvalidCxxCompiler: No working C++ compiler found in "
        "torch._inductor.config.cpp.cxx: (None, 'g++')",
        "compile.no_cxx_compiler",
    ),
    (
        "ImportError: /tmp/torchinductor_root/triton/0/cuda_utils.so: failed to map segment from shared object",
        "compile.cache_unusable",
    ),
    ("OSError: [Errno 30] Read-only file system: '/home/u/.triton/cache/ab12'", "compile.cache_unusable"),
    (
        "ImportError: /venv/lib/python3.10/site-packages/flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so: "
        "undefined symbol: _ZN3c104cuda9SetDeviceEi",
        "extension.undefined_symbol",
    ),
    (
        "WARNING[XFORMERS]: xFormers can't load C++/CUDA extensions. xFormers was built for: PyTorch 2.2.0+cu121 "
        "with CUDA 1201 (you have 2.2.0+cpu)",
        "xformers.no_extensions",
    ),
    (
        "ImportError: vllm/_C.abi3.so: undefined symbol: _ZN5torch3jit17parseSchemaOrNameERKSsb",
        "extension.undefined_symbol",
    ),
    (
        "CUDA Setup failed despite GPU being available. Please run the following command to get more "
        "information: python -m bitsandbytes",
        "bitsandbytes.no_cuda_library",
    ),
    (
        "deepspeed.ops.op_builder.builder.MissingCUDAException: CUDA_HOME does not exist, unable to compile CUDA op(s)",
        "deepspeed.no_cuda_home",
    ),
    (
        "CUDA backend failed to initialize: Found cuDNN version 8700, but JAX was built against version 8800",
        "jax.cuda_backend",
    ),
    ("An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not installed.", "jax.cuda_backend"),
    ("hipErrorNoBinaryForGpu: Unable to find code object for all current devices!", "rocm.no_binary"),
    ('RCCL WARN Missing "iommu=pt" from kernel command line which can lead to system instablity or hang!', "nccl.p2p"),
    (
        "UserWarning: The MPS backend is supported on macOS 14.0+. Current OS version can be queried using `sw_vers`",
        "mps.unavailable",
    ),
    (
        "The detected CUDA version (11.8) mismatches the version that was used to compile PyTorch (12.4). Please "
        "make sure to use the same CUDA versions.",
        "apex.cuda_mismatch",
    ),
    (
        "PyTorch and CUDA version mismatch! DeepSpeed ops were compiled and installed with a different version "
        "than what is being used at runtime.",
        "deepspeed.ops_mismatch",
    ),
    ("LLVM ERROR: 'sm_120' is not a recognized processor for this target (ignoring processor)", "triton.unknown_gpu"),
    # the doctor's own failure classes
    ("RuntimeError: CUDA error: an illegal memory access was encountered", "cuda.kernel_fault"),
    ("RuntimeError: CUDA error: unspecified launch failure", "cuda.kernel_fault"),
    ("RuntimeError: CUDA error: an illegal instruction was encountered", "cuda.kernel_fault"),
    ("RuntimeError: CUDA error: misaligned address", "cuda.kernel_fault"),
    ("RuntimeError: CUDA error: uncorrectable ECC error encountered", "gpu.memory_errors"),
    ("NVRM: Xid (PCI:0000:b3:00): 48, pid=991, name=python, An uncorrectable double bit error", "gpu.memory_errors"),
    ("NVRM: Xid (PCI:0000:b3:00): 94, pid=991, name=python, Contained: SM (0x1).", "gpu.memory_errors"),
    (
        "NVRM: Xid (PCI:0000:b3:00): 74, pid=991, name=python, NVLink: fatal error detected on link 3",
        "fabric.nvlink_error",
    ),
    ("NVRM: Xid (PCI:0000:b3:00): 13, pid=991, name=python, Graphics SM Warp Exception", "gpu.xid"),
    # the kernel log
    ("nvidia-nvswitch1: SXid (PCI:0000:06:00.0): 20034, Fatal, Link 48 LTSSM Fault Up", "nvswitch.sxid"),
    (
        "nvidia 0000:19:00.0: AER: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)",
        "pcie.aer",
    ),
    ("pcieport 0000:00:02.0: AER: Uncorrected (Fatal) error received: id=0010", "pcie.aer"),
    (
        "nvidia-peermem nv_get_p2p_free_callback:127 ERROR detected invalid context, skipping further processing",
        "rdma.peermem_invalid_context",
    ),
    (
        "pt_main_thread[80533]: segfault at 7f3a5c000010 ip 00007f3b1e6a2c41 sp 00007f3a6affc9e0 error 4 in "
        "libnccl.so.2.21.5[7f3b1e400000+c600000]",
        "nccl.segfault",
    ),
    (
        "Memory cgroup out of memory: Killed process 629 (onmt_train) total-vm:14119556kB, anon-rss:6538204kB",
        "host.oom_kill",
    ),
    ("Out of memory: Killed process 81002 (python) total-vm:412318244kB, anon-rss:1971120112kB", "host.oom_kill"),
    ("NVRM: API mismatch: the client has the version 550.127.05, but", "driver.api_mismatch"),
    (
        "RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1275, remote process exited or there was a network "
        "error, NCCL version 2.21.5",
        "nccl.error",
    ),
    # other known classes
    ("AssertionError: Torch not compiled with CUDA enabled", "torch.cpu_only"),
    ("RuntimeError: No CUDA GPUs are available", "torch.cpu_only"),
    (
        "ImportError: libcudart.so.11.0: cannot open shared object file: No such file or directory",
        "cuda.library_missing",
    ),
    (
        "libcusparse.so.12: undefined symbol: __nvJitLinkComplete_12_4, version libnvJitLink.so.12",
        "extension.undefined_symbol",
    ),
    (
        "RuntimeError: DataLoader worker (pid 46794) is killed by signal: Bus error. It is possible that "
        "dataloader's workers are out of shared memory.",
        "dataloader.bus_error",
    ),
    ("misc/ibvwrap.cc:278 NCCL WARN Call to ibv_reg_mr_iova2 failed with error Cannot allocate memory", "rdma.memlock"),
    ("Failed to initialize NVML: Unknown Error", "nvml.unknown_error"),
    ("Error 803: system has unsupported display driver / cuda driver combination", "cuda.compat_mismatch"),
    ("Error 804: forward compatibility was attempted on non supported HW", "cuda.compat_mismatch"),
]


def found(text: str) -> set[str]:
    scanner = Scanner()
    feed = scanner.source("test")
    feed.write(text.encode())
    feed.close()
    return set(scanner.hits)


@pytest.mark.parametrize(("message", "expected"), MESSAGES, ids=[m[1] + ":" + m[0][:30] for m in MESSAGES])
def test_each_catalogued_message_finds_its_signature(message: str, expected: str) -> None:
    assert expected in found(message)


def test_every_signature_is_needed_by_a_message() -> None:
    """No entry without a real message behind it (the table is kept from public threads, not guessed)."""
    assert {s.id for s in SIGNATURES} == {expected for _, expected in MESSAGES}


@pytest.mark.parametrize("signature", SIGNATURES, ids=lambda s: s.id)
def test_every_entry_names_existing_checks_a_fix_and_its_public_threads(signature) -> None:
    known = {c.id for c in CHECKS.ordered()}
    assert signature.checks and set(signature.checks) <= known, set(signature.checks) - known
    assert signature.fix.strip() and signature.there.strip() and signature.meaning.strip()
    assert signature.sources and all(re.fullmatch(r"[\w.-]+/[\w.-]+#\d+", s) for s in signature.sources)
    assert re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", signature.id)


def test_ids_are_unique() -> None:
    ids = [s.id for s in SIGNATURES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("signature", SIGNATURES, ids=lambda s: s.id)
def test_every_pattern_starts_with_a_literal_and_stays_on_one_line(signature) -> None:
    """The scanner tests each block for the literal first (its speed rests on it), and searches whole
    blocks: a pattern that crossed a newline would join two lines of a log into one match."""
    for pattern in signature.patterns:
        assert len(needle(pattern)) >= 3, pattern.pattern
        assert "\\s" not in pattern.pattern and not pattern.flags & re.DOTALL, pattern.pattern


def test_a_message_broken_over_two_lines_is_not_one_match() -> None:
    assert found("RuntimeError: CUDA error: no kernel image is\navailable for execution on the device") == set()
    assert found("[Rank 0] Watchdog caught collective\noperation timeout") == set()


def test_alternatives_are_split_only_at_the_top_level() -> None:
    parts = [p.pattern for p in _p(r"a(b|c)|[|x]d|e\|f")]
    assert parts == ["a(b|c)", "[|x]d", "e\\|f"]
    assert needle(_p(r"NVRM: Xid \(\d")[0]) == "NVRM: Xid (" and needle(_p(r"abc?d")[0]) == "ab"


def test_every_signature_that_names_kernel_xid_is_shown_only_by_the_xids_that_decide_it() -> None:
    """kernel.xid fails or warns for any Xid: each signature naming it says which of its rows count."""
    by_id = {s.id: s for s in SIGNATURES}
    assert all("kernel.xid" in s.requires for s in SIGNATURES if "kernel.xid" in s.checks)
    details = {"xids": [{"xid": 94, "status": "warn"}, {"xid": 79, "status": "info"}], "sxids": []}
    assert by_id["gpu.memory_errors"].shows("kernel.xid", details)
    for other in ("gpu.lost", "fabric.nvlink_error", "gpu.xid", "nvswitch.sxid"):
        assert not by_id[other].shows("kernel.xid", details), other
    details["sxids"] = [{"sxid": 20034, "status": "fail"}]
    details["xids"] += [{"xid": 145, "status": "fail"}, {"xid": 119, "status": "fail"}]
    assert all(by_id[s].shows("kernel.xid", details) for s in ("nvswitch.sxid", "fabric.nvlink_error", "gpu.xid"))
    assert not by_id["gpu.lost"].shows("kernel.xid", details)
