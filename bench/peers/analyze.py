#!/usr/bin/env python3
"""Helpers for bench/peers (stdlib only).

  analyze.py wait RECDIR LO HI TIMEOUT_S   wait until every seq in [LO, HI) has a record; exit 1 on timeout
  analyze.py phase RECDIR LO HI [ENQFILE]  stats of the records with seq in [LO, HI) as key=value lines
  analyze.py enq ENQFILE                   producer rate from its "ENQ count first_ns last_ns" line
  analyze.py ticks PID...                  CPU clock ticks (utime+stime+cutime+cstime) of the live
                                           process trees rooted at PID... (reaped children via cutime)
  analyze.py cmds PORT_INFO_FILE           sum of calls= in an INFO commandstats dump (minus info)
  analyze.py median                        stdin: markdown rows from run.sh; stdout: per (peer, config, N)
                                           the median of every column plus the e2e spread (half range, %)

Record files: RECDIR/rec.*, lines "seq enq_ns start_ns" (CLOCK_REALTIME ns)."""
import glob
import os
import statistics
import sys
import time


def read_records(recdir, lo, hi):
    recs = []
    for path in glob.glob(os.path.join(recdir, "rec.*")):
        with open(path, "rb") as f:
            for line in f:
                parts = line.split()
                if len(parts) != 3:
                    continue
                seq = int(parts[0])
                if lo <= seq < hi:
                    recs.append((seq, int(parts[1]), int(parts[2])))
    return recs


def cmd_wait(recdir, lo, hi, timeout):
    lo, hi, deadline = int(lo), int(hi), time.monotonic() + float(timeout)
    offsets, partial, seen = {}, {}, set()
    while True:
        for path in glob.glob(os.path.join(recdir, "rec.*")):
            try:
                with open(path, "rb") as f:
                    f.seek(offsets.get(path, 0))
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            offsets[path] = offsets.get(path, 0) + len(data)
            data = partial.pop(path, b"") + data
            lines = data.split(b"\n")
            if lines[-1]:
                partial[path] = lines[-1]
            for line in lines[:-1]:
                sp = line.find(b" ")
                if sp > 0:
                    seq = int(line[:sp])
                    if lo <= seq < hi:
                        seen.add(seq)
        if len(seen) >= hi - lo:
            return 0
        if time.monotonic() > deadline:
            print("timeout: %d of %d tasks seen" % (len(seen), hi - lo), file=sys.stderr)
            return 1
        time.sleep(0.01)


def percentile(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def parse_enq(path):
    with open(path) as f:
        for line in f:
            if line.startswith("ENQ "):
                _, n, first, last = line.split()
                return int(n), int(first), int(last)
    raise SystemExit("no ENQ line in " + path)


def cmd_enq(path):
    n, first, last = parse_enq(path)
    print("%.1f" % (n / ((last - first) / 1e9)))
    return 0


def cmd_phase(recdir, lo, hi, enqfile=None):
    lo, hi = int(lo), int(hi)
    recs = read_records(recdir, lo, hi)
    seqs = [r[0] for r in recs]
    distinct = len(set(seqs))
    out = {"expected": hi - lo, "records": len(recs), "distinct": distinct,
           "lost": (hi - lo) - distinct, "duplicates": len(recs) - distinct}
    if recs:
        first_enq = min(r[1] for r in recs)
        first_start = min(r[2] for r in recs)
        last_start = max(r[2] for r in recs)
        n = len(recs)
        # e2e: N / (last task start - first enqueue call)
        out["e2e_per_s"] = "%.1f" % (n / ((last_start - first_enq) / 1e9)) if last_start > first_enq else "nan"
        # drain: tasks/s between the first and the last task start
        out["drain_per_s"] = "%.1f" % ((n - 1) / ((last_start - first_start) / 1e9)) if n > 1 and last_start > first_start else "nan"
        lat = sorted((r[2] - r[1]) / 1e6 for r in recs)
        out["lat_p50_ms"] = "%.3f" % percentile(lat, 50)
        out["lat_p99_ms"] = "%.3f" % percentile(lat, 99)
        out["lat_max_ms"] = "%.3f" % lat[-1]
        out["lat_min_ms"] = "%.3f" % lat[0]
    if enqfile:
        n, first, last = parse_enq(enqfile)
        out["producer_per_s"] = "%.1f" % (n / ((last - first) / 1e9))
    for k, v in out.items():
        print("%s=%s" % (k, v))
    return 0


def proc_table():
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()  # fields from 3 (state) on
        ppid = int(rest[1])
        ticks = sum(int(x) for x in rest[11:15])  # utime stime cutime cstime (fields 14-17)
        table[int(d)] = (ppid, ticks)
    return table


def cmd_ticks(*pids):
    table = proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack, seen = 0, [int(p) for p in pids], set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in table:
            continue
        seen.add(pid)
        total += table[pid][1]
        stack.extend(children.get(pid, []))
    print(total)
    return 0


def cmd_cmds(path):
    total = 0
    with open(path) as f:
        for line in f:
            if line.startswith("cmdstat_") and not line.startswith("cmdstat_info:"):
                total += int(line.split("calls=")[1].split(",")[0])
    print(total)
    return 0


def cmd_median():
    groups, order = {}, []
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("|") or line.startswith("|--") or "enqueue/s" in line:
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = tuple(cells[:3])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(cells[3:])
    print("| peer | config | N | enqueue/s | e2e/s | p50 ms | p99 ms | max ms | cpu µs/task "
          "| redis cmds/task | reps | e2e spread |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in order:
        rows = groups[key]
        med = []
        for col in range(len(rows[0])):
            vals = []
            for r in rows:
                try:
                    vals.append(float(r[col].replace(",", "")))
                except ValueError:
                    pass
            med.append(statistics.median(vals) if vals else None)
        e2e = [float(r[1].replace(",", "")) for r in rows if r[1] not in ("-", "nan", "FAIL")]
        spread = "±%.0f%%" % (100 * (max(e2e) - min(e2e)) / 2 / statistics.median(e2e)) if e2e else "-"
        fmts = ["{:,.0f}", "{:,.0f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:,.0f}", "{:.1f}"]
        cells = [f.format(v) if v is not None else "-" for f, v in zip(fmts, med)]
        print("| %s | %s | %d | %s |" % (" | ".join(key), " | ".join(cells), len(rows), spread))
    return 0


def main(argv):
    cmds = {"wait": cmd_wait, "phase": cmd_phase, "enq": cmd_enq, "ticks": cmd_ticks,
            "cmds": cmd_cmds, "median": cmd_median}
    if len(argv) < 2 or argv[1] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
