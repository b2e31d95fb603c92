// BullMQ producer: node producer.js SEQ0 COUNT RATE
// Adds COUNT jobs {seq, enq_ns, pad} one at a time with `await queue.add()` (BullMQ defaults);
// RATE > 0 paces the calls (absolute schedule), 0 = as fast as possible.
// Prints "ENQ count first_call_ns last_ack_ns".
'use strict';
const { Queue } = require('bullmq');
const { nowNs, connection, QUEUE } = require('./common');

async function main() {
  const [seq0, count, rate] = [Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
  const pad = 'x'.repeat(Number(process.env.PAYLOAD || 100));
  const queue = new Queue(QUEUE, { connection: connection() });
  let first = 0n, last = 0n;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    if (rate > 0) {
      const delay = t0 + (i * 1000) / rate - performance.now();
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    }
    const enq = nowNs();
    if (i === 0) first = enq;
    // job data carries enq_ns as a string: it does not fit a JS number exactly
    await queue.add('noop', { seq: seq0 + i, enq_ns: enq.toString(), pad });
    last = nowNs();
  }
  process.stdout.write(`ENQ ${count} ${first} ${last}\n`);
  await queue.close();
}

main().catch((e) => { console.error(e); process.exit(1); });
