"""Benchmark: configured vs achieved egress rate.  A container on a simulated host gets its eth0
from hostd's network step with ``egress_mbit`` set (tbf on eth0); iperf3 runs inside its
namespace and sends to an iperf3 server on the switch's gateway address (root namespace).

    .venv/bin/python -m bench.net_egress [--seconds 4] [--rates 10,100,1000]

iperf3 counts TCP payload: a limit exact at frame level shows as ~95.5% of the rate (1448 of
1514 bytes per full frame), so both are printed.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

from bench.net_setup import Lab, run, sh

PORT = 5201
PAYLOAD_SHARE = 1448 / 1514  # TCP payload per full Ethernet frame with timestamps


async def main(seconds: int, rates: list[int]) -> list[tuple[int, float]]:
    lab = Lab()
    try:
        lab.up()
        lab.add_host("e1")
        gw = str(lab.net.gateway)
        srv = lab.spawn(["iperf3", "-s", "-B", gw, "-p", str(PORT)])
        assert srv.pid
        results = []
        for mbit in rates:
            _, pid = lab.container("--network", "none")
            await lab.attach("e1", f"egress-{mbit}", pid, egress_mbit=mbit)
            for _attempt in range(20):  # the server may still be binding
                out = sh("nsenter", "-t", str(pid), "-n", "iperf3", "-c", gw, "-p", str(PORT), "-t", str(seconds),
                         "-O", "1", "-J", check=False)
                try:
                    got = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
                    break
                except (ValueError, KeyError):
                    time.sleep(0.2)
            else:
                raise RuntimeError(f"iperf3 did not run: {out[:300]}")
            results.append((mbit, got))
            print(f"configured {mbit:5} Mbit/s  achieved {got:8.1f} Mbit/s payload "
                  f"({got / mbit * 100:5.1f}%; {got / PAYLOAD_SHARE / mbit * 100:5.1f}% at frame level)")
        return results
    finally:
        lab.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rates", default="10,100,1000")
    args = ap.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {platform.platform()}")
    run(main(args.seconds, [int(r) for r in args.rates.split(",")]))
