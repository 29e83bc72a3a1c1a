// The selected group: its fields, and rename, reorder, create, move and delete.

import { announce, attempt, byId, confirmAction, h, openDialog, SOURCES } from "./dom.js";

export class GroupPanel {
  constructor(section, api, tree) {
    this.section = section;
    this.api = api;
    this.tree = tree;
    this.node = null;
  }

  show(node) {
    this.node = node;
    const group = node.group;
    const title = h("h2", { id: "group-title" }, group ? group.name : "Whole directory");
    const create = this.createForm(node);
    if (!group) {
      this.section.replaceChildren(title,
        h("p", {}, "The directory's root. Its members are every member of the directory; " +
          "groups created here are top-level groups."), create);
      return;
    }
    const field = (label, value) => [h("dt", {}, label), h("dd", {}, value === "" ? "—" : value)];
    const facts = h("dl", { className: "facts" },
      field("Id", group.id),
      field("Remote id", group.remote_id),
      field("Source", `${SOURCES[group.source] || group.source} (${group.source})`),
      field("Full name", group.full_name),
      field("Order", group.order),
      field("Updated", group.updated_at || group.upd_at));
    const edit = h("form", { id: "group-edit", className: "grid", onsubmit: (event) => {
      event.preventDefault();
      attempt(() => this.save());
    } },
    h("h3", {}, "Rename or reorder"),
    h("label", { for: "group-name" }, "Name"),
    h("input", { id: "group-name", required: true, maxlength: 64, value: group.name }),
    h("label", { for: "group-order" }, "Order (larger first)"),
    h("input", { id: "group-order", type: "number", step: 1, value: group.order }),
    h("label", { for: "group-remote" }, "Remote id"),
    h("input", { id: "group-remote", maxlength: 64, spellcheck: "false", value: group.remote_id }),
    h("div", { className: "buttons" }, h("button", { type: "submit", className: "primary" }, "Save")));
    const actions = h("div", { className: "buttons" },
      h("button", { type: "button", id: "group-move", onclick: () => attempt(() => this.moveDialog()) },
        "Move to…"),
      h("button", { type: "button", id: "group-delete", className: "danger",
        onclick: () => attempt(() => this.delete()) }, "Delete…"));
    this.section.replaceChildren(title, facts, actions, h("div", { className: "forms" }, edit, create));
  }

  createForm(node) {
    return h("form", { id: "group-create", className: "grid", onsubmit: (event) => {
      event.preventDefault();
      attempt(() => this.create());
    } },
    h("h3", {}, node.id === 0 ? "New top-level group" : "New subgroup"),
    h("label", { for: "new-name" }, "Name"),
    h("input", { id: "new-name", required: true, maxlength: 64 }),
    h("label", { for: "new-remote" }, "Remote id (optional)"),
    h("input", { id: "new-remote", maxlength: 64, spellcheck: "false" }),
    h("label", { for: "new-order" }, "Order"),
    h("input", { id: "new-order", type: "number", step: 1, value: 0 }),
    h("div", { className: "buttons" }, h("button", { type: "submit", className: "primary" }, "Create")));
  }

  async save() {
    const node = this.node;
    await this.api.post(this.api.team(`/groups/${node.id}`), {
      name: byId("group-name").value,
      order: Number(byId("group-order").value || 0),
      remote_id: byId("group-remote").value,
    });
    const group = await this.api.get(this.api.team(`/groups/${node.id}`));
    this.tree.upsert(group, node.level);
    await this.tree.refresh(node.parentId);
    this.tree.select(node.id, true);
    announce(`Saved ${group.name}`);
  }

  async create() {
    const parent = this.node;
    const data = await this.api.post(this.api.team("/groups"), {
      name: byId("new-name").value,
      parent_id: parent.id,
      order: Number(byId("new-order").value || 0),
      remote_id: byId("new-remote").value,
    });
    await this.tree.refresh(parent.id);
    await this.tree.reveal(data.group_id);
    announce(`Created ${data.name}`);
  }

  /** Moves a group under another (`0`: to the top level); drag and drop and the dialog. */
  async move(id, to) {
    const node = this.tree.nodes.get(id);
    const from = node.parentId;
    await this.api.post(this.api.team(`/groups/${id}`), { name: node.name, from_id: from, to_id: to });
    // Its subtree's levels changed: read it again when it is opened.
    Object.assign(node, { children: null, expanded: false, pages: 0, total: 0 });
    await this.tree.refresh(from);
    await this.tree.refresh(to);
    await this.tree.reveal(id);
    const target = this.tree.nodes.get(to);
    announce(`Moved ${node.name} under ${target ? target.name : `group ${to}`}`);
  }

  async moveDialog() {
    const node = this.node;
    const choices = byId("move-choices");
    const choice = (id, label, checked) => h("label", { className: "choice" },
      h("input", { type: "radio", name: "move-to", value: id, checked }), ` ${label}`);
    const parentName = node.parentId === 0 ? "the top level" : this.tree.nodes.get(node.parentId)?.name;
    byId("move-text").textContent = `Move “${node.name}” (id ${node.id}) and everything below ` +
      `it, now under ${parentName || `group ${node.parentId}`}, to:`;
    choices.replaceChildren(choice(0, "Top level", true));
    byId("move-search").value = "";
    const find = async () => {
      const data = await this.api.get(this.api.team("/groups"), {
        keyword: byId("move-search").value, per_page: 20,
      });
      choices.replaceChildren(choice(0, "Top level", true), ...data.list
        .filter((group) => group.id !== node.id)
        .map((group) => choice(group.id, `${group.full_name} (id ${group.id})`, false)));
    };
    const findButton = byId("move-find");
    const onFind = () => attempt(find);
    const onEnter = (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        onFind();
      }
    };
    findButton.addEventListener("click", onFind);
    byId("move-search").addEventListener("keydown", onEnter);
    const to = await openDialog(byId("move"), () => {
      const checked = choices.querySelector("input:checked");
      return checked ? Number(checked.value) : undefined;
    });
    findButton.removeEventListener("click", onFind);
    byId("move-search").removeEventListener("keydown", onEnter);
    if (to !== null) await this.move(node.id, to);
  }

  async delete() {
    const node = this.node;
    const [children, members] = await Promise.all([
      this.api.get(this.api.team("/groups"), { parent_id: node.id, per_page: 1 }),
      this.api.get(this.api.team(`/groups/${node.id}/users`), { per_page: 1 }),
    ]);
    const remote = node.group.remote_id ? `, remote id “${node.group.remote_id}”` : "";
    let text = `“${node.name}” (id ${node.id}${remote}) will be deleted. It is kept as a ` +
      "tombstone so that syncing clients see the deletion, and its remote id can be reused. ";
    text += children.total || members.total
      ? `It still has ${children.total} subgroups and ${members.total} direct members, so the ` +
        "server will refuse: move or remove them first."
      : "It has no subgroups and no members.";
    if (!(await confirmAction(`Delete ${node.name}?`, text, "Delete"))) return;
    await this.api.post(this.api.team("/groups/batch_delete"), { group_ids: [node.id] });
    const parent = node.parentId;
    this.tree.remove(node.id);
    await this.tree.refresh(parent);
    this.tree.select(parent, true);
    announce(`Deleted ${node.name}`);
  }
}
