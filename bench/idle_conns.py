#!/usr/bin/env python3
"""bench/idle_conns.py PORT N PID [hold]: opens N connections to a celeriacd, each finishing its
hello as a producer, then holds them idle; prints the broker's RSS (KiB) before and after, and per
connection. With "hold" it then keeps them open until it is terminated (a workload runs beside
them meanwhile). Stdlib only; the hello frame is packed by hand (docs/protocol.md)."""
import resource
import select
import signal
import socket
import sys
import time


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def mp_str(s):
    b = s.encode()
    return bytes([0xA0 | len(b)]) + b


def hello_frame():
    body = bytes([0x84]) + mp_str("op") + mp_str("hello") + mp_str("seq") + b"\x01" + \
        mp_str("role") + mp_str("producer") + mp_str("version") + b"\x01"
    return bytes([0xCE, 0x01]) + len(body).to_bytes(4, "big") + body


def main():
    port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = rss_kib(pid)
    frame, socks = hello_frame(), []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(frame)
        socks.append(s)
    welcomed, deadline = 0, time.time() + 60
    poller, by_fd = select.poll(), {}
    for s in socks:
        poller.register(s, select.POLLIN)
        by_fd[s.fileno()] = s
    while by_fd and time.time() < deadline:
        for fd, _ in poller.poll(1000):
            if by_fd[fd].recv(4096):
                welcomed += 1
            poller.unregister(fd)
            del by_fd[fd]
    time.sleep(1)
    after = rss_kib(pid)
    print("idle_connections=%d welcomed=%d broker_rss_before_kib=%d broker_rss_after_kib=%d "
          "kib_per_connection=%.2f" % (n, welcomed, before, after, (after - before) / n),
          flush=True)
    if len(sys.argv) > 4 and sys.argv[4] == "hold":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0 if welcomed == n else 1))
        while True:
            time.sleep(3600)
    for s in socks:
        s.close()
    return 0 if welcomed == n else 1


if __name__ == "__main__":
    sys.exit(main())
