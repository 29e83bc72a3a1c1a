#!/usr/bin/env python3
"""The directory sync benchmark: time and peak memory of `contactsd sync` on a large snapshot.

Run through bench/sync, which builds the release binary first. For each database URL given,
it creates an org on that (empty) database, then runs:

1. a first sync of the snapshot into the empty directory (upsert);
2. a second, identical sync in replace mode (nothing changes: the steady state of a mirror);
3. a third sync in replace mode of a snapshot in which 1% of the groups are renamed and 1% of
   the members change group (a typical day's changes).

Each is one `contactsd sync` process; the figures are its wall time (reading and parsing the
file included), the `elapsed_ms` of its report (validation, planning and writing), and its peak
RSS (from wait4). Results go to a Markdown file.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

TARGETS = {
    "first": (30.0, "first sync into an empty directory"),
    "identical": (10.0, "second, identical sync (replace, nothing changes)"),
    "changed": (None, "replace with 1% of groups renamed and 1% of members moved"),
}
PEAK_TARGET_MIB = 1024


def run_measured(binary, db, team_id, path, mode):
    """Run one sync and return (wall seconds, report, peak RSS in MiB)."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        out = os.open(path + ".report", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(path + ".stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.execv(binary, [binary, "sync", "--db", db, "--team-id", str(team_id), "--file", path,
                          "--mode", mode, "--allow-mass-delete"])
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        with open(path + ".stderr") as err:
            sys.exit(f"bench/sync: contactsd sync failed:\n{err.read()[-3000:]}")
    with open(path + ".report") as out:
        report = json.load(out)
    return wall, report, usage.ru_maxrss / 1024


def create_org(binary, db):
    out = subprocess.run([binary, "admin", "create-org", "--db", db, "--name", "Bench"],
                         check=True, capture_output=True).stdout
    return json.loads(out)["team_id"]


def changed_copy(source, target, every=100):
    """The snapshot with every `every`-th group renamed and every `every`-th member moved to
    another member's groups. Returns what a sync of it after the source must report: the
    counts of groups and members, of groups renamed and of members whose groups changed."""
    groups = members = renamed = moved = 0
    previous_groups = None
    with open(source) as src, open(target, "w") as dst:
        for line in src:
            row = json.loads(line)
            if row.get("kind") == "group":
                groups += 1
                if groups % every == 0:
                    row["name"] = row["name"] + " (renamed)"
                    renamed += 1
            elif row.get("kind") == "member":
                members += 1
                if members % every == 0 and previous_groups is not None:
                    mine = row["group_remote_ids"]
                    row["group_remote_ids"], previous_groups = previous_groups, mine
                    moved += set(mine) != set(row["group_remote_ids"])
                else:
                    previous_groups = row["group_remote_ids"]
            dst.write(json.dumps(row) + "\n")
    return {"groups": groups, "members": members, "renamed": renamed, "moved": moved}


def expected_reports(counts):
    """The report each sync of `bench` must give, field by field (fields not named are 0)."""
    groups, members = counts["groups"], counts["members"]
    return {
        "first": {"groups_created": groups, "members_added": members},
        "identical": {"groups_unchanged": groups, "members_unchanged": members},
        "changed": {"groups_renamed": counts["renamed"],
                    "groups_unchanged": groups - counts["renamed"],
                    "members_changed": counts["moved"],
                    "members_unchanged": members - counts["moved"]},
    }


COUNTS = ("groups_created", "groups_renamed", "groups_moved", "groups_reordered",
          "groups_deleted", "groups_unchanged", "members_added", "members_changed",
          "members_removed", "members_unchanged")


def bench(binary, db, snapshot, changed, expected):
    team_id = create_org(binary, db)
    results = {}
    for name, path, mode in (("first", snapshot, "upsert"), ("identical", snapshot, "replace"),
                             ("changed", changed, "replace")):
        wall, report, peak = run_measured(binary, db, team_id, path, mode)
        print(f"bench/sync: {name}: {wall:.1f} s wall, {report['elapsed_ms'] / 1000:.1f} s "
              f"in the service, peak {peak:.0f} MiB: {json.dumps(report)}", file=sys.stderr)
        wrong = {field: (report.get(field), expected[name].get(field, 0)) for field in COUNTS
                 if report.get(field) != expected[name].get(field, 0)}
        if wrong:
            sys.exit(f"bench/sync: FAILED: the {name} sync reported (got, expected) {wrong}")
        results[name] = (wall, report, peak)
    return results


def verdict(value, target):
    if target is None:
        return ""
    return "met" if value <= target else "**not met**"


def file_system(url):
    """The type of the file system an SQLite URL's file is on, as `df` names it (ext4, tmpfs):
    an fsync on tmpfs returns at once, so a figure means little without it."""
    directory = os.path.dirname(url.removeprefix("sqlite://"))
    out = subprocess.run(["df", "--output=fstype", directory], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--groups", type=int, required=True)
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--db", action="append", default=[],
                        help="backend=URL, e.g. sqlite=sqlite:///tmp/x.db (repeatable)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--command", required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="contactsd-sync-bench.") as tmp:
        snapshot = os.path.join(tmp, "snapshot.ndjson")
        changed = os.path.join(tmp, "changed.ndjson")
        here = os.path.dirname(os.path.abspath(__file__))
        started = time.monotonic()
        with open(snapshot, "w") as out:
            subprocess.run([sys.executable, os.path.join(here, "gen_snapshot.py"), "--groups",
                            str(args.groups), "--members", str(args.members)],
                           stdout=out, check=True)
        expected = expected_reports(changed_copy(snapshot, changed))
        print(f"bench/sync: snapshots generated in {time.monotonic() - started:.1f} s "
              f"({os.path.getsize(snapshot) / 2**20:.0f} MiB)", file=sys.stderr)
        backends = []
        where = ""
        for spec in args.db:
            backend, _, url = spec.partition("=")
            if backend == "sqlite":
                where = f" (SQLite's file on {file_system(url)}, in `TMPDIR`)"
            backends.append((backend, bench(args.binary, url, snapshot, changed, expected)))

    lines = [
        "# Sync benchmark",
        "",
        f"`{args.command}` on {os.cpu_count()} cores ({platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}): a snapshot of {args.groups:,} groups and "
        f"{args.members:,} members made by `bench/gen_snapshot.py` (a 10,000-child parent, a "
        "15-deep chain, a balanced tree, one group with a twentieth of the members, openids in no "
        "order), applied "
        f"with `contactsd sync` on a fresh database{where}. *Wall* is the whole process (reading and "
        "parsing the NDJSON file included); *service* is the report's `elapsed_ms` (loading, "
        "validation, planning and the write transaction); *peak* is the process's peak RSS.",
        "",
        "The targets: on SQLite, at most 30 s for the first sync and 10 s for the "
        "identical one, peak under 1 GiB; on PostgreSQL, within 2× of those times (60 s and "
        "20 s). *vs SQLite* compares with the SQLite run of the same table.",
        "",
        "| backend | sync | wall s | service s | peak MiB | vs SQLite | target | result | report |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    sqlite_results = dict(backends).get("sqlite")
    for backend, results in backends:
        for name, (wall, report, peak) in results.items():
            target, label = TARGETS[name]
            if target is not None and backend == "postgres":
                target = 2 * target
            goal = f"≤ {target:.0f} s, peak < {PEAK_TARGET_MIB} MiB" if target is not None else ""
            met = verdict(wall, target)
            if met and peak >= PEAK_TARGET_MIB:
                met = "**not met** (memory)"
            versus = (f"{wall / sqlite_results[name][0]:.1f}×"
                      if sqlite_results and backend != "sqlite" else "")
            counts = {k: v for k, v in report.items()
                      if isinstance(v, int) and v and k != "elapsed_ms"}
            lines.append(f"| {backend} | {label} | {wall:.1f} | {report['elapsed_ms'] / 1000:.1f} "
                         f"| {peak:.0f} | {versus} | {goal} | {met} | `{json.dumps(counts)}` |")
    lines += ["", "Rerun with the command above; `bench/sync --smoke` is the quick form that CI "
              "runs (its figures mean nothing).", ""]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as out:
        out.write("\n".join(lines))
    print(f"bench/sync: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
