"""The task body shared by the Python peers: append "seq enq_ns start_ns\\n" to this process's
record file (BENCH_REC_DIR/rec.<tag>.<pid>) with one write(2) on an O_APPEND descriptor."""
import os
import time

_fd = None
_pid = None


def record(tag, seq, enq_ns):
    global _fd, _pid
    start_ns = time.time_ns()  # CLOCK_REALTIME
    pid = os.getpid()
    if _pid != pid:  # first task in this process (prefork children each get their own file)
        _fd = os.open(os.path.join(os.environ["BENCH_REC_DIR"], "rec.%s.%d" % (tag, pid)),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _pid = pid
    os.write(_fd, b"%d %d %d\n" % (seq, enq_ns, start_ns))
