"""devtools.infra.free_ports: the ports a test cluster or a benchmark takes are distinct."""
from devtools import infra


def test_ports_picked_together_are_distinct() -> None:
    # One at a time, the kernel may hand out a port just released (a CI run lost NATS to its own
    # monitor port): together, never.
    for _ in range(20):
        ports = infra.free_ports(10)
        assert len(set(ports)) == 10 and all(1024 <= p <= 65535 for p in ports)
