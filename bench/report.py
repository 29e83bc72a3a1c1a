#!/usr/bin/env python3
"""Render bench/run's results as markdown (stdout).

Usage: report.py RESULTS.tsv KEY=VALUE...   (called by bench/run)

RESULTS.tsv rows: name, kind (read/write/ceiling), requests, duration_us, errors,
not_ok, p50_us, p99_us, server_cpu_ticks.
"""

import datetime
import os
import subprocess
import sys


def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def mb(kib: str) -> float:
    """A /proc figure in KiB as MB of 10^6 bytes."""
    return int(kib) * 1024 / 1e6


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


# Recorded by hand from two runs of bench/run (its results table is regenerated; this is not).
DURABILITY = """## Durable writes: `synchronous=FULL` against `NORMAL`

SQLite commits with `synchronous=FULL` by default since 2026-12-03 (an acknowledged write survives
a power loss); `--sqlite-synchronous normal` gives the earlier behaviour. The write scenarios,
run back to back on the full directory (100,000 groups, 1,000,000 members), 32 connections,
10 s each, 2026-12-03 02:05-02:09 UTC, on a machine shared with other work (compilers and other
benchmarks were running, so the figures are noisier than the table above):

```sh
BENCH_ONLY='create group|move group|add member' CONTACTSD_SQLITE_SYNCHRONOUS=normal bench/run
BENCH_ONLY='create group|move group|add member' CONTACTSD_SQLITE_SYNCHRONOUS=full bench/run
```

| scenario | `normal`: requests/s | p50 / p99 ms | `full`: requests/s | p50 / p99 ms | `full` / `normal` |
|---|---:|---:|---:|---:|---:|
| create group | 2,088 | 13.27 / 108.80 | 1,611 | 17.61 / 45.93 | 77% |
| move group (alternating parents) | 3,656 | 7.47 / 32.93 | 1,708 | 16.61 / 46.67 | 47% |
| add member | 1,424 | 20.72 / 54.79 | 966 | 31.46 / 63.21 | 68% |

No errors in either run. Each write is its own transaction, so `full` adds one sync of the WAL
file per write; the sync of the whole directory took 24.8 s (`normal`) and 25.7 s (`full`), one
transaction either way. Since then concurrent writes are committed together (one sync for
many; "Group commit" below); the streaming sync is left open.
"""


GROUP_COMMIT = r"""## Group commit

Concurrent directory writes are committed together (docs/DESIGN.md, "Write path"). Measured on
2026-12-03 with the smoke-sized directory (1,000 groups, 10,000 members; the write scenarios
do not depend much on its size), `synchronous=FULL`, 32 connections, 5 s per scenario, the
same machine, with other builds and test suites running on the same two cores (load average
about 7): read the ratios, not the absolute figures. "after" was run twice (second run in
brackets), "before" once:

```
cargo build --release --bin contactsd --example ceiling    # the build before, copied to /tmp/contactsd-before
BENCH_BINARY=/tmp/contactsd-before BENCH_DURATION=5 BENCH_PROVISION_USERS=3000 \
  BENCH_ONLY='create group|move group|add member|provisioning burst' \
  CONTACTSD_SQLITE_SYNCHRONOUS=full BENCH_OUT=/tmp/before.md bench/run --smoke
BENCH_DURATION=5 BENCH_PROVISION_USERS=3000 \
  BENCH_ONLY='create group|move group|add member|provisioning burst' \
  CONTACTSD_SQLITE_SYNCHRONOUS=full BENCH_OUT=/tmp/after.md bench/run --smoke
```

| SQLite, FULL | before: one commit per write | after: group commit | after / before |
|---|---:|---:|---:|
| create group | 784/s (p50 31.5 ms, p99 163 ms) | 4,117/s (p50 6.6 ms, p99 47 ms) [5,262/s, p99 17 ms] | 5.3× [6.7×] |
| move group | 1,014/s (p50 25.1 ms, p99 191 ms) | 3,535/s (p50 6.6 ms, p99 45 ms) [5,136/s, p99 18 ms] | 3.5× [5.1×] |
| add member | 681/s (p50 36.8 ms, p99 401 ms) | 1,470/s (p50 16.6 ms, p99 129 ms) [1,692/s, p99 48 ms] | 2.2× [2.5×] |
| provisioning burst, 3,000 users (6,000 requests) | 10.35 s | 6.22 s [4.55 s] | 1.7× [2.3×] |

No errors in any run. The provisioning burst's client is Python (bench/provision.py) on the
same cores and its registrations are single writes outside the directory (each its own
commit), so it gains less than the directory writes. Not measured yet: `synchronous=NORMAL`,
PostgreSQL (`BENCH_DATABASE_URL`), the full-size directory, a second "before" run.
"""


def main() -> None:
    rows_path = sys.argv[1]
    env = dict(arg.split("=", 1) for arg in sys.argv[2:])
    tick = float(env["CLK_TCK"])
    rows = []
    with open(rows_path) as f:
        for line in f:
            name, kind, req, dur, err, serr, p50, p99, ticks = line.rstrip("\n").split("\t")
            req, dur, err, serr = int(req), int(dur), int(err), int(serr)
            cpu = int(ticks) / tick
            rows.append({
                "name": name, "kind": kind, "req": req, "rps": req / (dur / 1e6),
                "err": err, "serr": serr, "p50": int(p50) / 1000, "p99": int(p99) / 1000,
                "cpu": cpu, "per_cpu": (req / cpu) if cpu > 0 else float("inf"),
            })
    ceiling = next(r for r in rows if r["kind"] == "ceiling")
    scen = [r for r in rows if r["kind"] != "ceiling"]
    by_name = {r["name"]: r for r in scen}

    out = []
    w = out.append
    smoke = env["MODE"] == "smoke"
    w("# Benchmarks" + (" (smoke run: not representative)" if smoke else ""))
    w("")
    if smoke:
        w("Smoke mode checks that `bench/run` works (CI); its numbers are too short and too small "
          "to mean anything. The full results live in `docs/BENCHMARKS.md`.")
        w("")
    else:
        w("Produced by `bench/run`; rerun it to replace this file. What it does, what "
          "each scenario measures and how to read the numbers is described after the results.")
        w("")
    w("## Results")
    w("")
    w(f"- Command: `{env['COMMAND']}`")
    if env.get("ONLY"):
        w(f"- Only the scenarios whose name matches `{env['ONLY']}` (`BENCH_ONLY`)")
    w(f"- Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    w(f"- Machine: {sh('nproc')} cores ({cpu_model()}), {sh('uname -sr')}; "
      "the load generator runs on the same cores as the server (loopback)")
    where = ""
    if env["DB_KIND"] != "PostgreSQL":
        # fsync costs nothing on tmpfs: durable writes measured there are not a disk's.
        where = f", its file on {env['DB_FS']} (`TMPDIR`)"
    w(f"- Database: {env['DB_KIND']}{where}")
    w(f"- Load: wrk ({sh('wrk -v 2>&1 | head -1').split(' [')[0] or 'wrk'}), "
      f"{env['CONNS']} connections, {env['THREADS']} threads, {env['DURATION']} s per scenario, "
      "a valid token (`appid` + `access_token` in the query) on every call, rate limits off")
    w(f"- Directory: {int(env['NGROUPS']):,} groups, {int(env['NMEMBERS']):,} members "
      f"(`bench/gen_snapshot.py`, {env['GEN_S']} s to generate, {env['SNAP_MB']} MB of NDJSON)")
    w(f"- Loading: **{env['LOAD_S']} s** for one `POST .../sync` of the whole snapshot "
      f"(server peak RSS during the sync: {mb(env['SYNC_HWM_KB']):.0f} MB); "
      f"report: `{env['SYNC_REPORT']}`")
    w(f"- After a restart on the loaded database, the first listing (loading the directory "
      f"into memory) took {env['COLD_S']} s")
    w(f"- Server peak RSS (VmHWM) of the restarted server with the directory loaded, after the "
      f"read scenarios: **{mb(env['READ_HWM_KB']):.0f} MB**; after the write scenarios too (they "
      f"add groups and memberships): {mb(env['HWM_KB']):.0f} MB (current RSS "
      f"{mb(env['RSS_KB']):.0f} MB). MB here are 10^6 bytes.")
    if env.get("PANICS", "0") not in ("", "0"):
        w(f"- The server log holds {env['PANICS']} panics")
    w("")
    w("| scenario | requests/s | p50 ms | p99 ms | errors | server CPU s | calls per server CPU-s | vs ceiling |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in scen + [ceiling]:
        ratio = r["rps"] / ceiling["rps"] if ceiling["rps"] else 0
        w(f"| {r['name']} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
          f"{r['err']:,} of {r['req']:,} | {r['cpu']:.2f} | {r['per_cpu']:,.0f} | "
          f"{'' if r is ceiling else f'{ratio:.0%}'} |")
    w("")
    w("errors = answers whose envelope `code` is not `OK` plus socket errors and timeouts; "
      "server CPU = "
      "utime + stime of the server process over the run (`/proc/<pid>/stat`); vs ceiling = "
      "requests/s over the ceiling server's requests/s under the same load.")
    w("")
    if env.get("PROVISION"):
        users, secs, errors = env["PROVISION"].split()
        w(f"Provisioning burst (`bench/provision.py`): {int(users):,} users registered and each "
          f"added to a group, one request each ({2 * int(users):,} requests), "
          f"{env['CONNS']} connections: **{secs} s** in all ({2 * int(users) / float(secs):,.0f} "
          f"requests/s), {errors} errors. The client is Python threads on the same cores.")
        w("")

    # Targets, on a run of every scenario only.
    if not env.get("ONLY"):
        def met(ok: bool) -> str:
            return "**met**" if ok else "**not met**"

        reads = [r for r in scen if r["kind"] == "read"]
        page1 = scen[0]
        w("## Targets (2-core machine, embedded SQLite)")
        w("")
        w("| target | measured | |")
        w("|---|---|---|")
        ratio1 = page1["rps"] / ceiling["rps"]
        w(f"| list groups page 1: ≥ 12,700 calls per server CPU-second | {page1['per_cpu']:,.0f} | "
          f"{met(page1['per_cpu'] >= 12700)} |")
        w(f"| list groups page 1: ≥ 50% of the ceiling's throughput | {ratio1:.0%} | "
          f"{met(ratio1 >= 0.5)} |")
        for deep_i, first_i in ((1, 0), (3, 2), (7, 6)):
            deep, first = scen[deep_i], scen[first_i]
            w(f"| {deep['name']}: p99 ≤ 2× p99 of page 1 | {deep['p99']:.2f} ms vs "
              f"{first['p99']:.2f} ms ({deep['p99'] / first['p99']:.1f}×) | "
              f"{met(deep['p99'] <= 2 * first['p99'])} |")
        slow = [r for r in reads if r["p99"] >= 10]
        worst = max(reads, key=lambda r: r["p99"])
        best = min(reads, key=lambda r: r["p99"])
        w(f"| p99 < 10 ms at {env['CONNS']} connections, every read scenario | "
          f"{len(slow)} of {len(reads)} at or over 10 ms; best {best['p99']:.2f} ms "
          f"({best['name']}), worst {worst['p99']:.2f} ms ({worst['name']}) | {met(not slow)} |")
        create = next(r for r in scen if r["name"].startswith("create group"))
        create_ok = create["rps"] - create["err"] / max(create["req"], 1) * create["rps"]
        w(f"| writes: ≥ 2,000 group creates per second | {create_ok:,.0f} successful/s | "
          f"{met(create_ok >= 2000)} |")
        hwm = mb(env["READ_HWM_KB"])
        w(f"| peak RSS < 256 MB with the whole directory loaded | {hwm:.0f} MB (restarted server, "
          f"after the reads; {mb(env['HWM_KB']):.0f} MB after the writes too, "
          f"{mb(env['SYNC_HWM_KB']):.0f} MB while syncing) | {met(hwm < 256)} |")
        w("")
        if smoke:
            w("(Targets are stated for the full directory; on the smoke directory they mean little.)")
            w("")

    w("## What is measured")
    w("")
    w("- `bench/run` builds release (`cargo build --release --bin contactsd --example ceiling`), "
      "generates the snapshot, starts `contactsd serve` on a fresh SQLite file (or "
      "`$BENCH_DATABASE_URL`, an empty PostgreSQL database) with `--rate-limit 0 "
      "--token-rate-limit 0`, reads the demo team app printed by the first start, takes one "
      "token and loads the snapshot with one `POST /api/contacts/teams/{team}/sync` "
      "(`application/x-ndjson`). It then restarts the server on the loaded database, so that "
      "the peak RSS is the loaded directory's and not the sync's, and looks the ids it needs up "
      "through the API.")
    w("- Each scenario is one wrk run (`bench/wrk.lua`) over loopback. Read scenarios repeat one "
      "GET; before each, one call is checked for a 200 (a failure stops the run).")
    w("- Deep pages: page 5,000 of the default group listing, page 500 of the 10,000-child "
      "parent `wide`, page 50,000 of group 0's members, each with `per_page=10` (the smoke "
      "directory is smaller: its last page instead).")
    w("- remote_ids: 10 remote ids (`wide-1`..`wide-5`, `tree.0`..`tree.3`, `chain-7`). Get one "
      "group: `chain-15`, at depth 15 (its `full_name` walks 15 parents). Members of `wide-0`: "
      "the group with 50,000 direct members (smoke: 500). Recursive members: "
      "`GET .../groups/{tree}/users?recursive=true`, `tree` being the top of the balanced tree "
      "that holds almost every member.")
    w("- Create group: `POST .../groups` with a unique name per request "
      "(`bench-<thread>-<n>`), all under one parent created for the benchmark, so the parent's "
      "children grow by one per request.")
    w("- Move group: `POST .../groups/{id}` `{\"name\":\"Bench moved\",\"to_id\":A|B}`, one leaf "
      "group moved back and forth between two top-level groups (no `from_id`, so concurrent "
      "moves do not conflict).")
    w(f"- Add member: `POST .../groups/{{gid}}/users/{{uid}}` `{{\"role\":4}}`. 64 users are "
      f"registered first (`POST /api/sso/users`); request n of a wrk thread adds that thread's "
      f"user n mod 32 to the next group among the first 2,000 groups of the default listing. "
      f"The first request for a user also adds it to the directory; the others add an existing "
      f"member to one more group. No (user, group) pair repeats within {int(env['ADD_PAIRS']):,} "
      f"requests; past that the repeats answer 409 `contacts_user_existed` and count as errors.")
    w("- The ceiling (`examples/ceiling.rs`): axum 0.8 on the default multi-thread tokio runtime "
      f"with the same allocator as `contactsd serve`, answering every GET with a fixed "
      f"{env['PAGE1_BYTES']}-byte JSON body (the length of the real page-1 answer), no database, "
      "no token check; it receives the \"list groups page 1\" load, right before that scenario.")
    w("- The server logs one line per request to stderr (its default), written to a file by its "
      "logging thread.")
    w("- No timed assertions: the numbers are reported, never checked. The smoke run "
      "(`bench/run --smoke`, in CI) fails when the script breaks and on any error it sees: an "
      "answer whose envelope `code` is not `OK` (reads and writes), a socket error or timeout, "
      "a panic in the server's log.")
    w("")
    w("## Notes")
    w("")
    w("- A read answers from the process's copy of the directory; the team's row comes from "
      "the read cache (`--read-cache-ms`, 1 s by default), so a group listing touches the "
      "database about once a second per team. The token's row is cached too, but on SQLite it "
      "serves only while the WAL-index header is unchanged (one `fstat` and one `pread` per "
      "call, exact across processes), and on PostgreSQL it is read on every call "
      "(docs/DESIGN.md, \"Tokens: exact across processes\"). Member pages read names and "
      "avatars from the database and reuse them for the same directory version within the "
      "read-cache time, so a repeated page costs about one query a second. The ceiling does "
      "none of this work: the gap between a read scenario and the ceiling is the token check, "
      "the tenant check, the listing, the JSON and the request log line.")
    w("- The load generator runs on the same two cores and the machine is a shared virtual one: "
      "throughput moves by up to 20% between runs minutes apart, the ceiling's too, and not "
      "always together, which is why the ceiling is measured right next to the page-1 "
      "scenario; repeat a run before reading much into one ratio.")
    w("- Before the first scenario, 3 s of the page-1 load warm the restarted server up "
      "(not measured).")
    w("- The server runs with its defaults, so SQLite commits with `synchronous=FULL` "
      "(`--sqlite-synchronous`; the default, and the setting, of runs dated "
      "before 2026-12-03, was `synchronous=NORMAL`).")
    w("- SCIM provisioning has its own benchmark, `bench/scim` (docs/SCIM-BENCHMARKS.md).")
    w("")
    w(DURABILITY)
    w("")
    w(GROUP_COMMIT)
    print("\n".join(out))


if __name__ == "__main__":
    main()
