"""hostd reports the TCP ports something listens on (its heartbeat), for host-port placement."""
from services.hostd.heartbeat import listening_ports

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:21FC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:9C40 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000
"""


def test_listening_ports_from_proc_tables() -> None:
    # 22 (both families, once), 8700 on loopback, 8080 on v6; the ESTABLISHED socket on 40000 is not listening.
    assert listening_ports(TCP, TCP6) == [22, 8080, 8700]


def test_listening_ports_of_this_machine_include_a_socket_we_open() -> None:
    import socket

    from services.hostd.heartbeat import read_listening_ports
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert s.getsockname()[1] in read_listening_ports()


def test_the_kernel_and_proc_agree_and_a_connected_socket_is_not_listening() -> None:
    """sock_diag (what hostd asks) and /proc/net/tcp (its fallback) list the same ports; a
    socket that only connects is in neither, one that listens on IPv6 is in both."""
    import socket

    from services.hostd import heartbeat
    with socket.socket() as server, socket.socket(socket.AF_INET6) as server6, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        listening = {server.getsockname()[1]}
        try:
            server6.bind(("::1", 0))
            server6.listen()
            listening.add(server6.getsockname()[1])
        except OSError:   # a machine without IPv6 on loopback
            pass
        client.connect(server.getsockname())
        diag, proc = heartbeat._diag_listening_ports(), heartbeat._proc_listening_ports()
        assert listening <= set(diag)
        assert client.getsockname()[1] not in diag
        # Other processes' sockets may come and go between the two reads: compare ours.
        ours = listening | {client.getsockname()[1]}
        assert ours & set(diag) == ours & set(proc)
