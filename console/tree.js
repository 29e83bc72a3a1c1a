// The department tree: a WAI-ARIA tree (arrow keys, Home/End, Enter), loaded lazily one page
// of children at a time, with drag and drop to move a group under another.

import { attempt, h, markAfterPaint, SOURCES } from "./dom.js";

/** Children fetched per request; a "show more" row loads the next page. */
export const PAGE = 200;
const DRAG_TYPE = "application/x-contactsd-group";
const KEYS = new Set(["ArrowDown", "ArrowUp", "ArrowLeft", "ArrowRight", "Home", "End", "Enter", " "]);

export class Tree {
  constructor(element, api, { onSelect, onDrop }) {
    this.element = element;
    this.api = api;
    this.onSelect = onSelect;
    this.onDrop = onDrop;
    this.nodes = new Map();
    this.rows = [];
    this.focusedKey = "0";
    this.selectedId = 0;
    element.addEventListener("keydown", (event) => this.keydown(event));
    element.addEventListener("click", (event) => this.click(event));
    element.addEventListener("focusin", (event) => this.focusin(event));
    element.addEventListener("dragstart", (event) => this.dragstart(event));
    element.addEventListener("dragover", (event) => this.dragover(event));
    element.addEventListener("dragleave", (event) => this.dragleave(event));
    element.addEventListener("drop", (event) => this.drop(event));
  }

  /** Starts over with the top level of the directory. */
  async start() {
    this.nodes.clear();
    this.nodes.set(0, {
      id: 0, name: `Whole directory (team ${this.api.session.teamId})`, parentId: null,
      level: 1, expanded: true, children: null, pages: 0, total: 0, group: null,
    });
    this.focusedKey = "0";
    this.selectedId = 0;
    await this.loadChildren(0);
    this.render();
  }

  /** Records a group from an API answer. */
  upsert(group, level) {
    let node = this.nodes.get(group.id);
    if (!node) {
      node = { id: group.id, expanded: false, children: null, pages: 0, total: 0 };
      this.nodes.set(group.id, node);
    }
    Object.assign(node, { name: group.name, parentId: group.parent_id, level, group });
    return node;
  }

  /** Loads the first (or the next) page of a group's children. */
  async loadChildren(id, more = false) {
    const node = this.nodes.get(id);
    const page = more ? node.pages + 1 : 1;
    const data = await this.api.get(this.api.team("/groups"), {
      parent_id: id, page, per_page: PAGE,
    });
    const ids = data.list.map((group) => this.upsert(group, node.level + 1).id);
    if (more && node.children) {
      const known = new Set(node.children);
      node.children.push(...ids.filter((child) => !known.has(child)));
    } else {
      node.children = ids;
    }
    node.pages = page;
    node.total = data.total;
  }

  async expand(id) {
    performance.mark(`console:expand:${id}`);
    const node = this.nodes.get(id);
    if (!node.children) await this.loadChildren(id);
    node.expanded = true;
    this.render();
    markAfterPaint(`console:expanded:${id}`);
  }

  collapse(id) {
    this.nodes.get(id).expanded = false;
    this.render();
  }

  async loadMore(id) {
    await this.loadChildren(id, true);
    this.render();
  }

  /** Reloads a group's first page of children (after a create, move or delete under it). */
  async refresh(id) {
    const node = this.nodes.get(id);
    if (node && node.children) await this.loadChildren(id);
    this.render();
  }

  /** Opens every ancestor of a group (reading them one by one), then selects it. */
  async reveal(id) {
    const chain = [];
    for (let current = id; current !== 0;) {
      const group = await this.api.get(this.api.team(`/groups/${current}`));
      chain.unshift(group);
      current = group.parent_id;
    }
    let parent = this.nodes.get(0);
    for (const group of chain) {
      if (!parent.children) await this.loadChildren(parent.id);
      parent.expanded = true;
      const node = this.upsert(group, parent.level + 1);
      // A child beyond the loaded pages is shown after them until its page is loaded.
      if (!parent.children.includes(node.id)) parent.children.push(node.id);
      parent = node;
    }
    this.render();
    this.select(id, true);
  }

  /** Forgets a deleted group. */
  remove(id) {
    const node = this.nodes.get(id);
    const parent = node && this.nodes.get(node.parentId);
    if (parent && parent.children) {
      parent.children = parent.children.filter((child) => child !== id);
    }
    this.nodes.delete(id);
  }

  select(id, focus = false) {
    const node = this.nodes.get(id);
    if (!node) return;
    this.selectedId = id;
    for (const row of this.element.querySelectorAll('[aria-selected="true"]')) {
      row.setAttribute("aria-selected", "false");
    }
    const row = this.rowElement(String(id));
    if (row) row.setAttribute("aria-selected", "true");
    if (focus) this.focus(String(id));
    this.onSelect(node);
  }

  // ----- rendering ---------------------------------------------------------------------------

  render() {
    const hadFocus = this.element.contains(document.activeElement);
    this.rows = [];
    const fragment = document.createDocumentFragment();
    const walk = (node, position, size) => {
      this.rows.push(String(node.id));
      fragment.append(this.nodeRow(node, position, size));
      if (!node.expanded || !node.children) return;
      node.children.forEach((child, index) => {
        const childNode = this.nodes.get(child);
        if (childNode) walk(childNode, index + 1, Math.max(node.total, node.children.length));
      });
      const left = node.total - node.pages * PAGE;
      if (left > 0) {
        this.rows.push(`more:${node.id}`);
        fragment.append(this.moreRow(node, left));
      }
    };
    walk(this.nodes.get(0), 1, 1);
    if (!this.rows.includes(this.focusedKey)) this.focusedKey = String(this.selectedId);
    if (!this.rows.includes(this.focusedKey)) this.focusedKey = "0";
    this.element.replaceChildren(fragment);
    const focused = this.rowElement(this.focusedKey);
    if (focused) {
      focused.tabIndex = 0;
      if (hadFocus) focused.focus();
    }
  }

  nodeRow(node, position, size) {
    const leaf = node.children && node.children.length === 0 && node.total === 0;
    const group = node.group;
    const row = h("div", {
      role: "treeitem",
      id: `tree-${node.id}`,
      className: "node",
      tabindex: "-1",
      draggable: node.id !== 0 ? "true" : null,
      dataset: { key: String(node.id), id: String(node.id) },
      "aria-level": node.level,
      "aria-posinset": position,
      "aria-setsize": size,
      "aria-expanded": leaf ? null : String(node.expanded),
      "aria-selected": String(node.id === this.selectedId),
    },
    h("span", { className: "twisty", "aria-hidden": "true" }, leaf ? "" : node.expanded ? "▾" : "▸"),
    h("span", { className: "name" }, node.name),
    group && group.remote_id ? h("span", { className: "remote", title: "remote id" }, group.remote_id) : null,
    group ? h("span", { className: `source source-${group.source}`, title: "source" },
      SOURCES[group.source] || group.source) : null,
    node.children && node.total > 0
      ? h("span", { className: "count", title: "subgroups" }, node.total.toLocaleString("en")) : null);
    row.style.paddingInlineStart = `${(node.level - 1) * 1.1 + 0.3}rem`;
    return row;
  }

  moreRow(node, left) {
    const next = Math.min(left, PAGE);
    const row = h("div", {
      role: "treeitem",
      className: "more",
      tabindex: "-1",
      dataset: { key: `more:${node.id}`, more: String(node.id) },
      "aria-level": node.level + 1,
    }, `Show ${next.toLocaleString("en")} more (${left.toLocaleString("en")} not shown)`);
    row.style.paddingInlineStart = `${node.level * 1.1 + 0.3}rem`;
    return row;
  }

  rowElement(key) {
    return this.element.querySelector(`[data-key="${CSS.escape(key)}"]`);
  }

  focus(key) {
    const previous = this.rowElement(this.focusedKey);
    if (previous) previous.tabIndex = -1;
    this.focusedKey = key;
    const row = this.rowElement(key);
    if (row) {
      row.tabIndex = 0;
      row.focus();
      row.scrollIntoView({ block: "nearest" });
    }
  }

  // ----- input -------------------------------------------------------------------------------

  async activate(key) {
    if (key.startsWith("more:")) {
      const parent = Number(key.slice(5));
      const index = this.rows.indexOf(key);
      await this.loadMore(parent);
      this.focus(this.rows[index] || String(parent));
    } else {
      this.select(Number(key), true);
    }
  }

  keydown(event) {
    if (!KEYS.has(event.key)) return;
    event.preventDefault();
    attempt(() => this.key(event.key));
  }

  async key(pressed) {
    const key = this.focusedKey;
    const index = this.rows.indexOf(key);
    const node = key.startsWith("more:") ? null : this.nodes.get(Number(key));
    const expandable = node && !(node.children && node.children.length === 0 && node.total === 0);
    switch (pressed) {
      case "ArrowDown":
        if (index + 1 < this.rows.length) this.focus(this.rows[index + 1]);
        break;
      case "ArrowUp":
        if (index > 0) this.focus(this.rows[index - 1]);
        break;
      case "Home":
        this.focus(this.rows[0]);
        break;
      case "End":
        this.focus(this.rows[this.rows.length - 1]);
        break;
      case "ArrowRight":
        if (node && expandable && !node.expanded) {
          await this.expand(node.id);
          this.focus(key);
        } else if (node && node.expanded && index + 1 < this.rows.length) {
          this.focus(this.rows[index + 1]);
        }
        break;
      case "ArrowLeft":
        if (node && node.expanded && node.id !== 0) {
          this.collapse(node.id);
          this.focus(key);
        } else if (node && node.parentId !== null) {
          this.focus(String(node.parentId));
        } else if (!node) {
          this.focus(key.slice(5));
        }
        break;
      case "Enter":
      case " ":
        await this.activate(key);
        break;
    }
  }

  /** Focus moved onto a row another way (a click, a pointer, an assistive tool). */
  focusin(event) {
    const row = event.target.closest("[data-key]");
    if (!row || row.dataset.key === this.focusedKey) return;
    const previous = this.rowElement(this.focusedKey);
    if (previous) previous.tabIndex = -1;
    this.focusedKey = row.dataset.key;
    row.tabIndex = 0;
  }

  click(event) {
    attempt(() => this.clicked(event));
  }

  async clicked(event) {
    const row = event.target.closest("[data-key]");
    if (!row) return;
    const key = row.dataset.key;
    if (event.target.closest(".twisty") && !key.startsWith("more:")) {
      const node = this.nodes.get(Number(key));
      this.focusedKey = key;
      if (node.expanded) this.collapse(node.id);
      else await this.expand(node.id);
      return;
    }
    this.focusedKey = key;
    await this.activate(key);
  }

  dragstart(event) {
    const row = event.target.closest("[data-id]");
    if (!row || row.dataset.id === "0") return;
    event.dataTransfer.setData(DRAG_TYPE, row.dataset.id);
    event.dataTransfer.effectAllowed = "move";
  }

  dragover(event) {
    const row = event.target.closest("[data-id]");
    if (!row || !event.dataTransfer.types.includes(DRAG_TYPE)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    row.classList.add("drop-target");
  }

  dragleave(event) {
    const row = event.target.closest("[data-id]");
    if (row) row.classList.remove("drop-target");
  }

  drop(event) {
    const row = event.target.closest("[data-id]");
    if (!row) return;
    event.preventDefault();
    row.classList.remove("drop-target");
    const moved = Number(event.dataTransfer.getData(DRAG_TYPE));
    const target = Number(row.dataset.id);
    if (moved && moved !== target) this.onDrop(moved, target);
  }
}
