#!/usr/bin/env python3
"""Crash safety: kill the server with SIGKILL in the middle of large writes, again and again,
and check that every write is either fully there or fully absent. Run through scripts/crash-test.

Three directory states are known in advance, as digests of everything a client can see (groups
by remote id with name, parent, order, source and validity; members by openid with role,
nickname, avatar and groups; no database ids):

  A        snapshot A applied (replace mode)
  B        snapshot B applied (fewer groups, other members, other placements)
  A-       A after one batch delete of 100 empty leaf groups (the most one call takes)

Each round starts `contactsd serve` on the database, starts one write that moves between two of
those states (sync A->B, sync B->A, batch delete A->A-, sync A- ->A), kills the server with
SIGKILL after a random delay within the write's measured duration, runs `contactsd admin
check` (every invariant), and compares the digest with the state before and the state after.
Anything else is a failure.
"""

import argparse
import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def log(message):
    print(f"crash-test: {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, binary, db, workdir):
        self.binary, self.db, self.workdir = binary, db, workdir
        self.process = None
        self.base = None

    def start(self):
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        err = open(os.path.join(self.workdir, "server.err"), "ab")
        self.process = subprocess.Popen(
            [self.binary, "serve", "--db", self.db, "--listen", f"127.0.0.1:{port}",
             "--rate-limit", "0", "--token-rate-limit", "0"],
            stdout=subprocess.DEVNULL, stderr=err)
        for _ in range(300):
            if self.process.poll() is not None:
                sys.exit("crash-test: FAILED: the server exited at start")
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("crash-test: FAILED: the server did not start")

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process:
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()


def call(base, method, path, body=None, content_type="application/json", timeout=600):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


class Client:
    def __init__(self, app):
        self.app = app
        self.query = None

    def login(self, base):
        status, body = call(base, "GET", f"/api/oauth2/access_token?appid={self.app['appid']}"
                            f"&secret={self.app['secret']}&grant_type=client_credential")
        if status != 200:
            sys.exit(f"crash-test: FAILED: token call answered {status}: {body}")
        self.query = f"appid={self.app['appid']}&access_token={body['data']['access_token']}"

    def sync(self, base, snapshot):
        with open(snapshot, "rb") as file:
            return call(base, "POST", f"/api/contacts/teams/{self.app['team_id']}/sync?"
                        f"{self.query}", file.read(), "application/x-ndjson")

    def warm(self, base):
        """Have the server load the directory, so that the write starts at once."""
        call(base, "GET", f"/api/contacts/teams/{self.app['team_id']}/groups?per_page=1&"
             f"{self.query}")

    def delete(self, base, group_ids):
        return call(base, "POST", f"/api/contacts/teams/{self.app['team_id']}/groups/"
                    f"batch_delete?{self.query}", {"group_ids": group_ids})


def digest(db_file, team_id):
    """Everything a client sees of the directory, without database ids."""
    db = sqlite3.connect(db_file)
    try:
        remote = dict(db.execute(
            "SELECT id, remote_id FROM groups WHERE team_id = ?", (team_id,)))
        groups = sorted(
            (rid, name, remote.get(parent, ""), order, source)
            for rid, name, parent, order, source in db.execute(
                "SELECT remote_id, name, parent_id, sort_order, source FROM groups "
                "WHERE team_id = ? AND is_valid = 1", (team_id,)))
        openid = dict((uid, oid) for oid, uid in db.execute(
            "SELECT openid, user_id FROM app_users"))
        placed = {}
        for uid, gid in db.execute(
                "SELECT user_id, group_id FROM memberships WHERE team_id = ?", (team_id,)):
            placed.setdefault(uid, []).append(remote.get(gid, f"?{gid}"))
        members = sorted(
            (openid.get(uid, f"?{uid}"), role, nickname, avatar, sorted(placed.get(uid, [])))
            for uid, role, nickname, avatar in db.execute(
                "SELECT user_id, role, nickname, avatar FROM members WHERE team_id = ?",
                (team_id,)))
    finally:
        db.close()
    text = json.dumps([groups, members])
    return hashlib.sha256(text.encode()).hexdigest()[:16], len(groups), len(members)


def empty_leaves(db_file, team_id, limit):
    """Remote ids of `limit` valid groups with no valid child and no member (by remote id)."""
    db = sqlite3.connect(db_file)
    try:
        groups = list(db.execute(
            "SELECT id, parent_id, remote_id FROM groups WHERE team_id = ? AND is_valid = 1",
            (team_id,)))
        used = {parent for _, parent, _ in groups}
        used.update(gid for (gid,) in db.execute(
            "SELECT DISTINCT group_id FROM memberships WHERE team_id = ?", (team_id,)))
    finally:
        db.close()
    return sorted(remote for gid, _, remote in groups if gid not in used)[:limit]


def group_ids(db_file, team_id, remote_ids):
    db = sqlite3.connect(db_file)
    try:
        wanted = set(remote_ids)
        return [gid for gid, remote in db.execute(
            "SELECT id, remote_id FROM groups WHERE team_id = ? AND is_valid = 1", (team_id,))
            if remote in wanted]
    finally:
        db.close()


def admin_check(binary, db):
    result = subprocess.run([binary, "admin", "check", "--db", db], capture_output=True, text=True)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--groups", type=int, default=20_000)
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    here = os.path.dirname(os.path.abspath(__file__))
    generator = os.path.join(here, "..", "bench", "gen_snapshot.py")

    with tempfile.TemporaryDirectory(prefix="contactsd-crash.") as tmp:
        db_file = os.path.join(tmp, "crash.db")
        db = f"sqlite://{db_file}"
        app = json.loads(subprocess.run(
            [args.binary, "admin", "create-org", "--db", db, "--name", "Crash"],
            check=True, capture_output=True).stdout)
        team = app["team_id"]
        snapshots = {}
        for name, seed, scale in (("A", 1, 1.0), ("B", 2, 0.9)):
            path = os.path.join(tmp, f"{name}.ndjson")
            with open(path, "w") as out:
                subprocess.run([sys.executable, generator, "--groups",
                                str(int(args.groups * scale)), "--members",
                                str(int(args.members * scale)), "--seed", str(seed),
                                "--mode", "replace"], stdout=out, check=True)
            snapshots[name] = path

        server = Server(args.binary, db, tmp)
        leaves = []  # the groups the batch delete removes, by remote id (set once A exists)
        client = Client(app)
        states, durations = {}, {}

        def run(operation, state):
            """Start `operation` from `state`; returns (target state, thread, result holder)."""
            result = {}
            if operation == "delete":
                ids = group_ids(db_file, team, leaves)
                target = "A-"
                request = lambda: client.delete(server.base, ids)
            else:
                target = operation
                request = lambda: client.sync(server.base, snapshots[target])

            def work():
                try:
                    result["answer"] = request()
                except OSError as error:  # the server was killed mid-request
                    result["error"] = error

            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            return target, thread, result

        # Reference run without kills: the digests of A, B and A- and the write durations.
        log(f"reference run: {args.groups} groups, {args.members} members")
        server.start()
        client.login(server.base)
        for operation, state in (("A", None), ("B", "A"), ("A", "B"), ("delete", "A"),
                                 ("A", "A-")):
            started = time.monotonic()
            target, thread, result = run(operation, state)
            thread.join()
            status, body = result["answer"]
            if status != 200:
                sys.exit(f"crash-test: FAILED: {operation} answered {status}: {str(body)[:500]}")
            durations[(state, target)] = time.monotonic() - started
            states.setdefault(target, digest(db_file, team))
            if target == "A" and not leaves:
                leaves = empty_leaves(db_file, team, 100)
            if states[target] != digest(db_file, team):
                sys.exit(f"crash-test: FAILED: state {target} is not reproducible")
            log(f"{state or 'empty'} -> {target} in {durations[(state, target)]:.1f} s: "
                f"{states[target][1]} groups, {states[target][2]} members")
        server.stop()

        current = "A"
        moves = {"A": ["B", "delete"], "B": ["A"], "A-": ["A"]}
        outcomes = {"before": 0, "after": 0}
        for round_number in range(1, args.kills + 1):
            operation = rng.choice(moves[current])
            server.start()
            client.login(server.base)
            client.warm(server.base)
            target, thread, _ = run(operation, current)
            # A little past the measured duration, so that some kills land just after the commit.
            delay = rng.uniform(0.0, 1.3 * durations[(current, target)])
            time.sleep(delay)
            server.kill()
            thread.join()
            ok, report = admin_check(args.binary, db)
            if not ok:
                sys.exit(f"crash-test: FAILED: admin check after kill {round_number}:\n{report}")
            seen = digest(db_file, team)
            if seen == states[current]:
                outcome = "before"
            elif seen == states[target]:
                outcome, current = "after", target
            else:
                sys.exit(f"crash-test: FAILED: kill {round_number} during {current} -> {target} "
                         f"left a mixed state ({seen[1]} groups, {seen[2]} members)")
            outcomes[outcome] += 1
            log(f"kill {round_number}/{args.kills}: {operation} killed after {delay:.2f} s: "
                f"state {outcome} the write; admin check clean")
        print(f"crash-test: {args.kills} kills survived ({outcomes['before']} left the state "
              f"before the write, {outcomes['after']} the state after), 0 invariant violations, "
              f"0 mixed states; directory {args.groups} groups / {args.members} members")


if __name__ == "__main__":
    main()
