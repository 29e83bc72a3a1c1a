// The members of the selected group: paged, optionally with every group below it; add an
// existing user, change a member's role and groups, remove.

import { announce, attempt, byId, confirmAction, h, openDialog, ROLES } from "./dom.js";

const PER_PAGE = 50;

export class MembersPanel {
  constructor(section, api) {
    this.section = section;
    this.api = api;
    this.node = null;
    this.page = 1;
    this.recursive = false;
  }

  show(node) {
    this.node = node;
    this.page = 1;
    this.recursive = false;
    const where = node.id === 0 ? "the whole directory" : node.name;
    this.body = h("tbody");
    this.pager = h("p", { className: "pager-text", id: "members-pager", "aria-live": "polite" });
    this.previous = h("button", { type: "button", id: "members-previous",
      onclick: () => this.turn(-1) }, "Previous page");
    this.next = h("button", { type: "button", id: "members-next",
      onclick: () => this.turn(1) }, "Next page");
    const recursive = node.id === 0 ? null : h("label", { className: "check" },
      h("input", { type: "checkbox", id: "members-recursive", onchange: (event) => {
        this.recursive = event.target.checked;
        this.page = 1;
        attempt(() => this.load());
      } }), " Include the members of every group below");
    const add = h("form", { id: "member-add", className: "inline", onsubmit: (event) => {
      event.preventDefault();
      attempt(() => this.add());
    } },
    h("label", { for: "member-add-id" }, "User id"),
    h("input", { id: "member-add-id", required: true, inputmode: "numeric", pattern: "[0-9]+",
      "aria-describedby": "member-add-help" }),
    h("label", { for: "member-add-role" }, "Role"),
    h("select", { id: "member-add-role" },
      h("option", { value: 4 }, ROLES[4]), h("option", { value: 3 }, ROLES[3]),
      h("option", { value: 2 }, ROLES[2])),
    h("button", { type: "submit", className: "primary" }, "Add member"),
    h("p", { id: "member-add-help", className: "help" }, "A user registered by an app of this " +
      "org (its user_id). An admin role with no seat left is lowered to Member."));
    this.section.replaceChildren(
      h("h2", { id: "members-title" }, `Members of ${where}`),
      ...(recursive ? [recursive] : []),
      h("table", { id: "members-table", className: "table" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "User id"), h("th", { scope: "col" }, "Name"),
          h("th", { scope: "col" }, "Role"), h("th", { scope: "col" }, "Group"),
          h("th", { scope: "col" }, h("span", { className: "visually-hidden" }, "Actions")))),
        this.body),
      h("div", { className: "pager" }, this.previous, this.pager, this.next),
      add);
    attempt(() => this.load());
  }

  turn(step) {
    this.page += step;
    attempt(() => this.load());
  }

  async load() {
    const node = this.node;
    const data = await this.api.get(this.api.team(`/groups/${node.id}/users`), {
      page: this.page, per_page: PER_PAGE,
      recursive: this.recursive && node.id !== 0 ? "true" : undefined,
    });
    if (node !== this.node) return;
    const pages = Math.max(1, Math.ceil(data.total / PER_PAGE));
    this.pager.textContent = `Page ${this.page} of ${pages} · ${data.total.toLocaleString("en")} members`;
    this.previous.disabled = this.page <= 1;
    this.next.disabled = this.page >= pages;
    this.body.replaceChildren(...(data.list.length ? data.list.map((member) => this.row(member))
      : [h("tr", {}, h("td", { colspan: 5, className: "empty" }, "No members."))]));
  }

  row(member) {
    const owner = member.is_org_creator || member.role === 1;
    const name = member.name || `user ${member.user_id}`;
    return h("tr", { dataset: { user: String(member.user_id) } },
      h("td", {}, member.user_id),
      h("td", {}, name, owner ? h("span", { className: "badge owner" }, "Owner") : null),
      h("td", {}, h("span", { className: `badge role role-${member.role}` }, ROLES[member.role] || member.role)),
      h("td", {}, member.group_full_name),
      h("td", { className: "actions" },
        h("button", { type: "button", className: "edit", "aria-label": `Change ${name}`,
          onclick: () => attempt(() => this.edit(member)) }, "Change…"),
        owner ? null : h("button", { type: "button", className: "remove danger",
          "aria-label": `Remove ${name}`, onclick: () => attempt(() => this.remove(member)) },
        "Remove…")));
  }

  async add() {
    const userId = byId("member-add-id").value.trim();
    await this.api.post(this.api.team(`/groups/${this.node.id}/users/${encodeURIComponent(userId)}`),
      { role: Number(byId("member-add-role").value) });
    byId("member-add-id").value = "";
    await this.load();
    announce(`Added user ${userId}`);
  }

  async edit(member) {
    byId("member-edit-title").textContent = `Change ${member.name || member.user_id}`;
    byId("member-edit-role").value = "";
    byId("member-edit-groups").value = "";
    const body = await openDialog(byId("member-edit"), () => {
      const change = {};
      const role = byId("member-edit-role").value;
      if (role) change.role = Number(role);
      const groups = byId("member-edit-groups").value.trim();
      if (groups) {
        change.group_ids = groups.split(/[\s,]+/).filter(Boolean).map(Number).filter((id) => id !== 0);
      }
      return change;
    });
    if (!body || Object.keys(body).length === 0) return;
    await this.api.post(this.api.team(`/users/${member.user_id}`), body);
    await this.load();
    announce(`Changed ${member.name || member.user_id}`);
  }

  async remove(member) {
    const name = member.name || `user ${member.user_id}`;
    const whole = this.node.id === 0;
    const text = whole
      ? `${name} (user ${member.user_id}) will leave the directory entirely: every group, and ` +
        "their role. The user itself stays registered and can be added again."
      : `${name} (user ${member.user_id}) will be taken out of “${this.node.name}” only; they ` +
        "stay in the directory and in their other groups.";
    if (!(await confirmAction(`Remove ${name}?`, text, "Remove"))) return;
    await this.api.delete(this.api.team(`/groups/${this.node.id}/users/${member.user_id}`));
    await this.load();
    announce(`Removed ${name}`);
  }
}
