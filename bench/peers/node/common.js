'use strict';
// CLOCK_REALTIME in ns as a BigInt: the wall-clock origin of this process (µs precision) plus
// the monotonic high-resolution clock since then, so successive stamps are precise and ordered.
const originNs = BigInt(Math.round(performance.timeOrigin * 1e3)) * 1000n;
const hr0 = process.hrtime.bigint() - BigInt(Math.round(performance.now() * 1e6));
function nowNs() {
  return originNs + (process.hrtime.bigint() - hr0);
}

function connection() {
  return { host: '127.0.0.1', port: Number(process.env.BENCH_REDIS_PORT), maxRetriesPerRequest: null };
}

module.exports = { nowNs, connection, QUEUE: process.env.BENCH_QUEUE || 'bench' };
