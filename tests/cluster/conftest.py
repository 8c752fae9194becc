"""One real local Ray cluster for the module: a head with no slots and two nodes of one slot each,
separate processes on this machine, sharing its one Docker engine (each agent labels what it
makes with its own node id, so a node's sweeps never take the other's work)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAST_DEATH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
              "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}
"""A dead node is seen in about two seconds instead of Ray's default half a minute."""


def slot_node(cluster):
    return cluster.add_node(num_cpus=1, resources={"selfprog_slot": 1})


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """``(cluster, nodes)``: this process is the driver; workers import this checkout."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    os.environ["SELFPROG_CLUSTER_CACHE"] = str(tmp_path_factory.mktemp("node-cache"))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False, "_system_config": FAST_DEATH})
    nodes = [slot_node(cluster), slot_node(cluster)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
