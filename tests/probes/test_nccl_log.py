"""NCCL's INFO log parsed from saved logs of each transport (NVLink P2P, SHM, IB with and without GPUDirect
RDMA, a fallback to sockets, NVLS), and how a rank asks NCCL for it without overriding the user."""

from __future__ import annotations

from pathlib import Path

import pytest

from envcheck.probes import nccl_log

LOGS = Path(__file__).parent / "nccl_logs"


def parsed(name: str) -> list[dict]:
    return [p.to_json() for p in nccl_log.parse((LOGS / name).read_text())]


def test_nvlink_p2p_on_one_node_names_each_peer_and_no_network_link() -> None:
    ranks = parsed("nvlink_p2p.log")
    assert [(r["host"], r["rank"], r["nranks"], r["cuda_device"]) for r in ranks] == [
        ("dgx01", 0, 2, 0),
        ("dgx01", 1, 2, 1),
    ]
    assert ranks[0]["version"] == "2.21.5" and ranks[0]["network"] == "IB"
    assert ranks[0]["peers"] == [{"peer": 1, "transport": "P2P", "via": ["P2P/CUMEM/read"], "devices": []}]
    assert ranks[1]["peers"][0]["peer"] == 0
    assert ranks[0]["net_links"] == 0 and ranks[0]["gdr_links"] is None and ranks[0]["hcas_used"] == []
    assert ranks[0]["nvls"] == {"available": False, "used": False}


def test_shm_between_two_gpus_without_p2p() -> None:
    ranks = parsed("shm.log")
    assert {r["peers"][0]["transport"] for r in ranks} == {"SHM"}
    assert ranks[0]["network"] == "Socket" and ranks[0]["net_devices"] == ["enp5s0"]


def test_ib_with_gpudirect_rdma_names_the_hca_of_each_link() -> None:
    ranks = parsed("ib_gdr.log")
    assert [r["host"] for r in ranks] == ["gpu19", "gpu20"]
    r0 = ranks[0]
    assert r0["gdr"] == {"mlx5_0": True, "mlx5_1": True}
    assert (r0["net_links"], r0["gdr_links"]) == (4, 4)
    assert r0["hcas_used"] == ["mlx5_0", "mlx5_1"]
    assert r0["peers"] == [
        {"peer": 1, "transport": "IB", "via": ["NET/IB/0/GDRDMA", "NET/IB/1/GDRDMA"], "devices": ["mlx5_0", "mlx5_1"],
         "gdr": True},
    ]  # fmt: skip


def test_ib_with_gpudirect_rdma_disabled() -> None:
    r0 = parsed("ib_no_gdr.log")[0]
    assert r0["gdr"] == {"mlx5_0": False, "mlx5_1": False}
    assert (r0["net_links"], r0["gdr_links"]) == (4, 0)
    assert r0["peers"][0]["gdr"] is False and r0["peers"][0]["transport"] == "IB"


def test_a_fallback_to_sockets_is_the_socket_network_and_socket_links() -> None:
    (r0,) = parsed("socket_fallback.log")
    assert r0["network"] == "Socket" and r0["net_devices"] == ["eth0"]
    assert r0["transports"] == {"Socket": 4}
    assert r0["peers"][0]["devices"] == ["eth0"] and r0["hcas_used"] == []


def test_nvls_available_and_connected() -> None:
    ranks = parsed("nvls.log")
    assert len(ranks) == 4 and all(r["nvls"] == {"available": True, "used": True} for r in ranks)
    assert ranks[0]["version"] == "2.22.3" and ranks[3]["rank"] == 3


def test_roce_links_are_named_roce_and_timestamps_before_a_line_are_read() -> None:
    text = (
        "2024-12-04T05:27:44.078Z n1:10:11 [0] NCCL INFO NET/IB : Using [0]mlx5_9:1/RoCE [RO]; OOB en0:10.0.0.2<0>\n"
        "[2025-07-21 19:05:29] n1:10:11 [0] NCCL INFO comm 0x55aa rank 0 nranks 2 cudaDev 0 busId 1000 - Init START\n"
        "n1:10:11 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[0] [send] via NET/IB/0/GDRDMA\n"
    )
    (p,) = nccl_log.parse(text)
    assert p.links[0].kind == "RoCE" and p.links[0].device == "mlx5_9" and p.links[0].gdr is True


def test_the_rank_comes_from_the_communicator_not_the_bracket() -> None:
    """The bracket holds the CUDA device; rank 9 on device 1 is rank 9."""
    text = (
        "h:5:6 [1] NCCL INFO ncclCommInitRank comm 0x1 rank 9 nranks 16 cudaDev 1 busId f000 - Init START\n"
        "h:5:6 [1] NCCL INFO Channel 00/0 : 9[1] -> 8[0] via P2P/CUMEM\n"
    )
    (p,) = nccl_log.parse(text)
    assert p.to_json()["rank"] == 9 and p.to_json()["peers"][0]["peer"] == 8


def test_no_nccl_lines_is_no_process() -> None:
    assert nccl_log.parse("Traceback (most recent call last):\nRuntimeError: boom\n") == []


def test_envcheck_asks_for_init_net_graph_into_its_own_file() -> None:
    env: dict[str, str] = {}
    assert nccl_log.capture(env, "/tmp/x.log") == "/tmp/x.log"
    assert env == {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET,GRAPH", "NCCL_DEBUG_FILE": "/tmp/x.log"}


def test_a_users_level_is_kept_and_only_the_destination_is_ours() -> None:
    env = {"NCCL_DEBUG": "WARN"}
    assert nccl_log.capture(env, "/tmp/x.log") == "/tmp/x.log"
    assert env == {"NCCL_DEBUG": "WARN", "NCCL_DEBUG_FILE": "/tmp/x.log"}


def test_a_users_file_is_read_where_they_asked_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nccl_log.socket, "gethostname", lambda: "gpu7")
    env = {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": "/logs/nccl.%h.%p"}
    path = nccl_log.capture(env, "/tmp/x.log")
    assert path == f"/logs/nccl.gpu7.{nccl_log.os.getpid()}" and env["NCCL_DEBUG_FILE"] == "/logs/nccl.%h.%p"


def test_read_back_removes_envchecks_file_and_echoes_for_a_user_who_asked(tmp_path, capsys) -> None:
    log = tmp_path / "n.log"
    log.write_text((LOGS / "shm.log").read_text())
    text = nccl_log.read_back(str(log), ours=True, echo=True)
    assert "via SHM/direct/direct" in (text or "") and not log.exists()
    assert "via SHM/direct/direct" in capsys.readouterr().out
    assert nccl_log.read_back(str(log), ours=True, echo=False) is None


def test_hcas_are_read_from_the_sysfs_tree(tmp_path) -> None:
    for name in ("mlx5_1", "mlx5_0"):
        (tmp_path / "class" / "infiniband" / name).mkdir(parents=True)
    assert nccl_log.hcas({"ENVCHECK_SYSFS": str(tmp_path)}) == ["mlx5_0", "mlx5_1"]
    assert nccl_log.hcas({"ENVCHECK_SYSFS": str(tmp_path / "none")}) == []
