#!/usr/bin/env python3
"""Interleaved timing of several commands: each round runs every command once, in turn,
so a slow spell of a shared machine falls on all of them alike; prints each command's
median wall and user CPU time over the rounds (and its fastest wall time).

    python3 scripts/ab.py ROUNDS NAME=COMMAND [NAME=COMMAND ...]

e.g. the README's 1 GiB figures:

    F=/work/bench-data/nofind-1G.jsonl R=../shared/corpus
    python3 scripts/ab.py 5 "rg=rg -c Set-MailboxAuditBypassAssociation $F" \
        "builtin=target/release/ualhunt hunt -q --format json -o /dev/null $F" \
        "E=target/release/ualhunt hunt -q --format json -o /dev/null --rules $R/elastic-rules $F"

Each command runs once before the rounds (warm-up: the file in the page cache), its
output discarded; commands run through the shell.

    python3 scripts/ab.py --copies K ROUNDS NAME=COMMAND [...]

runs each command's program (its first word, when that is a file) from K copies of it,
round r from copy r mod K, and prints each copy's medians too. On a shared host one
binary file can run a few percent slower than a byte-identical copy of it, run after
run (where its pages sit in memory): two builds compared one copy each may differ by
that alone.
"""
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run(command):
    """Wall and user CPU milliseconds of one run of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall * 1000, (after.ru_utime - before.ru_utime) * 1000


def copies_of(command, k, directory, n):
    """`command` K times, its program (first word, when a file) copied K times."""
    program, _, rest = command.strip().partition(" ")
    if k < 2 or not os.path.isfile(program):
        return [command]
    out = []
    for c in range(k):
        path = os.path.join(directory, f"{n}-{c}-{os.path.basename(program)}")
        shutil.copy2(program, path)
        out.append(f"{shlex.quote(path)} {rest}")
    return out


def main():
    args = sys.argv[1:]
    k = 1
    if len(args) >= 2 and args[0] == "--copies" and args[1].isdigit():
        k, args = int(args[1]), args[2:]
    if len(args) < 2 or not args[0].isdigit() or any("=" not in a for a in args[1:]):
        sys.exit(__doc__)
    rounds = int(args[0])
    with tempfile.TemporaryDirectory() as directory:
        commands = [
            (name, copies_of(command, k, directory, n))
            for n, (name, command) in enumerate(a.split("=", 1) for a in args[1:])
        ]
        for _, variants in commands:
            for command in variants:
                run(command)
        times = {name: [] for name, _ in commands}
        for r in range(rounds):
            for name, variants in commands:
                times[name].append((r % len(variants), run(variants[r % len(variants)])))
    width = max(len(name) for name, _ in commands)
    for name, variants in commands:
        walls = [w for _, (w, _) in times[name]]
        users = [u for _, (_, u) in times[name]]
        print(f"{name:{width}}  wall {statistics.median(walls):8.1f} ms  "
              f"user {statistics.median(users):8.1f} ms  (fastest wall {min(walls):.1f} ms)")
        if len(variants) > 1:
            each = ", ".join(
                f"{statistics.median([w for c, (w, _) in times[name] if c == i]):.1f}"
                for i in range(len(variants))
            )
            print(f"{'':{width}}  wall per copy: {each} ms")


if __name__ == "__main__":
    main()
