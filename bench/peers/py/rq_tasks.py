"""RQ task module for bench/peers (workers find it as rq_tasks.noop via PYTHONPATH)."""
from record import record


def noop(seq, enq_ns, pad):
    record("rq", seq, enq_ns)
