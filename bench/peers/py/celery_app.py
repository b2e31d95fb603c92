"""Celery app for bench/peers: Redis broker (BENCH_REDIS_URL), no result backend, defaults
otherwise. Worker: python3 -m celery -A celery_app worker -P solo|prefork ..."""
import os

from celery import Celery

from record import record

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.task_ignore_result = True  # no result backend configured: nothing to store


@app.task(name="bench.noop")
def noop(seq, enq_ns, pad):
    record("celery", seq, enq_ns)
