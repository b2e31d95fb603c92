"""Python peer producer: producer.py celery|rq SEQ0 COUNT RATE
Enqueues COUNT tasks noop(seq, enq_ns, pad) one at a time with the peer's ordinary call
(Celery noop.apply_async, RQ Queue.enqueue), each returning once the broker acknowledged it.
RATE > 0 paces the calls (absolute schedule), 0 = as fast as possible.
Prints "ENQ count first_call_ns last_ack_ns"."""
import os
import sys
import time


def main():
    peer, seq0, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    pad = "x" * int(os.environ.get("PAYLOAD", "100"))
    url = os.environ["BENCH_REDIS_URL"]
    if peer == "celery":
        from celery_app import noop

        def enqueue(seq, enq_ns):
            noop.apply_async(args=(seq, enq_ns, pad))
    elif peer == "rq":
        from redis import Redis
        from rq import Queue
        from rq_tasks import noop

        q = Queue(os.environ.get("BENCH_QUEUE", "bench"), connection=Redis.from_url(url))

        def enqueue(seq, enq_ns):
            q.enqueue(noop, seq, enq_ns, pad)
    else:
        sys.exit("unknown peer " + peer)
    first = last = 0
    t0 = time.monotonic_ns()
    for i in range(count):
        if rate > 0:
            delay = t0 + int(i * 1e9 / rate) - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
        enq = time.time_ns()
        if i == 0:
            first = enq
        enqueue(seq0 + i, enq)
        last = time.time_ns()
    print("ENQ %d %d %d" % (count, first, last), flush=True)


if __name__ == "__main__":
    main()
