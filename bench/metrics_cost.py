#!/usr/bin/env python3
"""The cost of metrics on the page-1 group listing, counted in instructions.

Runs the server under callgrind (valgrind) twice, with `--metrics off` and `on`, loads the same
smoke directory through the sync endpoint, sends the same warm-up and then the same measured
sequence of page-1 listings on one kept-alive connection, and reads the server's instruction
count for the measured requests alone (callgrind's counters are zeroed before them and dumped
after). Instruction counts do not depend on the machine's load, unlike calls per CPU-second,
which spread by +-20% between runs on a shared virtual machine.

Used by bench/metrics-cost; prints a Markdown table.
"""

import argparse
import glob
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200 or json.loads(body).get("code") != "OK":
        sys.exit(f"metrics-cost: {path} answered {response.status}: {body[:300]!r}")
    return json.loads(body)


def callgrind(pid, option):
    subprocess.run(["callgrind_control", option, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def total_instructions(out_dir, pid):
    """The `summary:`/`totals:` line of the dump made after the measured requests."""
    dumps = sorted(glob.glob(f"{out_dir}/callgrind.out.{pid}.*"), key=os.path.getmtime)
    if not dumps:
        sys.exit("metrics-cost: callgrind wrote no dump")
    with open(dumps[-1]) as f:
        for line in f:
            m = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    sys.exit(f"metrics-cost: no totals in {dumps[-1]}")


def measure(args, mode, snapshot):
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = dict(os.environ, CONTACTSD_METRICS=mode)
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out.%p",
             args.binary, "serve", "--db", f"sqlite://{tmp}/bench.db",
             "--listen", f"127.0.0.1:{port}", "--rate-limit", "0", "--token-rate-limit", "0"],
            env=env, stdout=subprocess.PIPE, stderr=open(f"{tmp}/server.err", "w"), text=True)
        try:
            out = ""
            deadline = time.time() + 300
            while "demo team app" not in out:
                line = server.stdout.readline()
                if not line and server.poll() is not None or time.time() > deadline:
                    sys.exit("metrics-cost: the server did not start")
                out += line
            threading.Thread(target=server.stdout.read, daemon=True).start()
            demo = re.search(r"demo team app\s+appid=(\S+)\s+secret=(\S+)", out)
            appid, secret = demo.group(1), demo.group(2)
            team = re.search(r"team_id=(\d+)", out).group(1)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            for _ in range(600):
                try:
                    conn.request("GET", "/healthz")
                    conn.getresponse().read()
                    break
                except OSError:
                    conn.close()
                    time.sleep(0.5)
            query = urllib.parse.urlencode({"appid": appid, "secret": secret,
                                            "grant_type": "client_credential"})
            token = get(conn, f"/api/oauth2/access_token?{query}")["data"]["access_token"]
            q = f"appid={appid}&access_token={token}"
            base = f"/api/contacts/teams/{team}"
            conn.request("POST", f"{base}/sync?{q}", body=snapshot,
                         headers={"content-type": "application/x-ndjson"})
            response = conn.getresponse()
            body = response.read()
            if json.loads(body).get("code") != "OK":
                sys.exit(f"metrics-cost: the sync answered {body[:300]!r}")
            listing = f"{base}/groups?{q}&page=1&per_page=10"
            for _ in range(args.warmup):
                get(conn, listing)
            callgrind(server.pid, "-z")
            for _ in range(args.requests):
                get(conn, listing)
            callgrind(server.pid, "-d")
            return total_instructions(tmp, server.pid)
        finally:
            server.terminate()
            server.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--snapshot", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args()
    with open(args.snapshot, "rb") as f:
        snapshot = f.read()
    counts = {mode: measure(args, mode, snapshot) for mode in ("off", "on")}
    per = {mode: counts[mode] / args.requests for mode in counts}
    extra = per["on"] / per["off"] - 1
    print(f"| metrics | instructions, {args.requests} page-1 listings | per listing |")
    print("|---|---:|---:|")
    for mode in ("off", "on"):
        print(f"| {mode} | {counts[mode]:,} | {per[mode]:,.0f} |")
    print()
    print(f"Metrics on: {extra:+.2%} instructions per listing "
          f"({'within' if abs(extra) <= 0.03 else 'outside'} the 3% target).")


if __name__ == "__main__":
    main()
