#!/usr/bin/env python3
"""What one tenant's large sync and a cold directory cost the others.

Run through bench/isolation, which builds the release binary first. On a fresh database (a
SQLite file, or the empty PostgreSQL database given) it makes two orgs, A and B, and for each
size given (`GROUPS:MEMBERS`):

1. the stall: A syncs a generated snapshot of that size through `POST .../sync` while B creates
   one group every 0.2 s; the latencies of B's writes during A's sync are reported; then the
   same for a second sync of A that reorganises the directory (`changing_sync`: rows renamed,
   moved and removed rather than added);
2. the cold load: the server is restarted and A's first call (`GET .../groups` page 1) is timed,
   then the next calls; the first call loads A's whole directory into the cache, as after an
   eviction.

Prints one JSON report per size on stdout. No timed assertion: it fails on any answer that is
not `OK`.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, content_type="application/json", timeout=600,
         strict=True):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        request.add_header("content-type", content_type)
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        payload = json.loads(answer.read())
    elapsed = time.monotonic() - started
    if payload.get("code") != "OK" and not strict:
        return payload, elapsed
    if payload.get("code") != "OK":
        sys.exit(f"bench/isolation: {method} {path.split('?')[0]} answered {payload}")
    return payload.get("data"), elapsed


class Server:
    def __init__(self, binary, db, log):
        self.binary, self.db, self.log = binary, db, log
        self.process = None
        self.base = None

    def start(self):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [self.binary, "serve", "--db", self.db, "--listen", f"127.0.0.1:{port}",
             "--rate-limit", "0", "--token-rate-limit", "0"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        for _ in range(300):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2).read()
                return
            except OSError:
                time.sleep(0.2)
        sys.exit("bench/isolation: the server did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait()


def token_query(base, org):
    data, _ = call(base, "GET", f"/api/oauth2/access_token?appid={org['appid']}"
                   f"&secret={org['secret']}&grant_type=client_credential")
    return f"appid={org['appid']}&access_token={data['access_token']}"


def changed_snapshot(source, target):
    """Write `source` changed as a reorganisation would: in replace mode, every tenth group
    renamed, every member renamed, every fifth moved to the next member's groups, every tenth
    left out (removed)."""
    with open(source) as lines, open(target, "w") as out:
        previous_groups = None
        n_group = n_member = 0
        for line in lines:
            item = json.loads(line)
            if item["kind"] == "options":
                item["mode"] = "replace"
            elif item["kind"] == "group":
                if n_group % 10 == 0:
                    item["name"] += " (renamed)"
                n_group += 1
            elif item["kind"] == "member":
                n_member += 1
                groups = item["group_remote_ids"]
                if n_member % 10 == 0:
                    previous_groups = groups
                    continue
                item["nickname"] += " *"
                if n_member % 5 == 1 and previous_groups is not None:
                    item["group_remote_ids"] = previous_groups
                previous_groups = groups
            out.write(json.dumps(item) + "\n")


def stall(server, orgs, snapshot, label):
    """Sync `snapshot` into A while B creates one group every 0.2 s; B's latencies."""
    a, b = orgs
    qa, qb = token_query(server.base, a), token_query(server.base, b)
    done = threading.Event()
    result = {}

    def sync():
        with open(snapshot, "rb") as body:
            data = body.read()
        report, elapsed = call(server.base, "POST",
                               f"/api/contacts/teams/{a['team_id']}/sync?{qa}", data,
                               "application/x-ndjson")
        result.update(sync_s=round(elapsed, 2), report=report)
        done.set()

    thread = threading.Thread(target=sync)
    writes = []
    failures = []
    n = 0
    thread.start()
    while not done.is_set():
        n += 1
        answer, elapsed = call(server.base, "POST",
                               f"/api/contacts/teams/{b['team_id']}/groups?{qb}",
                               {"name": f"{label}-{n}", "parent_id": 0}, strict=False)
        writes.append(elapsed)
        if answer is not None and answer.get("code") not in (None, "OK"):
            failures.append(f"{(answer.get('error') or {}).get('type')} after {elapsed:.1f} s")
        time.sleep(0.2)
    thread.join()
    writes.sort()
    return {
        "sync_s": result.get("sync_s"),
        "other_writes": len(writes),
        "other_write_p50_ms": round(writes[len(writes) // 2] * 1000, 1) if writes else None,
        "other_write_max_ms": round(writes[-1] * 1000, 1) if writes else None,
        "other_write_slowest_ms": [round(w * 1000, 1) for w in writes[-4:]],
        "other_write_failures": failures,
    }


def measure(args, server, orgs, groups, members, round_no):
    snapshot = os.path.join(args.tmp, f"snapshot-{groups}-{members}.ndjson")
    with open(snapshot, "wb") as out:
        subprocess.run([sys.executable, "bench/gen_snapshot.py", "--groups", str(groups),
                        "--members", str(members), "--seed", str(round_no)],
                       stdout=out, check=True)
    changed = os.path.join(args.tmp, f"changed-{groups}-{members}.ndjson")
    changed_snapshot(snapshot, changed)
    server.start()
    first = stall(server, orgs, snapshot, f"r{round_no}")
    # The same directory reorganised: rows changed, moved and removed rather than added.
    second = stall(server, orgs, changed, f"c{round_no}")
    server.stop()
    os.remove(changed)
    # Cold load: a new process has no copy of A's directory.
    a = orgs[0]
    server.start()
    qa = token_query(server.base, a)
    listing = f"/api/contacts/teams/{a['team_id']}/groups?{qa}&page=1&per_page=10"
    _, cold = call(server.base, "GET", listing)
    _, warm = call(server.base, "GET", listing)
    rss = 0
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) // 1024
    server.stop()
    return {
        "groups": groups, "members": members, **first,
        "changing_sync": second,
        "cold_first_call_ms": round(cold * 1000, 1),
        "warm_call_ms": round(warm * 1000, 1),
        "rss_after_load_mib": rss,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--tmp", required=True)
    parser.add_argument("sizes", nargs="+", help="GROUPS:MEMBERS")
    args = parser.parse_args()
    def create_org(name):
        out = subprocess.run([args.binary, "admin", "create-org", "--db", args.db, "--name", name,
                              "--plan", "business"], check=True, capture_output=True).stdout
        return json.loads(out)

    other = create_org("B")
    server = Server(args.binary, args.db, os.path.join(args.tmp, "server.log"))
    for round_no, size in enumerate(args.sizes, start=1):
        groups, members = (int(x) for x in size.split(":"))
        # A fresh org A for each size: its directory is exactly the snapshot.
        orgs = (create_org(f"A{round_no}"), other)
        print(json.dumps(measure(args, server, orgs, groups, members, round_no)), flush=True)


if __name__ == "__main__":
    main()
