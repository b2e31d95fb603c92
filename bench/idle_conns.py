#!/usr/bin/env python3
"""bench/idle_conns.py PORT N PID [hold|waits]: opens N connections to a celeriacd, each finishing
its hello as a producer, then holds them idle; prints the broker's RSS (KiB) before and after, and
per connection. "hold": then keeps them open until it is terminated (a workload runs beside them
meanwhile). "waits": as hold, but each connection first enqueues a task to queue "parked" (which
no worker consumes) and waits for it, so N waits are pending in the broker. Stdlib only; frames
are packed by hand (docs/protocol.md)."""
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


def mp_uint(v):
    return bytes([v]) if v < 128 else b"\xce" + v.to_bytes(4, "big")


def frame(*fields):
    body = bytes([0x80 | len(fields)])
    for k, v in fields:
        body += mp_str(k) + (mp_str(v) if isinstance(v, str) else mp_uint(v))
    return bytes([0xCE, 0x01]) + len(body).to_bytes(4, "big") + body


def requests(mode, i):
    """What connection i sends, and how many reply frames it waits for."""
    hello = frame(("op", "hello"), ("seq", 1), ("role", "producer"), ("version", 1))
    if mode != "waits":
        return hello, 1
    tid = "parked-%d" % i
    return hello + frame(("op", "enqueue"), ("seq", 2), ("queue", "parked"), ("task", "t"),
                         ("id", tid)) + \
        frame(("op", "wait"), ("seq", 3), ("id", tid), ("timeout_ms", 3600000)), 2


def frames_in(buf):
    n, at = 0, 0
    while len(buf) - at >= 6 and len(buf) - at - 6 >= int.from_bytes(buf[at + 2:at + 6], "big"):
        at += 6 + int.from_bytes(buf[at + 2:at + 6], "big")
        n += 1
    return n


def main():
    port, n, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else ""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = rss_kib(pid)
    socks, expect = [], 1
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        data, expect = requests(mode, i)
        s.sendall(data)
        socks.append(s)
    welcomed, deadline = 0, time.time() + 60
    poller, by_fd, got = select.poll(), {}, {}
    for s in socks:
        poller.register(s, select.POLLIN)
        by_fd[s.fileno()], got[s.fileno()] = s, b""
    while by_fd and time.time() < deadline:
        for fd, _ in poller.poll(1000):
            chunk = by_fd[fd].recv(4096)
            got[fd] += chunk
            if chunk and frames_in(got[fd]) < expect:
                continue
            welcomed += frames_in(got[fd]) >= expect
            poller.unregister(fd)
            del by_fd[fd]
    time.sleep(1)
    after = rss_kib(pid)
    print("idle_connections=%d welcomed=%d broker_rss_before_kib=%d broker_rss_after_kib=%d "
          "kib_per_connection=%.2f" % (n, welcomed, before, after, (after - before) / n),
          flush=True)
    if mode in ("hold", "waits"):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0 if welcomed == n else 1))
        while True:
            time.sleep(3600)
    for s in socks:
        s.close()
    return 0 if welcomed == n else 1


if __name__ == "__main__":
    sys.exit(main())
