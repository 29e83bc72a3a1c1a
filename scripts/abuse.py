#!/usr/bin/env python3
"""Replay a hostile tenant's attacks on a real contactsd and check another tenant stays healthy.

Run through scripts/abuse. Everything is local (127.0.0.x), bounded in time and size, and stops
by itself. During every attack a bystander tenant lists its groups, creates one and asks
`/healthz`, every 20 ms: each of its calls must succeed, its page-1 listing's p99 and its
slowest write must stay under `--bystander-ms`. Prints a table of attack, measurement and
verdict; exits 1 when an attack succeeded or hurt the bystander.
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
import zlib

RESULTS = []


def record(attack, measured, ok):
    RESULTS.append((attack, measured, ok))
    print(f"scripts/abuse: {'pass' if ok else 'FAIL'}: {attack}: {measured}", file=sys.stderr,
          flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def envelope(base, method, path, body=None, content_type="application/json", headers=None,
             timeout=120, source="127.0.0.1"):
    """(envelope, seconds) of one call; the connection starts from `source`."""
    import http.client
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout,
                                      source_address=(source, 0))
    started = time.monotonic()
    all_headers = dict(headers or {})
    if data is not None:
        all_headers.setdefault("content-type", content_type)
    conn.request(method, path, body=data, headers=all_headers)
    answer = conn.getresponse()
    raw = answer.read()
    elapsed = time.monotonic() - started
    conn.close()
    try:
        return json.loads(raw), elapsed
    except ValueError:
        return {"code": f"HTTP {answer.status}", "raw": raw[:200].decode(errors="replace")}, elapsed


def ok(base, method, path, body=None, **kw):
    answer, elapsed = envelope(base, method, path, body, **kw)
    if answer.get("code") != "OK":
        raise SystemExit(f"scripts/abuse: setup call {method} {path.split('?')[0]}: {answer}")
    return answer.get("data"), elapsed


def error_type(answer):
    return (answer.get("error") or {}).get("type") or answer.get("code")


class Server:
    def __init__(self, binary, db, log, extra=()):
        self.binary, self.db, self.log, self.extra = binary, db, log, list(extra)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [binary, "serve", "--db", db, "--listen", f"127.0.0.1:{port}", *self.extra],
            stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
        for _ in range(300):
            if self.process.poll() is not None:
                raise SystemExit("scripts/abuse: the server exited at start")
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2).read()
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("scripts/abuse: the server did not start")

    def status(self, key):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) // 1024
        return 0

    def stop(self):
        self.process.terminate()
        self.process.wait()


def admin(binary, db, *args):
    out = subprocess.run([binary, "admin", *args, "--db", db], check=True,
                         capture_output=True).stdout
    return json.loads(out) if out.strip() else None


def token(base, org, source="127.0.0.1"):
    data, _ = ok(base, "GET", f"/api/oauth2/access_token?appid={org['appid']}"
                 f"&secret={org['secret']}&grant_type=client_credential", source=source)
    return f"appid={org['appid']}&access_token={data['access_token']}"


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


class Bystander:
    """Another tenant, untouched by every attack, measured during each: a loop of its page-1
    group listing, a group create and `/healthz` from 127.0.0.1, one round every 20 ms."""

    def __init__(self, server, org, limits):
        """`limits`: the page-1 p99 and the slowest write allowed, in ms."""
        self.server, self.org, self.limits = server, org, limits
        self.q = token(server.base, org)
        self.samples = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        team = self.org["team_id"]
        listing = f"/api/contacts/teams/{team}/groups?{self.q}&page=1&per_page=10"
        n = 0
        while not self.stop.is_set():
            samples = self.samples
            if samples is None:
                time.sleep(0.005)
                continue
            n += 1
            for kind, call in (
                    ("list", lambda: envelope(self.server.base, "GET", listing)),
                    ("write", lambda: envelope(self.server.base, "POST",
                                               f"/api/contacts/teams/{team}/groups?{self.q}",
                                               {"name": f"B {n}", "parent_id": 0})),
                    ("health", lambda: self.health())):
                try:
                    answer, elapsed = call()
                    good = answer.get("code") == "OK"
                except OSError as error:
                    good, elapsed = False, 0
                    answer = {"code": str(error)}
                samples[kind].append(elapsed)
                if not good:
                    samples["errors"].append(f"{kind}: {error_type(answer)}")
            time.sleep(0.02)

    def health(self):
        started = time.monotonic()
        with urllib.request.urlopen(self.server.base + "/healthz", timeout=5) as answer:
            code = "OK" if answer.status == 200 else f"HTTP {answer.status}"
        return {"code": code}, time.monotonic() - started

    def measure(self, attack, *args):
        """Run `attack(*args)` (which records its own verdict) while measuring; then record
        the bystander's verdict for it."""
        self.samples = {"list": [], "write": [], "health": [], "errors": []}
        before = len(RESULTS)
        try:
            attack(*args)
            deadline = time.monotonic() + 2
            while not self.samples["health"] and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            samples, self.samples = self.samples, None
        name = RESULTS[before][0] if len(RESULTS) > before else attack.__name__
        if not samples["list"]:
            record(f"  bystander during: {name}", "no round finished", False)
            return
        p99 = percentile(samples["list"], .99)
        slowest_write = max(samples["write"]) * 1000
        measured = (f"{len(samples['list'])} rounds: page 1 p50/p99 "
                    f"{percentile(samples['list'], .5):.1f}/{p99:.1f} ms, writes p50/max "
                    f"{percentile(samples['write'], .5):.1f}/{slowest_write:.0f} ms, /healthz "
                    f"{len(samples['health']) - sum(e.startswith('health') for e in samples['errors'])}"
                    f"/{len(samples['health'])} 200")
        if samples["errors"]:
            measured += f"; errors: {', '.join(sorted(set(samples['errors'])))}"
        record(f"  bystander during: {name}", measured,
               not samples["errors"] and p99 < self.limits[0] and slowest_write < self.limits[1])

    def close(self):
        self.stop.set()
        self.thread.join()


def snapshot(groups, members, moved=False):
    """A directory of `groups` groups and `members` members; `moved`: the same directory
    reorganised (every member renamed and placed in the next group)."""
    shift, suffix = (1, " moved") if moved else (0, "")
    lines = [json.dumps({"kind": "options", "mode": "upsert"})]
    lines += [json.dumps({"kind": "group", "remote_id": f"g{i}", "name": f"G {i}"})
              for i in range(groups)]
    lines += [json.dumps({"kind": "member", "openid": f"u{i}", "nickname": f"U {i}{suffix}",
                          "group_remote_ids": [f"g{(i + shift) % groups}"]})
              for i in range(members)]
    return ("\n".join(lines) + "\n").encode()


def gzip_bomb(prefix, repeat, size):
    """A gzip body of `prefix` then `repeat` up to `size` bytes, compressed as it is made."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(prefix.encode())]
    chunk = (repeat * (1 << 20 // len(repeat))).encode()
    for _ in range(size // len(chunk)):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.flush())
    return b"".join(parts)


def attack_bomb(server, victim_q, victim):
    bomb = gzip_bomb('{"members":[{"openid":"u","group_remote_ids":["x"', ',"x"', 128 << 20)
    before = server.status("VmHWM")
    answer, elapsed = envelope(server.base, "POST",
                               f"/api/contacts/teams/{victim['team_id']}/sync?{victim_q}",
                               bomb, "application/json", {"content-encoding": "gzip"})
    after = server.status("VmHWM")
    refused = error_type(answer) == "invalid_argument"
    record("gzip bomb sync (%d KB inflating to 128 MiB)" % (len(bomb) // 1024),
           f"{error_type(answer)} in {elapsed * 1000:.0f} ms; peak RSS {before} -> {after} MiB",
           refused and after - before < 64)


def attack_large_sync(args, server, attacker, attacker_q):
    body = snapshot(args.scan_groups, args.sync_members, moved=True)
    answer, elapsed = envelope(server.base, "POST",
                               f"/api/contacts/teams/{attacker['team_id']}/sync?{attacker_q}",
                               body, "application/x-ndjson", timeout=600)
    report = answer.get("data") or {}
    record(f"a sync moving and renaming {args.sync_members:,} members",
           f"{answer.get('code')} in {elapsed:.1f} s ({report.get('members_changed')} changed)",
           answer.get("code") == "OK" and report.get("members_changed") == args.sync_members)


def attack_quota(args, server, attacker, attacker_q):
    body = snapshot(101, 10)
    answer, elapsed = envelope(server.base, "POST",
                               f"/api/contacts/teams/{attacker['team_id']}/sync?{attacker_q}",
                               body, "application/x-ndjson")
    groups, _ = ok(server.base, "GET",
                   f"/api/contacts/teams/{attacker['team_id']}/groups?{attacker_q}&page=1"
                   "&per_page=1")
    refused = error_type(answer) == "group_quota_exceeded"
    record("sync of 101 groups over a 100-group quota",
           f"{error_type(answer)} in {elapsed * 1000:.0f} ms; groups stored: {groups['total']}",
           refused and groups["total"] == 0)


def attack_orgs(args, server):
    app = admin(args.binary, args.db, "create-platform-app", "--name", "Hostile platform")
    admin(args.binary, args.db, "set-quota", "--appid", app["appid"], "--max-orgs", "3")
    q = token(server.base, app)
    user, _ = ok(server.base, "POST", f"/api/sso/users?{q}", {"openid": "owner", "nickname": "O"})
    answers = []
    for n in range(6):
        answer, _ = envelope(server.base, "POST", f"/api/orgs?{q}",
                             {"name": f"Org {n}", "user_id": user["user_id"]})
        answers.append(error_type(answer))
    created = answers.count("OK")
    record("6 org creations by one platform app (quota 3)",
           f"{created} created, then {', '.join(sorted(set(answers) - {'OK'}))}",
           created == 3 and all(a == "org_quota_exceeded" for a in answers[3:]))


def victim_latencies(server, victim, victim_q, calls):
    path = f"/api/contacts/teams/{victim['team_id']}/groups?{victim_q}&page=1&per_page=10"
    latencies = []
    for _ in range(calls):
        answer, elapsed = envelope(server.base, "GET", path)
        if answer.get("code") != "OK":
            return None
        latencies.append(elapsed)
    return latencies


def attack_scans(args, server, attacker, attacker_q, victim, victim_q):
    team = attacker["team_id"]
    calm = victim_latencies(server, victim, victim_q, args.calls)
    stop = threading.Event()
    scans = [0]

    def scan(params):
        while not stop.is_set():
            envelope(server.base, "GET", f"/api/contacts/teams/{team}/groups?{attacker_q}"
                     f"&page=1&per_page=10&{params}")
            scans[0] += 1

    def write():
        # The attacker's own writes, which wait for its scans: never on a request worker.
        n = 0
        while not stop.is_set():
            n += 1
            envelope(server.base, "POST", f"/api/contacts/teams/{team}/groups?{attacker_q}",
                     {"name": f"Scan write {n}", "parent_id": 0})

    threads = [threading.Thread(target=scan, args=(p,)) for p in
               ("keyword=G%201", "keyword=g", "include_invalid=true&per_page=1000",
                "updated_since=2000-01-01T00:00:00Z&include_invalid=true",
                "recursive=true&parent_id=0&per_page=1000")]
    threads.append(threading.Thread(target=write))
    for thread in threads:
        thread.start()
    loaded = victim_latencies(server, victim, victim_q, args.calls)
    stop.set()
    for thread in threads:
        thread.join()
    healthy = calm is not None and loaded is not None
    measured = (f"{scans[0]} scans of {args.scan_groups:,} groups; other tenant's page 1 p50/p99 "
                f"{percentile(calm, .5):.1f}/{percentile(calm, .99):.1f} ms calm, "
                f"{percentile(loaded, .5):.1f}/{percentile(loaded, .99):.1f} ms during"
                if healthy else "the other tenant's listing failed")
    record(f"whole-directory scans in a loop ({len(threads) - 1} threads), and writes",
           measured,
           healthy and percentile(loaded, .99) < 1000)


def attack_trickle(args, server, attacker, attacker_q, victim, victim_q):
    host, port = server.base.removeprefix("http://").split(":")
    held = []
    for _ in range(args.trickles):
        s = socket.create_connection((host, int(port)))
        s.sendall((f"POST /api/contacts/teams/{attacker['team_id']}/sync?{attacker_q} HTTP/1.1"
                   f"\r\nhost: x\r\ncontent-type: application/x-ndjson\r\n"
                   f"content-length: 100000000\r\n\r\n").encode())
        held.append(s)
    for _ in range(3):
        time.sleep(1)
        for s in held:
            try:
                s.sendall(b"\n")
            except OSError:
                pass
    refused = 0
    for s in held:
        s.settimeout(0.2)
        try:
            refused += b"sync_in_progress" in s.recv(65536)
        except OSError:
            pass
    body = snapshot(5, 5)
    answer, elapsed = envelope(server.base, "POST",
                               f"/api/contacts/teams/{victim['team_id']}/sync?{victim_q}"
                               "&dry_run=true", body, "application/x-ndjson")
    for s in held:
        s.close()
    record(f"{args.trickles} trickling sync bodies; the other tenant's dry-run sync",
           f"{refused} refused at once (sync_in_progress); the other tenant's: "
           f"{answer.get('code')} in {elapsed * 1000:.0f} ms",
           answer.get("code") == "OK" and refused == args.trickles - 1)


def attack_lockout(server, victim):
    wrong = [error_type(envelope(server.base, "GET",
                                 f"/api/oauth2/access_token?appid={victim['appid']}"
                                 "&secret=wrong&grant_type=client_credential",
                                 source="127.0.0.2")[0]) for _ in range(100)]
    answer, elapsed = envelope(server.base, "GET",
                               f"/api/oauth2/access_token?appid={victim['appid']}"
                               f"&secret={victim['secret']}&grant_type=client_credential")
    limited = wrong.count("request_rate_limited")
    record("100 wrong-secret token calls for the other tenant's appid (from 127.0.0.2)",
           f"{wrong.count('invalid_credential')} invalid_credential, {limited} rate limited; "
           f"the owner: {answer.get('code')} in {elapsed * 1000:.0f} ms",
           answer.get("code") == "OK" and limited > 0)


def attack_flood(args, server):
    host, port = server.base.removeprefix("http://").split(":")
    held = []
    for _ in range(args.flood):
        try:
            s = socket.create_connection((host, int(port)), source_address=("127.0.0.3", 0))
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
            held.append(s)
        except OSError:
            break
    statuses = []
    latencies = []
    for _ in range(20):
        started = time.monotonic()
        try:
            with urllib.request.urlopen(server.base + "/healthz", timeout=5) as answer:
                statuses.append(answer.status)
        except OSError as error:
            statuses.append(str(error))
        latencies.append(time.monotonic() - started)
        for s in held:
            try:
                s.send(b"a")
            except OSError:
                pass
        time.sleep(0.05)
    for s in held:
        s.close()
    good = statuses.count(200)
    record(f"{len(held)} connections trickling partial headers from 127.0.0.3",
           f"/healthz from 127.0.0.1: {good}/20 answered 200, p99 "
           f"{percentile(latencies, .99):.1f} ms", good == 20)


def attack_freshness(args, server, victim):
    other = Server(args.binary, args.db, args.log, args.serve)
    try:
        first = token(server.base, victim)
        before, _ = envelope(other.base, "GET", f"/api/contacts/teams/{victim['team_id']}"
                             f"/groups?{first}&page=1&per_page=1")
        newer = token(other.base, victim)
        superseded, _ = envelope(server.base, "GET", f"/api/contacts/teams/{victim['team_id']}"
                                 f"/groups?{first}&page=1&per_page=1")
        rotated = admin(args.binary, args.db, "rotate-secret", "--appid", victim["appid"])
        after_rotation, _ = envelope(other.base, "GET", f"/api/contacts/teams/"
                                     f"{victim['team_id']}/groups?{newer}&page=1&per_page=1")
        old_secret, _ = envelope(server.base, "GET",
                                 f"/api/oauth2/access_token?appid={victim['appid']}"
                                 f"&secret={victim['secret']}&grant_type=client_credential")
        victim["secret"] = rotated["secret"]
        fresh = token(server.base, victim)
        works, _ = envelope(other.base, "GET", f"/api/contacts/teams/{victim['team_id']}"
                            f"/groups?{fresh}&page=1&per_page=1")
    finally:
        other.stop()
    checks = [before.get("code") == "OK", error_type(superseded) == "invalid_token",
              error_type(after_rotation) == "invalid_token",
              error_type(old_secret) == "invalid_credential", works.get("code") == "OK"]
    record("two processes on one database: superseded token, rotated secret",
           f"token of A on B: {before.get('code')}; superseded on A: {error_type(superseded)}; "
           f"after rotation on B: {error_type(after_rotation)}; old secret on A: "
           f"{error_type(old_secret)}; new token on B: {works.get('code')}", all(checks))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bystander-ms", type=float, nargs=2, default=(50, 500),
                        metavar=("P99", "WRITE"),
                        help="the bystander's page-1 p99 and slowest write must stay under "
                             "these (ms)")
    args = parser.parse_args()
    args.scan_groups, args.calls = (5_000, 100) if args.quick else (50_000, 400)
    args.sync_members = 50_000 if args.quick else 500_000
    args.trickles, args.flood = (20, 150) if args.quick else (50, 300)
    args.cache_mb = 256
    args.serve = ["--rate-limit", "0", "--cache-memory-mb", str(args.cache_mb)]

    attacker = admin(args.binary, args.db, "create-org", "--name", "Hostile", "--plan", "business")
    victim = admin(args.binary, args.db, "create-org", "--name", "Victim", "--plan", "business")
    quota_org = admin(args.binary, args.db, "create-org", "--name", "Quota", "--plan", "business")
    bystander_org = admin(args.binary, args.db, "create-org", "--name", "Bystander",
                          "--plan", "business")
    admin(args.binary, args.db, "set-quota", "--org-id", str(quota_org["org_id"]),
          "--max-groups", "100")
    server = Server(args.binary, args.db, args.log, args.serve)
    bystander = None
    try:
        attacker_q, victim_q = token(server.base, attacker), token(server.base, victim)
        ok(server.base, "POST", f"/api/contacts/teams/{victim['team_id']}/sync?{victim_q}",
           snapshot(50, 200), content_type="application/x-ndjson")
        bystander = Bystander(server, bystander_org, args.bystander_ms)
        measure = bystander.measure
        # The bomb first, while the server's peak is still that of a small directory.
        measure(attack_bomb, server, victim_q, victim)
        ok(server.base, "POST", f"/api/contacts/teams/{attacker['team_id']}/sync?{attacker_q}",
           snapshot(args.scan_groups, args.sync_members), content_type="application/x-ndjson",
           timeout=600)
        measure(attack_large_sync, args, server, attacker, attacker_q)
        measure(attack_quota, args, server, quota_org, token(server.base, quota_org))
        measure(attack_orgs, args, server)
        measure(attack_scans, args, server, attacker, attacker_q, victim, victim_q)
        measure(attack_trickle, args, server, attacker, attacker_q, victim, victim_q)
        measure(attack_lockout, server, victim)
        measure(attack_flood, args, server)
        measure(attack_freshness, args, server, victim)
        if server.process.poll() is not None:
            record("the server", "exited during the attacks", False)
        else:
            peak = server.status("VmHWM")
            record("the server's peak RSS (VmHWM) over all attacks",
                   f"{peak} MiB (cache budget {args.cache_mb} MiB + 256 MiB allowed)",
                   peak < args.cache_mb + 256)
    finally:
        if bystander:
            bystander.close()
        server.stop()
    with open(args.log, errors="replace") as log:
        if "panicked" in log.read():
            record("the server's log", "a panic", False)
    width = max(len(a) for a, _, _ in RESULTS)
    print(f"| {'attack'.ljust(width)} | result | measured |")
    print(f"|{'-' * (width + 2)}|--------|----------|")
    for attack, measured, passed in RESULTS:
        print(f"| {attack.ljust(width)} | {'pass' if passed else 'FAIL'} | {measured} |")
    failed = [a for a, _, passed in RESULTS if not passed]
    if failed:
        print(f"scripts/abuse: {len(failed)} attack(s) not contained", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
