#!/usr/bin/env python3
"""The SCIM provisioning benchmark: a directory pushed by an identity provider, one request at a
time, and read back the way a provider checks it.

Run through bench/scim, which builds the release binary first. It creates an org and a SCIM
token on a fresh SQLite file (or the empty database given), starts `contactsd serve` and runs,
each phase at a fixed concurrency (one keep-alive connection per worker, all driven by the
load generator examples/scim_load.rs on one thread, so that the client takes little of the
machine):

1. `POST /Users`, one request per user (userName, name, displayName, emails, active);
2. `POST /Groups`, one request per group (displayName, externalId);
3. `PATCH /Groups/{id}` with `{"op":"add","path":"members","value":[{"value": user}]}`, one
   request per user, which places every user in one group (Okta's shape of a membership push);
4. the full re-read: `GET /Users?filter=userName eq "…"` for every user (the existence check
   a provider makes before a create) and `GET /Groups/{id}?excludedAttributes=members` for
   every group.

Figures per phase: requests, requests/s, p50 and p99 latency (client side), errors (any answer
other than the expected status, or a socket error). Every phase's answers are checked (ids,
one match per lookup) and at the end the counts are (`totalResults` of the users and groups,
the members of every group through the WeSurvey API's count). No timed assertion: the smoke
mode fails on any error or wrong count, never on a timing.
"""

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
import urllib.parse

SCIM_JSON = "application/scim+json"
WRITES_TARGET = 2000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin(binary, db, *args):
    out = subprocess.run([binary, "admin", *args, "--db", db], check=True, capture_output=True,
                         env={**os.environ, "CONTACTSD_LOG": "warn"})
    return json.loads(out.stdout)


class Failure(Exception):
    pass


def run_phase(client, port, token, concurrency, requests):
    """Send `requests` (method, path, body, expected status) through the load generator
    (`client`, examples/scim_load.rs) over `concurrency` keep-alive connections; returns
    (latencies in s, elapsed s, errors, answers by index)."""
    lines = "".join(json.dumps([method, path, body]) + "\n"
                    for method, path, body, _ in requests)
    out = subprocess.run([client, f"127.0.0.1:{port}", token, str(concurrency)],
                         input=lines.encode(), capture_output=True, check=True).stdout
    first, *rest = out.decode().splitlines()
    latencies = [0.0] * len(requests)
    answers = [None] * len(requests)
    errors = []
    for index, ((method, path, _, expected), line) in enumerate(zip(requests, rest)):
        status, latencies[index], data = json.loads(line)
        if status != expected:
            errors.append(f"{method} {path}: {status or None} {data[:300]!r}")
            continue
        answers[index] = json.loads(data) if data else None
    if len(rest) != len(requests):
        errors.append(f"{len(rest)} answers to {len(requests)} requests")
    return latencies, json.loads(first)["elapsed"], errors, answers


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


def quote(value):
    return urllib.parse.quote(value, safe="")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--groups", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    args.load_before = ", ".join(f"{load:.2f}" for load in os.getloadavg())

    org = admin(args.binary, args.db, "create-org", "--name", "SCIM bench", "--plan", "business")
    team = org["team_id"]
    token = admin(args.binary, args.db, "scim-token", "create", "--team-id", str(team))["token"]
    port = free_port()
    with open(args.log, "w") as log:
        server = subprocess.Popen(
            [args.binary, "serve", "--db", args.db, "--listen", f"127.0.0.1:{port}",
             "--rate-limit", "0", "--token-rate-limit", "0"], stdout=subprocess.DEVNULL,
            stderr=log, env={**os.environ, "CONTACTSD_LOG": os.environ.get("CONTACTSD_LOG", "warn")})
    try:
        for _ in range(600):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        report = bench(args, port, token, org, server.pid)
    finally:
        server.terminate()
        server.wait()
    with open(args.log) as log:
        if "panicked" in log.read():
            report["errors"].append("the server panicked (see its log)")
    write(args, report)
    for error in report["errors"][:20]:
        print(f"bench/scim: {error}", file=sys.stderr)
    if report["errors"]:
        sys.exit(1)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_seconds():
    """CPU seconds of the finished load generators (this script's finished children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench(args, port, token, org, pid):
    users = [f"user{n:06d}@example.com" for n in range(args.users)]
    groups = [f"Group {n:05d}" for n in range(args.groups)]
    phases, errors = [], []

    def phase(name, kind, requests):
        cpu, client = cpu_seconds(pid), client_seconds()
        latencies, elapsed, failed, answers = run_phase(args.client, port, token,
                                                        args.concurrency, requests)
        phases.append({"name": name, "kind": kind, "requests": len(requests), "elapsed": elapsed,
                       "errors": len(failed), "p50": percentile(latencies, 0.50),
                       "p99": percentile(latencies, 0.99),
                       "cpu": cpu_seconds(pid) - cpu, "client": client_seconds() - client})
        errors.extend(failed)
        return answers

    answers = phase("POST /Users", "write", [
        ("POST", "/scim/v2/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name, "externalId": f"ext-{n}", "active": True,
            "displayName": f"User {n}", "name": {"givenName": "User", "familyName": str(n)},
            "emails": [{"value": name, "type": "work", "primary": True}],
        }, 201) for n, name in enumerate(users)])
    user_ids = [a["id"] if a else None for a in answers]
    answers = phase("POST /Groups", "write", [
        ("POST", "/scim/v2/Groups", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name, "externalId": f"group-{n}",
        }, 201) for n, name in enumerate(groups)])
    group_ids = [a["id"] if a else None for a in answers]
    if errors:
        return {"phases": phases, "errors": errors, "org": org}
    phase("PATCH /Groups members (add one user)", "write", [
        ("PATCH", f"/scim/v2/Groups/{group_ids[n % len(group_ids)]}"
                  "?excludedAttributes=members", {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
        }, 200) for n, user_id in enumerate(user_ids)])
    answers = phase("GET /Users?filter=userName eq", "read", [
        ("GET", "/scim/v2/Users?filter=" + quote(f'userName eq "{name}"'), None, 200)
        for name in users])
    for name, user_id, answer in zip(users, user_ids, answers):
        if answer and [r["id"] for r in answer.get("Resources", [])] != [user_id]:
            errors.append(f"lookup of {name} found {answer.get('Resources')!r:.200}")
    answers = phase("GET /Groups/{id}", "read", [
        ("GET", f"/scim/v2/Groups/{group_id}?excludedAttributes=members", None, 200)
        for group_id in group_ids])
    for group_id, answer in zip(group_ids, answers):
        if answer and answer.get("id") != group_id:
            errors.append(f"group {group_id} read back as {answer!r:.200}")

    # The counts, as a provider's full sync and a WeSurvey client see them.
    _, _, failed, answers = run_phase(args.client, port, token, 1, [
        ("GET", "/scim/v2/Users?count=1", None, 200),
        ("GET", "/scim/v2/Groups?count=1&excludedAttributes=members", None, 200)]
        + [("GET", f"/scim/v2/Groups/{group_id}", None, 200) for group_id in group_ids])
    errors.extend(failed)
    if not failed:
        if answers[0]["totalResults"] != args.users:
            errors.append(f"{answers[0]['totalResults']} users, expected {args.users}")
        if answers[1]["totalResults"] != args.groups:
            errors.append(f"{answers[1]['totalResults']} groups, expected {args.groups}")
        placed = sum(len(answer.get("members", [])) for answer in answers[2:])
        if placed != args.users:
            errors.append(f"{placed} group memberships, expected {args.users}")
    return {"phases": phases, "errors": errors, "org": org}


def write(args, report):
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    lines = []
    w = lines.append
    w("# SCIM provisioning benchmark")
    w("")
    w("Produced by `bench/scim`; rerun it to replace this file. What it does is "
      "described after the results.")
    w("")
    w("## Results")
    w("")
    w(f"- Command: `{args.command}`")
    w(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    w(f"- Machine: {os.cpu_count()} cores, Linux {platform.release()}, load average "
      f"{args.load_before} before the run; the load generator (`examples/scim_load.rs`: one "
      "thread, one keep-alive connection per worker) runs on the same cores as the server")
    w(f"- Database: {'PostgreSQL' if args.db.startswith('postgres') else 'SQLite (embedded)'}")
    w(f"- Directory: {args.users:,} users, {args.groups:,} groups, every user placed in one "
      f"group; concurrency {args.concurrency}")
    w("")
    w("| phase | requests | requests/s | p50 ms | p99 ms | errors | server CPU s | client CPU s |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for p in report["phases"]:
        w(f"| {p['name']} | {p['requests']:,} | {p['requests'] / p['elapsed']:,.0f} | "
          f"{p['p50'] * 1000:.2f} | {p['p99'] * 1000:.2f} | {p['errors']} | {p['cpu']:.1f} | "
          f"{p['client']:.1f} |")
    writes = [p for p in report["phases"] if p["kind"] == "write"]
    if writes:
        count = sum(p["requests"] for p in writes)
        elapsed = sum(p["elapsed"] for p in writes)
        rate = count / elapsed
        met = "**met**" if rate >= WRITES_TARGET else "**not met**"
        w("")
        w(f"All writes: {count:,} in {elapsed:.1f} s, **{rate:,.0f} SCIM writes/s** "
          f"(target: at least {WRITES_TARGET:,} on SQLite: {met}).")
    w("")
    w(f"Errors: {len(report['errors'])}.")
    w("")
    w("## What is measured")
    w("")
    w("- `bench/scim` builds release, creates an org (`admin create-org --plan business`) and a "
      "SCIM token (`admin scim-token create`) on a fresh SQLite file (or the empty database in "
      "`$BENCH_DATABASE_URL`), starts `contactsd serve --rate-limit 0` and runs the phases one "
      "after another, each at the same number of requests in flight (one keep-alive connection each, all "
      "driven from one thread by the load generator `examples/scim_load.rs`, built in "
      "release; `bench/scim.py` makes the requests and checks the answers).")
    w("- Writes, one request each, as a provider sends them: `POST /Users` (userName, "
      "externalId, name, displayName, a work email, active), `POST /Groups` (displayName, "
      "externalId), then for every user one `PATCH /Groups/{id}?excludedAttributes=members` "
      "with `{\"op\":\"add\",\"path\":\"members\",\"value\":[{\"value\":id}]}`, "
      "user n going to group n mod groups.")
    w("- The re-read: `GET /Users?filter=userName eq \"…\"` for every user (each must find "
      "exactly that user) and `GET /Groups/{id}?excludedAttributes=members` for every group.")
    w("- Then the counts are checked: `totalResults` of `/Users` and `/Groups`, and the members "
      "of every group add up to the users.")
    w("- Latencies are the client's (request sent to answer read); requests/s is the phase's "
      "requests over its wall time (from the first request sent to the last answer read); "
      "server CPU is utime + stime of the server process over the phase, client CPU that of "
      "the load generator (including its start, the reading of the requests and the writing "
      "of the answers, which the wall time leaves out). No timed assertions: the smoke run (`bench/scim --smoke`, 1,000 users and 100 "
      "groups, in CI) fails on any unexpected status, lookup result or count, or a panic in "
      "the server's log.")
    w("")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
