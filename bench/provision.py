#!/usr/bin/env python3
"""The provisioning burst of bench/run: N users registered and each added to a group, one request
each (POST /api/sso/users, then POST .../groups/<group>/users/<user>), from C connections at once
(one thread and one keep-alive connection each). Prints one line:

    PROVISION users seconds errors

errors = answers whose envelope `code` is not "OK" plus failed requests. The client is Python:
on a shared machine it takes part of the CPU the server could use, so the total time is an upper
bound of what the server needs.
"""

import argparse
import http.client
import json
import sys
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--query", required=True, help="appid=...&access_token=...")
    parser.add_argument("--team-path", required=True, help="/api/contacts/teams/<id>")
    parser.add_argument("--groups", required=True, help="comma list of group ids")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--prefix", default="provision")
    args = parser.parse_args()
    groups = args.groups.split(",")
    errors = [0] * args.connections

    def post(conn: http.client.HTTPConnection, path: str, body: dict):
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
        return answer.get("data") if answer.get("code") == "OK" else None

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        for i in range(k, args.users, args.connections):
            try:
                user = post(conn, f"/api/sso/users?{args.query}",
                            {"openid": f"{args.prefix}-{i}", "nickname": f"Provisioned {i}"})
                if user is None:
                    errors[k] += 1
                    continue
                group = groups[i % len(groups)]
                path = f"{args.team_path}/groups/{group}/users/{user['user_id']}?{args.query}"
                if post(conn, path, {"role": 4}) is None:
                    errors[k] += 1
            except (OSError, http.client.HTTPException, ValueError):
                errors[k] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.connections)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"PROVISION {args.users} {time.monotonic() - start:.2f} {sum(errors)}")


if __name__ == "__main__":
    sys.exit(main())
