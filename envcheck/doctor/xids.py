"""NVIDIA's Xid and NVSwitch SXid catalogues as data: what each error means and what to do about it.

Sources, named per row in ``source``:

- ``XID_CATALOG``: NVIDIA, "Xid Errors", GPU Deployment and Management Documentation, "Analyzing Xid Errors with the
  Xid Catalog" (https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html): the mnemonic, the
  description and the "Resolution Bucket (Immediate Action)" of each Xid for Ampere and newer GPUs, as mirrored in
  leptonai/gpud ``components/accelerator/nvidia/xid/catalog_generated.go``. The buckets become the four actions
  here: RESTART_APP -> restart the application, RESET_GPU -> reset the GPU, RESTART_BM -> reboot, CONTACT_SUPPORT
  -> hardware inspection; IGNORE -> none (information). The catalogue's workflows (WORKFLOW_XID_48, the NVLink
  workflows) are read as the action their first step takes.
- ``XID_OLD``: the same documentation's catalogue for Volta and older GPUs ("Xid and SXid Errors with the Xid
  Catalog for older GPUs", https://docs.nvidia.com/deploy/xid-errors/index.html), for Xid 61, which the newer
  catalogue lists as unused, and the causes in ``meaning``.
- ``SXID_CATALOG``: NVIDIA Fabric Manager User Guide (DU-09883-001), appendix D, "NVSwitch SXid errors" (D.4
  non-fatal, D.5 potentially fatal, D.6 always fatal), as mirrored in leptonai/gpud
  ``components/accelerator/nvidia/sxid/sxid.go``.

``blames_app``: the Xid is most often the application's own doing (an illegal address, a page fault, a context
killed by the driver because of the application or of an earlier Xid), so it is information about a job, not a
verdict on the GPU: 13, 31, 43 and 45 (NVIDIA's catalogue sends 13 and 31 to its application-debugging workflows,
rates 43 IGNORE and 45 "follow other Xid"; the NVIDIA k8s-device-plugin skips exactly these as application errors,
``internal/rm/health.go``).
"""

from __future__ import annotations

from dataclasses import dataclass

RESTART_APP = "restart the application"
RESET_GPU = "reset the GPU"
REBOOT = "reboot"
INSPECT = "hardware inspection"

XID_CATALOG = "NVIDIA Xid Errors catalogue (docs.nvidia.com/deploy/xid-errors, Ampere and newer)"
XID_OLD = "NVIDIA Xid Errors catalogue (docs.nvidia.com/deploy/xid-errors, Volta and older)"
SXID_CATALOG = "NVIDIA Fabric Manager User Guide, appendix D (NVSwitch SXid errors)"

#: How many reboots a hardware Xid may survive before "reboot" becomes "hardware inspection": the same Xid again
#: after two reboots did not go away by rebooting (leptonai/gpud ``components/accelerator/nvidia/xid/threshold.go``,
#: ``DefaultRebootThreshold = 2``, applied in ``health_state.go``'s ``evolveHealthyState``).
REBOOTS_BEFORE_INSPECTION = 2


@dataclass(frozen=True)
class Xid:
    """One row of the catalogue. ``action``: one of the four actions, or None where NVIDIA says no action is
    needed (an informational event)."""

    xid: int
    name: str
    meaning: str
    action: str | None
    blames_app: bool
    source: str = XID_CATALOG


XIDS: dict[int, Xid] = {
    row.xid: row
    for row in (
        Xid(8, "GPU stopped processing", "The GPU stopped processing a channel (a timeout).", RESTART_APP, False),
        Xid(13, "Graphics Engine Exception", "An illegal instruction, address or out-of-range access in a kernel: "
            "almost always the application's bug, rarely the GPU's.", RESTART_APP, True),
        Xid(31, "GPU memory page fault", "A kernel touched GPU memory it had not mapped (an illegal address): "
            "usually the application's bug, or a driver's.", RESTART_APP, True),
        Xid(32, "Invalid or corrupted push buffer stream", "The command stream to the GPU arrived corrupted: a "
            "driver error, system memory corruption, a PCIe bus error or thermal trouble.", RESTART_APP, False),
        Xid(43, "GPU stopped processing", "The driver stopped a channel because of the application's fault "
            "(often after Xid 13 or 31): the GPU itself is usable.", None, True),
        Xid(45, "Preemptive cleanup, due to previous errors", "The driver killed the context of a process that was "
            "stopped or that an earlier Xid hit (look for that Xid).", None, True),
        Xid(46, "GPU stopped processing", "The GPU stopped processing and did not recover.", RESET_GPU, False),
        Xid(48, "Double Bit ECC Error", "An uncorrectable (double-bit) error in GPU memory: the data of the "
            "process using it is lost, and the page or row must be retired or remapped.", RESET_GPU, False),
        Xid(61, "Internal micro-controller breakpoint/warning", "The GPU's internal micro-controller hit a breakpoint "
            "or warning; NVIDIA's debug guidelines reset the GPU that reports it.", RESET_GPU, False, XID_OLD),
        Xid(62, "Internal micro-controller halt", "The GPU's internal micro-controller halted.", RESET_GPU, False),
        Xid(63, "GPU memory remapping event", "A memory row was remapped (or a page retired) after ECC errors; it "
            "takes effect at the next GPU reset (gpu.retired_memory says whether one is pending).", None, False),
        Xid(64, "GPU memory remapping failure", "A memory row could not be remapped after ECC errors: the GPU has no "
            "spare rows left there.", RESET_GPU, False),
        Xid(68, "NVDEC0 Exception", "The video decoder engine faulted.", RESTART_APP, False),
        Xid(69, "Graphics Engine class error", "The graphics engine was given an invalid class or method.",
            RESTART_APP, False),
        Xid(74, "NVLINK Error", "An NVLink reported an error: collectives over it fail or hang, and the link may "
            "be down.", RESET_GPU, False),
        Xid(79, "GPU has fallen off the bus", "The GPU stopped answering on PCIe: power, heat, seating, a riser or "
            "the card itself. Nothing can use it until the node is rebooted.", REBOOT, False),
        Xid(92, "High single-bit ECC error rate", "GPU memory corrects single-bit errors at a high rate.", None, False),
        Xid(94, "Contained memory error", "An uncorrectable memory error that the GPU contained to the process "
            "using that memory: that process is stopped, others go on.", RESTART_APP, False),
        Xid(95, "Uncontained memory error", "An uncorrectable memory error the GPU could not contain: every process "
            "on the GPU is stopped.", RESET_GPU, False),
        Xid(109, "Context Switch Timeout Error", "The GPU timed out switching contexts.", RESET_GPU, False),
        Xid(119, "GSP RPC Timeout", "The GPU System Processor (GSP) firmware did not answer the driver in time.",
            RESET_GPU, False),
        Xid(120, "GSP Error", "The GPU System Processor (GSP) firmware reported an error.", RESET_GPU, False),
        Xid(136, "Link Training Failed", "An NVLink failed to train.", RESET_GPU, False),
        Xid(140, "ECC Unrecovered Error", "An uncorrectable ECC error escaped containment.", RESET_GPU, False),
        Xid(143, "GPU Initialization Error", "The GPU failed to initialise.", RESET_GPU, False),
        Xid(144, "NVLINK: SAW Error", "An NVLink (NVLink 5, Blackwell) SAW unit error.", RESET_GPU, False),
        Xid(145, "NVLINK: RLW Error", "An NVLink (NVLink 5, Blackwell) RLW unit error.", RESET_GPU, False),
        Xid(146, "NVLINK: TLW Error", "An NVLink (NVLink 5, Blackwell) TLW unit error.", RESET_GPU, False),
        Xid(147, "NVLINK: TREX Error", "An NVLink (NVLink 5, Blackwell) TREX unit error.", RESET_GPU, False),
        Xid(148, "NVLINK: NVLPW_CTRL Error", "An NVLink (NVLink 5, Blackwell) NVLPW_CTRL unit error.", RESET_GPU,
            False),
        Xid(149, "NVLINK: NETIR Error", "An NVLink (NVLink 5, Blackwell) NETIR unit error.", RESET_GPU, False),
        Xid(150, "NVLINK: MSE Error", "An NVLink (NVLink 5, Blackwell) MSE unit error.", RESET_GPU, False),
        Xid(154, "GPU Recovery Action Changed", "The driver says which recovery an earlier Xid now needs (its "
            "message names it: a GPU reset, a node reboot, or a drain and reset).", None, False),
    )
}  # fmt: skip


@dataclass(frozen=True)
class SXid:
    """One NVSwitch SXid. ``fatal``: NVIDIA's class (D.5/D.6 potentially or always fatal, D.4 non-fatal)."""

    sxid: int
    name: str
    meaning: str
    action: str | None
    fatal: bool
    source: str = SXID_CATALOG


SXIDS: dict[int, SXid] = {
    row.sxid: row
    for row in (
        SXid(11004, "Ingress invalid ACL", "Only an incorrect fabric-manager partition configuration causes it; "
             "validate the partitions' routing (NVSwitch-audit).", REBOOT, True),
        SXid(12020, "egress sequence ID error", "Always fatal to the whole NVSwitch fabric: restart the host to "
             "reset the fabric.", REBOOT, True),
        SXid(12028, "egress nonposted PRIV error", "GPU NVLink traffic through the switch stalls; CUDA jobs end with "
             "Xid 45.", REBOOT, True),
        SXid(19084, "AN1 Heartbeat Timeout Error", "The switch stopped answering; reset all GPUs and NVSwitches.",
             REBOOT, True),
        SXid(20001, "TX Replay Error", "A non-fatal link error: NVLink packets were replayed.", None, False),
        SXid(20009, "RX Short Error Rate", "A non-fatal link error rate on an NVSwitch port.", None, False),
        SXid(20012, "Broken/inconsistent connection", "If it did not follow an uncoordinated shutdown, check the "
             "link's mechanical connections.", INSPECT, False),
        SXid(20034, "LTSSM Fault Up", "An NVSwitch link went down from active (the GPU side often logs Xid 79 or 74 "
             "with it).", REBOOT, True),
        SXid(22013, "Minion Link DLREQ interrupt", "A non-fatal link interrupt.", None, False),
    )
}  # fmt: skip
