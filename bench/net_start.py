"""Benchmark: time from a placement received to the instance RUNNING with its DHCP address,
through hostd's own Agent (real Docker, real netlink, real dnsmasq; the report goes to a
recorder instead of JetStream), one instance after another; next to a bare
`docker run -d --network none` of the same image on the same machine.

    .venv/bin/python -m bench.net_start [--n 50]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

from bench.net_setup import IMAGE, Lab, percentile, run, sh
from libs import messages
from services.hostd.agent import Agent
from services.hostd.network import Network
from services.hostd.runtime import connect_docker
from services.hostd.volumes import LoopVolumes


class Recorder:
    """Stands where hostd's Reporter stands; keeps the reports with their arrival time."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, messages.IpReport]] = []

    async def send(self, **kw: object) -> messages.IpReport:
        r = messages.IpReport(host="bench", at=time.time(), **kw)  # type: ignore[arg-type]
        self.reports.append((time.perf_counter(), r))
        return r


async def main(n: int) -> None:
    lab = Lab()
    try:
        lab.up()
        lab.add_host("s1")
        runtime = await connect_docker("")
        rec = Recorder()
        agent = Agent(cluster=f"bench{lab.tag}", host="s1", runtime=runtime, reporter=rec,  # type: ignore[arg-type]
                      stop_timeout_s=1, network=Network(host="s1", parent=lab.net.nic("s1")),
                      volumes=LoopVolumes(root=lab.run_dir / "volumes", host="s1"))
        spec = messages.ContainerSpec(image=IMAGE, cmd=["sleep", "3600"], env={}, labels={"noops.bench": lab.tag},
                                      cpus=0.1, mem_mb=16, ports=[])
        noops_s, docker_s = [], []
        try:
            for i in range(n):
                p = messages.Placement(instance=f"st-{i}", app="st", version=1, host="s1", epoch=1, action="start",
                                       spec=spec)
                t = time.perf_counter()
                await agent.apply(p)
                done, r = rec.reports[-1]
                assert r.state == "RUNNING" and r.ip, r
                noops_s.append(done - t)
                t = time.perf_counter()
                sh("docker", "run", "-d", "--network", "none", "--label", f"noops.bench={lab.tag}", IMAGE,
                   "sleep", "3600")
                docker_s.append(time.perf_counter() - t)
        finally:
            for i in range(n):
                p = messages.Placement(instance=f"st-{i}", app="st", version=1, host="s1", epoch=2, action="stop",
                                       spec=spec)
                await agent.apply(p)
            await runtime.close()
        for name, xs in (("noops placement → RUNNING+DHCP", noops_s), ("bare docker run --network none", docker_s)):
            print(f"{name:32} n={len(xs)}  median {statistics.median(xs):.3f} s  p99 {percentile(xs, 0.99):.3f} s")
    finally:
        lab.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {platform.platform()}")
    run(main(args.n))
