"""A dockerd of ours that stopped answering (Docker 20.10's libnetwork deadlock, moby/moby#46661,
hung a whole test session on `docker info`) is restarted by ensure_dockerd, not waited on forever.
The fault is caused, not simulated: the engine is frozen with SIGSTOP."""
from __future__ import annotations

import os
import signal

import pytest

from devtools import infra


def test_a_wedged_dockerd_of_ours_is_restarted(cluster_cfg, tmp_path, monkeypatch):
    ours = infra._our_dockerds()
    if not ours or not infra.docker_ok():
        pytest.skip("the engine answering here was not started by noops: not ours to freeze")
    monkeypatch.setattr(infra, "DOCKER_INFO_TIMEOUT_S", 3.0)
    (tmp_path / "logs").mkdir()
    frozen = ours[0]
    os.kill(frozen, signal.SIGSTOP)
    try:
        assert infra._docker_answer() == "wedged"
        assert infra.ensure_dockerd(tmp_path) is True
        assert infra.docker_ok()
        assert frozen not in infra._our_dockerds() and infra._our_dockerds()
    finally:
        if infra.pid_alive(frozen):
            os.kill(frozen, signal.SIGCONT)
