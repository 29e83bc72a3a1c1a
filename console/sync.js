// Sync preview: a snapshot file is read in the browser, sent as a dry run, its report or
// problems shown as tables, then applied on request.

import { announce, attempt, byId, clearError, h, showError } from "./dom.js";
import { parseSnapshot } from "./snapshot.js";

const REPORT_ROWS = [
  ["groups_created", "Groups created"], ["groups_renamed", "Groups renamed"],
  ["groups_moved", "Groups moved"], ["groups_reordered", "Groups reordered"],
  ["groups_deleted", "Groups deleted"], ["groups_unchanged", "Groups unchanged"],
  ["members_added", "Members added"], ["members_changed", "Members changed"],
  ["members_removed", "Members removed"], ["members_unchanged", "Members unchanged"],
  ["elapsed_ms", "Server time (ms)"],
];

export class SyncPanel {
  constructor(section, api, { onApplied }) {
    this.section = section;
    this.api = api;
    this.onApplied = onApplied;
    this.previewed = null;
    const changed = () => this.forget();
    this.result = h("div", { id: "sync-result", "aria-live": "polite" });
    this.apply = h("button", { type: "button", id: "sync-apply", className: "primary", disabled: true,
      onclick: () => attempt(() => this.run(false)) }, "Apply");
    section.replaceChildren(
      h("h2", { id: "sync-title" }, "Sync a snapshot"),
      h("p", {}, "Make the directory equal to a snapshot of your HR or IM directory: a JSON, " +
        "NDJSON or CSV file in the shapes of docs/SYNC.md. Groups are matched by remote id, " +
        "members by openid. First a dry run shows what would change; nothing changes until you apply."),
      h("form", { id: "sync-form", className: "grid", onsubmit: (event) => {
        event.preventDefault();
        attempt(() => this.run(true));
      } },
      h("label", { for: "sync-file" }, "Snapshot file"),
      h("input", { id: "sync-file", type: "file", accept: ".json,.ndjson,.jsonl,.csv", required: true,
        onchange: changed }),
      h("label", { for: "sync-mode" }, "Mode"),
      h("select", { id: "sync-mode", onchange: changed, "aria-describedby": "sync-mode-help" },
        h("option", { value: "upsert" }, "upsert: create and change, delete nothing"),
        h("option", { value: "replace" }, "replace: also delete what the snapshot no longer holds")),
      h("p", { id: "sync-mode-help", className: "help" }, "replace deletes only groups and " +
        "members that a sync created (source 2); the owner is never removed."),
      h("label", { className: "check" }, h("input", { type: "checkbox", id: "sync-allow", onchange: changed,
        "aria-describedby": "sync-brake-help" }), " Allow mass delete"),
      h("p", { id: "sync-brake-help", className: "help" }, "The brake: a replace that would delete " +
        "more than 50 groups and more than 20% of the synced groups (or the same for members) is " +
        "refused, since it usually means a truncated export. Tick this only when the deletions " +
        "are intended."),
      h("div", { className: "buttons" },
        h("button", { type: "submit", id: "sync-preview" }, "Preview (dry run)"), this.apply)),
      this.result);
  }

  forget() {
    this.previewed = null;
    this.apply.disabled = true;
  }

  async body(dryRun) {
    const file = byId("sync-file").files[0];
    if (!file) throw new Error("Choose a snapshot file first.");
    const snapshot = parseSnapshot(await file.text(), file.name);
    return {
      ...snapshot,
      mode: byId("sync-mode").value,
      allow_mass_delete: byId("sync-allow").checked,
      dry_run: dryRun,
    };
  }

  async run(dryRun) {
    this.result.replaceChildren();
    const body = dryRun ? await this.body(true) : { ...this.previewed, dry_run: false };
    let report;
    try {
      report = await this.api.post(this.api.team("/sync"), body);
    } catch (error) {
      this.forget();
      this.showFailure(error);
      return;
    }
    clearError();
    this.previewed = dryRun ? body : null;
    this.apply.disabled = !dryRun;
    const title = dryRun ? "Dry run: nothing has changed yet" : "Applied";
    this.result.replaceChildren(h("h3", { id: "sync-report-title" }, title),
      h("table", { id: "sync-report", className: "table compact", "aria-labelledby": "sync-report-title" },
        h("tbody", {}, REPORT_ROWS.map(([key, label]) =>
          h("tr", { dataset: { key } }, h("th", { scope: "row" }, label),
            h("td", {}, String(report[key] ?? "—")))))));
    announce(dryRun ? "Dry run done" : "Snapshot applied");
    if (!dryRun) this.onApplied();
  }

  showFailure(error) {
    showError(error);
    const problems = error.data && error.data.problems;
    if (error.type === "sync_deletes_too_many") {
      this.result.replaceChildren(h("div", { id: "sync-brake", className: "notice" },
        h("h3", {}, "Stopped by the mass-delete brake"),
        h("p", {}, `This sync would delete ${error.data.groups_to_delete ?? "?"} groups and remove ` +
          `${error.data.members_to_remove ?? "?"} members. That is more than 50 and more than 20% ` +
          "of the synced ones, so the server refused it. If that is intended, tick “Allow mass " +
          "delete” and preview again.")));
    } else if (Array.isArray(problems)) {
      this.result.replaceChildren(h("h3", { id: "sync-problems-title" },
        `${problems.length} problem${problems.length === 1 ? "" : "s"} (nothing was changed)`),
      h("table", { id: "sync-problems", className: "table", "aria-labelledby": "sync-problems-title" },
        h("thead", {}, h("tr", {}, ["Remote id", "Openid", "Type", "Message"].map((label) =>
          h("th", { scope: "col" }, label)))),
        h("tbody", {}, problems.map((problem) => h("tr", {},
          h("td", {}, problem.remote_id ?? ""), h("td", {}, problem.openid ?? ""),
          h("td", {}, h("code", {}, problem.type)), h("td", {}, problem.message))))));
    }
  }
}
