// BullMQ worker: node worker.js CONCURRENCY
// Processor = the no-op task: append "seq enq_ns start_ns\n" to BENCH_REC_DIR/rec.bullmq.<pid>
// with one write(2) (fs.writeSync on an O_APPEND fd). BullMQ defaults otherwise.
'use strict';
const fs = require('fs');
const path = require('path');
const { Worker } = require('bullmq');
const { nowNs, connection, QUEUE } = require('./common');

const concurrency = Number(process.argv[2] || 1);
const fd = fs.openSync(path.join(process.env.BENCH_REC_DIR, `rec.bullmq.${process.pid}`), 'a');

const worker = new Worker(
  QUEUE,
  async (job) => {
    const start = nowNs();
    fs.writeSync(fd, `${job.data.seq} ${job.data.enq_ns} ${start}\n`);
  },
  { connection: connection(), concurrency },
);
worker.on('error', (e) => console.error('worker error', e));
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => { worker.close().finally(() => process.exit(0)); setTimeout(() => process.exit(0), 2000).unref(); });
}
