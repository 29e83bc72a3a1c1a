#!/usr/bin/env python3
"""Generate a directory snapshot (NDJSON, for POST .../sync or `contactsd sync`) in shapes
that break naive designs:

- one top-level group with 10,000 direct children ("wide"),
- a 15-deep chain ("chain-1" ... "chain-15"),
- a balanced tree (fan-out 10) filling up the rest of the groups,
- members spread over the balanced tree's groups, except that one group ("wide-0") holds
  50,000 direct members (scaled down with --members),
- members' openids in no order, 28 characters each, as an identity provider's are (the same
  for the same --seed and member number).

Usage: gen_snapshot.py --groups 100000 --members 1000000 [--seed 1] > snapshot.ndjson
"""

import argparse
import hashlib
import json
import random
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mode", choices=["upsert", "replace"], default="upsert")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    out = sys.stdout
    write = out.write

    write(json.dumps({"kind": "options", "mode": args.mode, "allow_mass_delete": True}) + "\n")

    def group(remote_id: str, name: str, parent: str, order: int = 0) -> None:
        write(json.dumps({"kind": "group", "remote_id": remote_id, "name": name,
                          "parent_remote_id": parent, "order": order}) + "\n")

    count = 0
    wide_children = min(10_000, max(args.groups // 10, 1))
    group("wide", "Wide", "")
    count += 1
    for i in range(wide_children):
        group(f"wide-{i}", f"Wide {i}", "wide", rng.randrange(100))
    count += wide_children
    chain = min(15, max(args.groups - count - 1, 0))
    parent = ""
    for depth in range(1, chain + 1):
        group(f"chain-{depth}", f"Chain {depth}", parent)
        parent = f"chain-{depth}"
    count += chain

    # Balanced tree, breadth first, fan-out 10, under "tree".
    balanced = []
    if count < args.groups:
        group("tree", "Tree", "")
        count += 1
        frontier = ["tree"]
        while count < args.groups:
            next_frontier = []
            for parent in frontier:
                for k in range(10):
                    if count >= args.groups:
                        break
                    remote = f"{parent}.{k}"
                    group(remote, f"Unit {remote[5:]}", parent, k)
                    balanced.append(remote)
                    next_frontier.append(remote)
                    count += 1
            frontier = next_frontier

    big = min(50_000, args.members // 20)
    targets = balanced or ["wide"]
    for n in range(args.members):
        home = "wide-0" if n < big else targets[rng.randrange(len(targets))]
        role = 2 if n == big else 4
        openid = "o" + hashlib.sha256(f"{args.seed}-{n}".encode()).hexdigest()[:27]
        write(json.dumps({"kind": "member", "openid": openid, "nickname": f"User {n}",
                          "role": role, "group_remote_ids": [home]}) + "\n")


if __name__ == "__main__":
    main()
