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
"""
import resource
import statistics
import subprocess
import sys
import time


def run(command):
    """Wall and user CPU milliseconds of one run of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall * 1000, (after.ru_utime - before.ru_utime) * 1000


def main():
    if len(sys.argv) < 3 or not sys.argv[1].isdigit() or any("=" not in a for a in sys.argv[2:]):
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    commands = [a.split("=", 1) for a in sys.argv[2:]]
    for _, command in commands:
        run(command)
    times = {name: [] for name, _ in commands}
    for _ in range(rounds):
        for name, command in commands:
            times[name].append(run(command))
    width = max(len(name) for name, _ in commands)
    for name, _ in commands:
        walls = [w for w, _ in times[name]]
        users = [u for _, u in times[name]]
        print(f"{name:{width}}  wall {statistics.median(walls):8.1f} ms  "
              f"user {statistics.median(users):8.1f} ms  (fastest wall {min(walls):.1f} ms)")


if __name__ == "__main__":
    main()
