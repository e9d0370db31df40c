#!/usr/bin/env python3
"""Per-request instruction counts from a callgrind profile (used by
instructions_per_request.sh; also handy on its own).

    callgrind_self_cost.py FILE REQUESTS [LABEL [TOP]]   # totals, by object, top functions
    callgrind_self_cost.py FILE REQUESTS --callers REGEX # who calls the matching functions
    callgrind_self_cost.py FILE REQUESTS --tree REGEX [DEPTH [MIN_IR]]
                                                         # inclusive call tree below them

Reads the callgrind format directly: valgrind 3.19's callgrind_annotate counts a call's
inclusive cost as self cost when the dump was taken after a zeroing (`calls=0` lines), which
makes its table useless for a `callgrind_control -z` / `-d` window. Figures are Ir (instructions
executed) divided by REQUESTS. The tree is built from (caller, callee) pairs without context,
so a function called from several places shows its callees' total under each caller.

EVENT=I1mr (env) counts another of the profile's events instead of Ir, e.g. the instruction-cache
misses of a profile taken with `--cache-sim=yes` (instructions_per_request.sh CACHE_SIM=1): the
hot path's code footprint, which a per-request walk that runs mostly straight-line code pays in
first-level instruction-cache misses.
"""
import os
import re
import sys


def parse(path):
    """Returns ({(function, object): self Ir}, {(caller, callee): [calls, inclusive Ir]})."""
    names = {}

    def name(kind, value):
        m = re.match(r"\((\d+)\)(?:\s+(.*))?$", value)
        if not m:
            return value
        key = (kind, m.group(1))
        if m.group(2) is not None:
            names[key] = m.group(2)
        return names.get(key, "?")

    self_cost, edges = {}, {}
    ob = fn = cfn = "?"
    call = None
    column = 1  # the first event (Ir) unless EVENT names another
    event = os.environ.get("EVENT", "Ir")
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                if len(parts) < 2:
                    continue
                # Trailing zero events are left out of a cost line.
                cost = int(parts[column]) if len(parts) > column else 0
                if call is not None:
                    e = edges.setdefault((fn, cfn), [0, 0])
                    e[0] += call
                    e[1] += cost
                    call = None
                else:
                    key = (fn, ob)
                    self_cost[key] = self_cost.get(key, 0) + cost
                continue
            if line.startswith("events:"):
                events = line.split()[1:]
                if event not in events:
                    sys.exit(f"{path}: no event {event} in the profile (it has {' '.join(events)})")
                column = events.index(event) + 1
                continue
            if "=" not in line:
                continue
            k, v = line.split("=", 1)
            if k == "ob":
                ob = name("ob", v)
            elif k == "fn":
                fn = name("fn", v)
            elif k == "cob":
                name("ob", v)
            elif k in ("fl", "fi", "fe", "cfi", "cfl"):
                name("fl", v)
            elif k == "cfn":
                cfn = name("fn", v)
            elif k == "calls":
                call = int(v.split()[0])
    return self_cost, edges


def short(obj):
    return obj.rsplit("/", 1)[-1]


def report(self_cost, n, label, top):
    total = sum(self_cost.values())
    by_obj = {}
    for (_, ob), ir in self_cost.items():
        by_obj[short(ob)] = by_obj.get(short(ob), 0) + ir
    ev = os.environ.get("EVENT", "Ir")
    print(f"\n== {label}: {n} requests, {total / n:,.0f} {ev}/request (user space)")
    for ob, ir in sorted(by_obj.items(), key=lambda kv: -kv[1])[:6]:
        print(f"   {ir / n:9,.0f}  {100 * ir / total:5.1f}%  {ob}")
    print(f"== {label}: top functions by self cost ({ev}/request)")
    for (fn, ob), ir in sorted(self_cost.items(), key=lambda kv: -kv[1])[:top]:
        print(f"   {ir / n:9,.1f}  {100 * ir / total:5.1f}%  {fn[:110]}  [{short(ob)}]")


def callers(edges, n, pattern):
    for (a, b), (calls, inc) in sorted(edges.items(), key=lambda kv: -kv[1][1]):
        if re.search(pattern, b) and inc / n >= 1:
            print(f"   {inc / n:9,.1f} Ir {calls / n:6.2f}x  {a[:80]} -> {b[:80]}")


def tree(self_cost, edges, n, pattern, depth, min_ir):
    selfc, kids = {}, {}
    for (fn, _), ir in self_cost.items():
        selfc[fn] = selfc.get(fn, 0) + ir
    for (a, b), (calls, inc) in edges.items():
        kids.setdefault(a, []).append((inc, calls, b))

    def walk(fn, d, seen):
        if d > depth:
            return
        for inc, calls, b in sorted(kids.get(fn, []), reverse=True):
            if inc / n < min_ir or b in seen:
                continue
            print(f"{'  ' * d}{inc / n:8,.0f} {calls / n:5.2f}x self {selfc.get(b, 0) / n:6,.0f}  {b[:100]}")
            walk(b, d + 1, seen | {b})

    for fn in sorted(selfc):
        if re.search(pattern, fn):
            print(f"{fn} (self {selfc[fn] / n:,.0f})")
            walk(fn, 1, {fn})


def main(argv):
    path, n = argv[1], int(argv[2])
    self_cost, edges = parse(path)
    if len(argv) > 3 and argv[3] == "--callers":
        callers(edges, n, argv[4])
    elif len(argv) > 3 and argv[3] == "--tree":
        depth = int(argv[5]) if len(argv) > 5 else 4
        min_ir = float(argv[6]) if len(argv) > 6 else 100
        tree(self_cost, edges, n, argv[4], depth, min_ir)
    else:
        label = argv[3] if len(argv) > 3 else path
        top = int(argv[4]) if len(argv) > 4 else 40
        report(self_cost, n, label, top)


if __name__ == "__main__":
    main(sys.argv)
