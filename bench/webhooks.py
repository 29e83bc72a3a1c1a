#!/usr/bin/env python3
"""Webhook delivery latency at a steady write rate. Run through bench/webhooks.

Starts `contactsd serve` on a fresh SQLite file with a webhook on the demo team pointed at a
receiver in this script, then creates groups at `--rate` per second (from a few threads, each
request timed) for `--seconds`. For each group the latency is the time from the start of the
request that created it to the receipt of its `group.created` event: an upper bound of the time
from commit to receipt (the commit happens inside the request).
"""

import argparse
import http.client
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=data, headers={"content-type": "application/json"})
        answer = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    if answer.get("code") != "OK":
        sys.exit(f"bench/webhooks: {method} {path} answered {answer}")
    return answer["data"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()

    received = {}  # group id -> receipt time

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            now = time.monotonic()
            for event in json.loads(body)["events"]:
                if event["type"] == "group.created":
                    received.setdefault(event["object"]["id"], now)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()

    with tempfile.TemporaryDirectory(prefix="contactsd-webhooks.") as tmp:
        db = f"sqlite://{os.path.join(tmp, 'bench.db')}"
        org = json.loads(subprocess.run(
            [args.binary, "admin", "create-org", "--db", db, "--name", "Bench"],
            check=True, capture_output=True).stdout)
        port = free_port()
        env = dict(os.environ, CONTACTSD_WEBHOOK_ALLOW_PRIVATE="true")
        server = subprocess.Popen(
            [args.binary, "serve", "--db", db, "--listen", f"127.0.0.1:{port}",
             "--rate-limit", "0", "--token-rate-limit", "0"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "server.err"), "w"),
            env=env)
        try:
            for _ in range(200):
                try:
                    call(port, "GET", "/healthz")
                    break
                except OSError:
                    time.sleep(0.05)
            token = call(port, "GET", f"/api/oauth2/access_token?appid={org['appid']}"
                         f"&secret={org['secret']}&grant_type=client_credential")
            query = f"appid={org['appid']}&access_token={token['access_token']}"
            team = org["team_id"]
            url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
            call(port, "POST", f"/api/contacts/teams/{team}/webhooks?{query}", {"url": url})

            sent = {}  # group id -> request start
            total = int(args.rate * args.seconds)
            start = time.monotonic()

            def writer(t):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                for n in range(t, total, args.threads):
                    due = start + n / args.rate
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    began = time.monotonic()
                    connection.request(
                        "POST", f"/api/contacts/teams/{team}/groups?{query}",
                        body=json.dumps({"name": f"G{n}"}),
                        headers={"content-type": "application/json"})
                    answer = json.loads(connection.getresponse().read())
                    if answer.get("code") != "OK":
                        sys.exit(f"bench/webhooks: a write answered {answer}")
                    sent[answer["data"]["group_id"]] = began
                connection.close()

            threads = [threading.Thread(target=writer, args=(t,)) for t in range(args.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.monotonic() - start
            deadline = time.monotonic() + 30
            while len(received) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            server.terminate()
            server.wait()
    missing = [group for group in sent if group not in received]
    if missing:
        sys.exit(f"bench/webhooks: {len(missing)} events never arrived")
    latencies = sorted((received[group] - sent[group]) * 1000 for group in sent)
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
    print(f"bench/webhooks: {len(sent)} changes in {elapsed:.1f} s "
          f"({len(sent) / elapsed:.0f}/s), each event received: request start to receipt "
          f"p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {latencies[-1]:.1f} ms "
          f"(mean {statistics.mean(latencies):.1f} ms)")


if __name__ == "__main__":
    main()
