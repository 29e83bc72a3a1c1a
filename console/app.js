// The console's start: sign-in, the two views (directory and sync), search, sign-out and
// token renewal. Everything it shows comes from the public API (api.js).

import { Api } from "./api.js";
import { announce, attempt, byId, clearError, h, markAfterPaint, openDialog } from "./dom.js";
import { GroupPanel } from "./groups.js";
import { MembersPanel } from "./members.js";
import { SyncPanel } from "./sync.js";
import { Tree } from "./tree.js";

const api = new Api();
let directoryStale = false;
const tree = new Tree(byId("tree"), api, {
  onSelect: (node) => {
    groups.show(node);
    members.show(node);
  },
  onDrop: (id, target) => attempt(() => groups.move(id, target)),
});
const groups = new GroupPanel(byId("group"), api, tree);
const members = new MembersPanel(byId("members"), api);
const sync = new SyncPanel(byId("sync"), api, { onApplied: () => { directoryStale = true; } });

function showSignedIn(signedIn) {
  byId("signin").hidden = signedIn;
  byId("views").hidden = !signedIn;
  byId("who").hidden = !signedIn;
  byId("sign-out").hidden = !signedIn;
  if (signedIn) {
    byId("who").textContent = `${api.session.appid} · team ${api.session.teamId}`;
    showView("directory");
  } else {
    byId("directory").hidden = true;
    byId("sync").hidden = true;
  }
}

function showView(view) {
  byId("directory").hidden = view !== "directory";
  byId("sync").hidden = view !== "sync";
  byId("view-directory").setAttribute("aria-pressed", String(view === "directory"));
  byId("view-sync").setAttribute("aria-pressed", String(view === "sync"));
  if (view === "directory" && directoryStale) {
    directoryStale = false;
    attempt(enter);
  }
}

async function enter() {
  showSignedIn(true);
  await tree.start();
  markAfterPaint("console:tree-painted");
  tree.select(0);
  tree.focus("0");
}

byId("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  performance.mark("console:signin");
  const secret = byId("signin-secret");
  attempt(async () => {
    try {
      await api.signIn(byId("signin-appid").value.trim(), secret.value, byId("signin-team").value.trim());
    } finally {
      secret.value = "";
    }
    await enter();
    announce("Signed in");
  });
});

byId("sign-out").addEventListener("click", () => {
  api.signOut();
  clearError();
  byId("tree").replaceChildren();
  byId("group").replaceChildren();
  byId("members").replaceChildren();
  byId("search-results").hidden = true;
  showSignedIn(false);
  announce("Signed out");
  byId("signin-appid").focus();
});

byId("view-directory").addEventListener("click", () => showView("directory"));
byId("view-sync").addEventListener("click", () => showView("sync"));

byId("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const keyword = byId("search-input").value.trim();
  const results = byId("search-results");
  if (!keyword) {
    results.hidden = true;
    return;
  }
  attempt(async () => {
    const data = await api.get(api.team("/groups"), { keyword, per_page: 20 });
    const items = data.list.map((group) => h("li", {},
      h("button", { type: "button", className: "link", dataset: { id: String(group.id) },
        onclick: () => attempt(() => tree.reveal(group.id)) },
      group.name, h("span", { className: "path" }, ` ${group.full_name} · id ${group.id}`))));
    const more = data.total > data.list.length ? ` (first ${data.list.length} shown)` : "";
    results.replaceChildren(h("li", { className: "summary" }, `${data.total} found${more}`), ...items);
    results.hidden = false;
    const first = results.querySelector("button");
    if (first) first.focus();
  });
});

// A refused token is renewed by asking for the secret again (it is never kept).
api.onTokenRefused = async (error) => {
  const { appid, teamId } = api.session;
  byId("renew-text").textContent = `${error.message}. Enter the secret of app ${appid} to get a ` +
    "new token; the call will then be retried.";
  const secret = await openDialog(byId("renew"), () => byId("renew-secret").value);
  byId("renew-secret").value = "";
  if (secret === null) {
    byId("sign-out").click();
    return false;
  }
  try {
    await api.signIn(appid, secret, teamId);
    return true;
  } catch {
    byId("sign-out").click();
    return false;
  }
};

if (api.signedIn) attempt(enter);
else showSignedIn(false);
