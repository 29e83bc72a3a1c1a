#!/usr/bin/env python3
"""Browser test of the web console (/console) against a real `contactsd serve`, driven by
Selenium in headless Chromium. Run through scripts/console-test, which installs both.

Every step is checked twice: in the page (the DOM) and through the public API.

  console_test.py --binary target/debug/contactsd            the steps, screenshots in --shots
  console_test.py --binary target/release/contactsd --bench  first paint and the expansion of a
                                                             10,000-child group on the benchmark
                                                             directory, written to
                                                             docs/CONSOLE-BENCHMARKS.md (no
                                                             assertion on time)
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WAIT = 15


class Server:
    """A `contactsd serve` on a free port with a fresh SQLite database."""

    def __init__(self, binary, workdir, extra=()):
        self.binary = binary
        self.db = f"sqlite://{workdir}/console.db"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(os.path.join(workdir, "serve.log"), "w")
        self.process = subprocess.Popen(
            [binary, "serve", "--db", self.db, "--listen", f"127.0.0.1:{port}", *extra],
            stdout=self.log, stderr=self.log)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        sys.exit("console-test: the server did not start")

    def admin(self, *args):
        out = subprocess.run([self.binary, "admin", *args, "--db", self.db],
                             check=True, capture_output=True).stdout
        return json.loads(out)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class Client:
    """The public API, read by envelope code."""

    def __init__(self, base):
        self.base = base
        self.token = None

    def call(self, method, path, query=None, body=None, ok=True):
        url = self.base + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        for _ in range(4):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    envelope = json.load(response)
            except urllib.error.HTTPError as error:
                envelope = json.load(error)
            if envelope["error"]["type"] != "request_rate_limited":
                break
            time.sleep(1)
        if ok and envelope["code"] != "OK":
            raise AssertionError(f"{method} {path}: {envelope}")
        return envelope if not ok else envelope["data"]

    def sign_in(self, appid, secret):
        self.token = self.call("GET", "/api/oauth2/access_token", {
            "appid": appid, "secret": secret, "grant_type": "client_credential"})["access_token"]


def browser(shots):
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1366,900"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The system driver: Selenium Manager never downloads one.
    service = Service(executable_path="/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.profile = profile
    os.makedirs(shots, exist_ok=True)
    return driver


class Page:
    """The console in the browser, with checks that wait for the DOM."""

    def __init__(self, driver, shots):
        self.d = driver
        self.shots = shots

    def wait(self, condition, what):
        try:
            # The tree redraws its rows: a row found a moment ago may be gone; look again.
            return WebDriverWait(self.d, WAIT, ignored_exceptions=[
                NoSuchElementException, StaleElementReferenceException]).until(
                    lambda _: condition())
        except Exception:
            self.shot("failure")
            alert = self.d.execute_script("return document.getElementById('alert').textContent")
            raise AssertionError(f"waited for {what}; alert: {alert!r}")

    def css(self, selector):
        return self.d.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector):
        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def visible(self, selector):
        found = self.all(selector)
        return found[0] if found and found[0].is_displayed() else None

    def row(self, group_id):
        return self.wait(lambda: self.visible(f'#tree [data-id="{group_id}"]'), f"tree row {group_id}")

    def twisty(self, group_id):
        self.row(group_id).find_element(By.CSS_SELECTOR, ".twisty").click()

    def select(self, group_id):
        self.row(group_id).find_element(By.CSS_SELECTOR, ".name").click()
        self.wait(lambda: self.row(group_id).get_attribute("aria-selected") == "true", "selection")

    def fill(self, selector, text):
        field = self.css(selector)
        field.clear()
        field.send_keys(text)

    def status(self, text):
        self.wait(lambda: self.d.execute_script("return document.body.dataset.status") == text,
                  f"status {text!r}")

    def no_alert(self):
        alert = self.css("#alert")
        assert not alert.is_displayed(), f"unexpected error shown: {alert.text}"

    def shot(self, name):
        self.d.save_screenshot(os.path.join(self.shots, f"{name}.png"))

    def token(self):
        session = self.d.execute_script(
            "return sessionStorage.getItem('contactsd.console.session')")
        return json.loads(session)["token"] if session else None


def seed(server, client):
    """A platform app, its org (with an owner) and a small three-level directory."""
    platform = server.admin("create-platform-app", "--name", "Console test")
    client.sign_in(platform["appid"], platform["secret"])
    users = [client.call("POST", "/api/sso/users", body={"openid": f"person-{i}", "nickname": name})
             ["user_id"] for i, name in enumerate(["Olivia Owner", "Ana Lima", "Bo Chen", "Cy Park"])]
    org = client.call("POST", "/api/orgs", body={"name": "Acme", "user_id": users[0]})
    team = org["team_id"]
    groups = {}

    def group(name, parent, remote):
        groups[name] = client.call("POST", f"/api/contacts/teams/{team}/groups", body={
            "name": name, "parent_id": groups.get(parent, 0), "remote_id": remote})["group_id"]

    group("Engineering", None, "eng")
    group("Sales", None, "sales")
    group("Platform", "Engineering", "eng-platform")
    group("Storage", "Platform", "eng-storage")
    group("Apps", "Engineering", "")
    client.call("POST", f"/api/contacts/teams/{team}/groups/{groups['Platform']}/users/{users[1]}",
                body={"role": 4})
    return platform, team, groups, users


def run_steps(binary, shots):
    workdir = tempfile.mkdtemp(prefix="console-test-")
    server = Server(binary, workdir)
    driver = browser(shots)
    page = Page(driver, shots)
    api = Client(server.base)
    try:
        headers(server)
        platform, team, groups, users = seed(server, api)
        prefix = f"/api/contacts/teams/{team}"

        print("console-test: sign in")
        driver.get(server.base + "/console")
        page.wait(lambda: page.visible("#signin-form"), "the sign-in form")
        page.shot("sign-in")
        page.fill("#signin-appid", platform["appid"])
        page.fill("#signin-secret", platform["secret"])
        page.fill("#signin-team", str(team))
        page.css("#signin-form button[type=submit]").click()
        page.row(groups["Engineering"])
        page.row(groups["Sales"])
        page.no_alert()
        assert page.css("#signin-secret").get_attribute("value") == ""
        stored = driver.execute_script("return JSON.stringify(sessionStorage)")
        assert platform["secret"] not in stored, "the secret was kept"
        api.token = page.token()  # the console's own token: checks must not supersede it
        top = api.call("GET", f"{prefix}/groups", {"parent_id": 0})["list"]
        assert {g["id"] for g in top} == {groups["Engineering"], groups["Sales"]}
        owner = page.wait(lambda: page.visible(f'#members-table tr[data-user="{users[0]}"]'),
                          "the owner in the directory's members")
        assert "Owner" in owner.text

        print("console-test: expand three levels (mouse and keyboard)")
        page.twisty(groups["Engineering"])
        page.row(groups["Platform"])
        page.row(groups["Platform"]).click()
        page.row(groups["Platform"]).send_keys(Keys.ARROW_RIGHT)
        page.row(groups["Storage"])
        page.row(groups["Storage"]).send_keys(Keys.ARROW_RIGHT)
        page.wait(lambda: page.row(groups["Storage"]).get_attribute("aria-expanded") is None,
                  "Storage shown as a leaf")
        for name, level in [("Engineering", "2"), ("Platform", "3"), ("Storage", "4")]:
            assert page.row(groups[name]).get_attribute("aria-level") == level
        assert page.row(groups["Engineering"]).get_attribute("aria-expanded") == "true"
        assert page.row(groups["Platform"]).get_attribute("aria-expanded") == "true"
        children = api.call("GET", f"{prefix}/groups", {"parent_id": groups["Engineering"]})
        shown = [int(r.get_attribute("data-id")) for r in page.all('#tree [aria-level="3"]')]
        assert shown == [g["id"] for g in children["list"]], (shown, children)
        page.shot("tree")

        print("console-test: search")
        page.row(groups["Engineering"]).click()
        page.row(groups["Engineering"]).send_keys(Keys.ARROW_LEFT)
        page.wait(lambda: not page.all(f'#tree [data-id="{groups["Storage"]}"]'), "collapse")
        page.fill("#search-input", "stor")
        page.css("#search button[type=submit]").click()
        page.wait(lambda: page.visible(f'#search-results [data-id="{groups["Storage"]}"]'),
                  "the search result").click()
        page.wait(lambda: page.row(groups["Storage"]).get_attribute("aria-selected") == "true",
                  "Storage selected")
        assert page.row(groups["Engineering"]).get_attribute("aria-expanded") == "true"
        assert "eng-storage" in page.css("#group .facts").text
        found = api.call("GET", f"{prefix}/groups", {"keyword": "stor"})["list"]
        assert [g["id"] for g in found] == [groups["Storage"]]

        print("console-test: create")
        page.select(groups["Sales"])
        page.fill("#new-name", "Marketing")
        page.fill("#new-remote", "mkt")
        page.css("#group-create button[type=submit]").click()
        page.status("Created Marketing")
        made = api.call("GET", f"{prefix}/groups", {"parent_id": groups["Sales"]})["list"]
        assert [(g["name"], g["remote_id"], g["source"]) for g in made] == [("Marketing", "mkt", 1)]
        marketing = made[0]["id"]
        assert page.row(marketing).get_attribute("aria-selected") == "true"

        print("console-test: rename")
        page.fill("#group-name", "Growth")
        page.css("#group-edit button[type=submit]").click()
        page.status("Saved Growth")
        assert "Growth" in page.row(marketing).text
        assert api.call("GET", f"{prefix}/groups/{marketing}")["name"] == "Growth"
        page.shot("group")

        print("console-test: drag and drop")
        driver.execute_script("""
            const [from, to] = arguments;
            const data = new DataTransfer();
            const fire = (element, type) => element.dispatchEvent(new DragEvent(type,
                {bubbles: true, cancelable: true, dataTransfer: data}));
            fire(from, 'dragstart'); fire(to, 'dragover'); fire(to, 'drop'); fire(from, 'dragend');
        """, page.row(marketing), page.row(groups["Engineering"]))
        page.status("Moved Growth under Engineering")
        moved = api.call("GET", f"{prefix}/groups/{marketing}")
        assert moved["parent_id"] == groups["Engineering"], moved
        assert page.row(marketing).get_attribute("aria-level") == "3"

        print("console-test: move dialog (keyboard)")
        page.css("#group-move").click()
        page.wait(lambda: page.visible("#move"), "the move dialog")
        page.fill("#move-search", "Sales")
        page.css("#move-search").send_keys(Keys.ENTER)
        page.wait(lambda: page.all(f'#move-choices input[value="{groups["Sales"]}"]'), "choices")
        page.css(f'#move-choices input[value="{groups["Sales"]}"]').send_keys(Keys.SPACE)
        page.css(f'#move-choices input[value="{groups["Sales"]}"]').send_keys(Keys.ENTER)
        page.status("Moved Growth under Sales")
        assert api.call("GET", f"{prefix}/groups/{marketing}")["parent_id"] == groups["Sales"]

        print("console-test: delete")
        page.css("#group-delete").click()
        page.wait(lambda: page.visible("#confirm"), "the confirmation")
        assert "no subgroups and no members" in page.css("#confirm-text").text
        page.css("#confirm-ok").click()
        page.status("Deleted Growth")
        assert not page.all(f'#tree [data-id="{marketing}"]')
        gone = api.call("GET", f"{prefix}/groups/{marketing}", ok=False)
        assert gone["error"]["type"] == "contacts_group_not_found", gone
        print("console-test: a refused delete shows the API's message")
        page.select(groups["Platform"])
        page.css("#group-delete").click()
        page.wait(lambda: page.visible("#confirm"), "the confirmation")
        assert "server will refuse" in page.css("#confirm-text").text
        page.css("#confirm-ok").click()
        page.wait(lambda: page.visible("#alert"), "the error")
        assert "group_not_empty" in page.css("#alert").text
        api.call("GET", f"{prefix}/groups/{groups['Platform']}")

        print("console-test: members")
        page.wait(lambda: page.visible(f'#members-table tr[data-user="{users[1]}"]'), "Ana")
        page.fill("#member-add-id", str(users[2]))
        Select = __import__("selenium.webdriver.support.select", fromlist=["Select"]).Select
        Select(page.css("#member-add-role")).select_by_value("3")
        page.css("#member-add button[type=submit]").click()
        page.status(f"Added user {users[2]}")
        row = page.visible(f'#members-table tr[data-user="{users[2]}"]')
        assert "Survey admin" in row.text
        listed = api.call("GET", f"{prefix}/groups/{groups['Platform']}/users")["list"]
        assert {(m["user_id"], m["role"]) for m in listed} == {(users[1], 4), (users[2], 3)}
        row.find_element(By.CSS_SELECTOR, "button.edit").click()
        page.wait(lambda: page.visible("#member-edit"), "the member dialog")
        Select(page.css("#member-edit-role")).select_by_value("2")
        page.fill("#member-edit-groups", f"{groups['Platform']}, {groups['Sales']}")
        page.css("#member-edit button[type=submit]").click()
        page.status("Changed Bo Chen")
        assert "Team admin" in page.visible(f'#members-table tr[data-user="{users[2]}"]').text
        sales = api.call("GET", f"{prefix}/groups/{groups['Sales']}/users")["list"]
        assert [(m["user_id"], m["role"]) for m in sales] == [(users[2], 2)]
        page.shot("members")
        page.visible(f'#members-table tr[data-user="{users[2]}"] button.remove').click()
        page.wait(lambda: page.visible("#confirm"), "the confirmation")
        page.css("#confirm-ok").click()
        page.status("Removed Bo Chen")
        assert not page.all(f'#members-table tr[data-user="{users[2]}"]')
        listed = api.call("GET", f"{prefix}/groups/{groups['Platform']}/users")["list"]
        assert [m["user_id"] for m in listed] == [users[1]]
        page.no_alert()

        print("console-test: sync a snapshot (problems, dry run, apply)")
        page.css("#view-sync").click()
        bad = os.path.join(workdir, "bad.json")
        with open(bad, "w") as out:
            json.dump({"groups": [{"remote_id": "a", "name": "A", "parent_remote_id": "b"},
                                  {"remote_id": "b", "name": "B", "parent_remote_id": "a"}]}, out)
        page.css("#sync-file").send_keys(bad)
        page.css("#sync-preview").click()
        page.wait(lambda: page.visible("#sync-problems"), "the problems table")
        assert "group_cycle" in page.css("#sync-problems").text
        page.shot("sync-problems")
        snapshot = os.path.join(workdir, "snapshot.csv")
        with open(snapshot, "w") as out:
            out.write("kind,remote_id,name,parent_remote_id,order,openid,nickname,avatar,role,"
                      "group_remote_ids\n"
                      "group,hq,Head office,,5,,,,,\n"
                      "group,hq-eu,\"Europe, Middle East\",hq,,,,,,\n"
                      "member,,,,,person-3,Cy Park,,3,hq-eu|hq\n")
        page.css("#sync-file").send_keys(snapshot)
        page.css("#sync-preview").click()
        page.status("Dry run done")
        report = {r.get_attribute("data-key"): r.find_element(By.TAG_NAME, "td").text
                  for r in page.all("#sync-report tr")}
        assert report["groups_created"] == "2" and report["members_added"] == "1", report
        assert not api.call("GET", f"{prefix}/groups", {"remote_ids": "hq"})["list"]
        page.shot("sync-preview")
        page.css("#sync-apply").click()
        page.status("Snapshot applied")
        synced = api.call("GET", f"{prefix}/groups", {"remote_ids": "hq,hq-eu"})["list"]
        assert sorted((g["remote_id"], g["source"]) for g in synced) == [("hq", 2), ("hq-eu", 2)]

        print("console-test: a superseded token is renewed with the secret")
        api.sign_in(platform["appid"], platform["secret"])
        page.css("#view-directory").click()
        page.wait(lambda: page.visible("#renew"), "the renewal dialog")
        page.fill("#renew-secret", platform["secret"])
        page.css("#renew button[type=submit]").click()
        hq = next(g["id"] for g in synced if g["remote_id"] == "hq")
        page.row(hq)
        assert "sync" in page.row(hq).text
        assert page.token() != api.token
        page.no_alert()

        print("console-test: dark mode")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        page.twisty(groups["Engineering"])
        page.select(groups["Platform"])
        page.shot("dark")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

        print("console-test: sign out")
        old = page.token()
        page.css("#sign-out").click()
        page.wait(lambda: page.visible("#signin-form"), "the sign-in form")
        assert page.token() is None
        assert not page.all("#tree [role=treeitem]")
        api.token = old
        still = api.call("GET", f"{prefix}/groups")  # no server-side session to end
        assert still["total"] >= 4

        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                  and "Content Security Policy" in e["message"]]
        assert not errors, f"CSP violations: {errors}"
        print("console-test: every step passed")
    finally:
        driver.quit()
        shutil.rmtree(driver.profile, ignore_errors=True)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def headers(server):
    """The page is not cached and its files are, all under a strict policy."""
    with urllib.request.urlopen(server.base + "/console") as response:
        page = response.read().decode()
        assert response.headers["Cache-Control"] == "no-cache"
        policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy
    script = page.split('<script type="module" src="')[1].split('"')[0]
    with urllib.request.urlopen(server.base + "/" + script) as response:
        assert "immutable" in response.headers["Cache-Control"]
        assert response.headers["Content-Type"].startswith("text/javascript")


def mark_gap(page, start, end):
    """Milliseconds between two performance marks of the page, once the second is set."""
    script = "return performance.getEntriesByName(arguments[0]).map(e => e.startTime).pop()"
    page.wait(lambda: page.d.execute_script(script, end) is not None, f"mark {end}")
    return page.d.execute_script(script, end) - page.d.execute_script(script, start)


def run_bench(args, rounds=6):
    """Sign in and expand the widest group `rounds` times; the first round meets a cold server."""
    workdir = tempfile.mkdtemp(prefix="console-bench-")
    db = f"sqlite://{workdir}/console.db"
    org = json.loads(subprocess.run([args.binary, "admin", "create-org", "--db", db, "--name",
                                     "Bench"], check=True, capture_output=True).stdout)
    snapshot = os.path.join(workdir, "snapshot.ndjson")
    print(f"console-bench: {args.groups} groups, {args.members} members", file=sys.stderr)
    with open(snapshot, "w") as out:
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen_snapshot.py"), "--groups",
                        str(args.groups), "--members", str(args.members)], check=True, stdout=out)
    subprocess.run([args.binary, "sync", "--db", db, "--team-id", str(org["team_id"]), "--file",
                    snapshot, "--allow-mass-delete"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    server = Server(args.binary, workdir)
    driver = browser(args.shots)
    page = Page(driver, args.shots)
    api = Client(server.base)
    paints, expands = [], []
    try:
        api.sign_in(org["appid"], org["secret"])
        wide = api.call("GET", f"/api/contacts/teams/{org['team_id']}/groups",
                        {"remote_ids": "wide"})["list"][0]
        children = api.call("GET", f"/api/contacts/teams/{org['team_id']}/groups",
                            {"parent_id": wide["id"], "per_page": 1})["total"]
        driver.get(server.base + "/console")
        for _ in range(rounds):
            page.wait(lambda: page.visible("#signin-form"), "the sign-in form")
            page.fill("#signin-appid", org["appid"])
            page.fill("#signin-secret", org["secret"])
            page.fill("#signin-team", str(org["team_id"]))
            page.css("#signin-form button[type=submit]").click()
            paints.append(mark_gap(page, "console:signin", "console:tree-painted"))
            page.twisty(wide["id"])
            expands.append(mark_gap(page, f"console:expand:{wide['id']}",
                                    f"console:expanded:{wide['id']}"))
            page.no_alert()
            page.shot("bench-wide")
            driver.execute_script("performance.clearMarks()")
            page.css("#sign-out").click()
    finally:
        driver.quit()
        shutil.rmtree(driver.profile, ignore_errors=True)
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, children, paints, expands)


def report(args, children, paints, expands):
    warm_paint, warm_expand = sorted(paints[1:]), sorted(expands[1:])
    median = lambda values: values[len(values) // 2]
    verdict = lambda value, target: "met" if value < target else "NOT met"
    chromium = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout
    chromium = chromium.replace(" built on ", ", ").strip()
    load = os.getloadavg()[0]
    text = f"""# Console benchmark

Generated by `scripts/console-test --bench`: `contactsd` built with `--release` on SQLite, headless
{chromium}, the server and the browser on one machine of {os.cpu_count()} cores (load average
{load:.1f} during the run: other builds were running). The directory: {args.groups:,} groups and
{args.members:,} members made by `bench/gen_snapshot.py`, with one top-level group of
{children:,} children, loaded with `contactsd sync`.

Each round signs in, waits for the tree's first paint, opens that group, waits for its paint and
signs out. Times are the browser's own, in milliseconds: `performance.mark` from the click (sign
in, or the group's arrow) to the frame after the tree was drawn. The first round is the page's
first call (the server had already read the directory for the script's own look-ups).

| | first round | median of the other {len(paints) - 1} | slowest of them | target |
|---|---:|---:|---:|---|
| first paint after sign-in | {paints[0]:.0f} | {median(warm_paint):.0f} | {warm_paint[-1]:.0f} | < 1000 ms: {verdict(max(paints), 1000)} |
| opening the {children:,}-child group | {expands[0]:.0f} | {median(warm_expand):.0f} | {warm_expand[-1]:.0f} | < 500 ms: {verdict(max(expands), 500)} |

The group's children are read {PAGE_NOTE}.
"""
    with open(args.out, "w") as out:
        out.write(text)
    print(text)


PAGE_NOTE = ("200 at a time (`per_page=200`, ordered by `order` then id); a \"Show 200 more\" row "
             "below them reads the next page, so the page never holds more rows than were asked for")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--shots", default=os.path.join(ROOT, "target", "console-screenshots"))
    parser.add_argument("--bench", action="store_true")
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "CONSOLE-BENCHMARKS.md"))
    args = parser.parse_args()
    if args.bench:
        run_bench(args)
    else:
        run_steps(args.binary, args.shots)


if __name__ == "__main__":
    main()
