#!/usr/bin/env python3
"""Reports for bench/serve-profile.sh; see there. Standard library only.

  serve_profile.py threads BEFORE AFTER REQUESTS  per-thread CPU µs per request
  serve_profile.py perf PERF_SCRIPT_OUTPUT        where serve's CPU goes, by thread and symbol
  serve_profile.py wal DATABASE ISSUANCES         WAL pages written per issuance, by b-tree
"""
import collections
import re
import sqlite3
import struct
import sys


def threads(before, after, requests):
    """`before`/`after`: lines "comm ticks" from /proc/PID/task/*/stat; summed per name."""
    def load(path):
        totals = collections.Counter()
        for line in open(path):
            name, ticks = line.rsplit(None, 1)
            totals[name] += int(ticks)
        return totals
    b, a = load(before), load(after)
    hz = 100  # USER_HZ: /proc reports clock ticks of 10 ms
    rows = sorted(((1e6 * (a[n] - b[n]) / hz / requests, n) for n in a), reverse=True)
    total = sum(us for us, _ in rows)
    print(f"CPU per issuance: {total:.0f} µs")
    for us, name in rows:
        if us >= 1:
            print(f"  {name:<20} {us:6.0f} µs  {100 * us / total:4.1f}%")


# Frames that say nothing about where time goes: runtimes, futures plumbing, thread entry.
GENERIC = re.compile(r"^(core::|std::|alloc::|<core::|<alloc::|<std::|tokio::|<tokio::|hyper::|<hyper::|hyper_util|<hyper_util|"
                     r"futures_util|<futures_util|tower|<tower|axum::|<axum|<F as |__GI_|start_thread|clone3|"
                     r"\[unknown\]|_start|main$)")
FRAME = re.compile(r"^\s+[0-9a-f]+ (.+?)(\+0x[0-9a-f]+)? \((.*)\)$")


def samples(path):
    """Yields (thread group, [(symbol, is_kernel)] leaf first) per sample of `perf script`."""
    thread, frames = None, []
    for line in open(path, errors="replace"):
        if not line.strip():
            if thread is not None:
                yield thread, frames
            thread, frames = None, []
        elif not line[0].isspace():
            thread = re.sub(r"[-\s]\d+$", "", line.split(None, 1)[0]).rstrip("-0123456789") or "?"
        else:
            m = FRAME.match(line.rstrip("\n"))
            if m:
                frames.append((m.group(1), "kernel" in m.group(3)))
    if thread is not None:
        yield thread, frames


def perf(path):
    by_thread = collections.Counter()
    kernel = collections.Counter()
    incl = collections.defaultdict(collections.Counter)
    n = 0
    for thread, frames in samples(path):
        n += 1
        by_thread[thread] += 1
        if frames and frames[0][1]:
            what = "other kernel work"
            for sym, _ in frames:
                if sym.startswith(("__x64_sys_", "__do_sys_")):
                    what = sym.replace("__x64_sys_", "").replace("__do_sys_", "") + "()"
                    break
                if sym.startswith(("asm_common_interrupt", "asm_sysvec")):
                    what = "interrupts"
                    break
                if sym.startswith("asm_exc_page_fault"):
                    what = "page faults"
                    break
            kernel[(thread, what)] += 1
        for sym in {s for s, k in frames if not k and not GENERIC.match(s)}:
            incl[thread][sym] += 1
    if n == 0:
        print("no samples")
        return
    print(f"{n} samples; share of serve's CPU by thread:")
    for t, c in by_thread.most_common():
        print(f"  {t:<20} {100 * c / n:5.1f}%")
    print("in the kernel (leaf in the kernel), by thread and system call:")
    for (t, what), c in kernel.most_common(12):
        print(f"  {100 * c / n:5.1f}%  {t:<20} {what}")
    for t, _ in by_thread.most_common(3):
        print(f"{t}: functions on the stack, share of all samples (inclusive)")
        for sym, c in incl[t].most_common(15):
            print(f"  {100 * c / n:5.1f}%  {sym[:150]}")


def wal(db, issuances):
    """Counts the frames of the current WAL (after a TRUNCATE checkpoint, only this run's)."""
    data = open(db + "-wal", "rb").read()
    if len(data) < 32:
        print("the WAL is empty")
        return
    page_size, salt = struct.unpack(">I", data[8:12])[0], data[16:24]
    pages = dict((p, name) for name, p in sqlite3.connect(db).execute("SELECT name, pageno FROM dbstat"))
    per_tree, commits, off = collections.Counter(), 0, 32
    while off + 24 + page_size <= len(data):
        pgno, size_after = struct.unpack(">II", data[off:off + 8])
        if data[off + 8:off + 16] != salt:
            break
        per_tree["page 1 (header)" if pgno == 1 else pages.get(pgno, "?")] += 1
        commits += size_after != 0
        off += 24 + page_size
    frames = sum(per_tree.values())
    # Every issuance writes twice (its order before the CA call, then the certificate), at
    # most a few hundred to a commit: far fewer commits than issuances means a checkpoint
    # restarted the WAL mid-run and the pages before it are gone.
    if commits * 4 < issuances:
        sys.exit(f"only {commits} commits in the WAL for {issuances} issuances: a checkpoint restarted it "
                 "during the run (every 4,000 pages); run fewer issuances")
    print(f"WAL pages written per issuance: {frames / issuances:.1f} in {commits / issuances:.2f} commits "
          f"({frames} pages of {page_size} bytes for {issuances} issuances)")
    for name, c in per_tree.most_common():
        print(f"  {c / issuances:5.2f}  {name}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "threads":
        threads(args[0], args[1], int(args[2]))
    elif cmd == "perf":
        perf(args[0])
    elif cmd == "wal":
        wal(args[0], int(args[1]))
    else:
        sys.exit(__doc__)
