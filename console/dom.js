// Small DOM helpers: building elements, the alert line, the confirmation dialog.

/** `h("button", {type: "button", onclick: f}, "Save")`: an element with attributes and children. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "className") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export const byId = (id) => document.getElementById(id);

/** Shows an error (an ApiError's message is the server's) until the next success. */
export function showError(error) {
  const alert = byId("alert");
  const type = error.type ? ` (${error.code} / ${error.type})` : "";
  alert.textContent = `${error.message}${type}`;
  alert.hidden = false;
}

export function clearError() {
  const alert = byId("alert");
  alert.hidden = true;
  alert.textContent = "";
}

/** A polite announcement for screen readers, also shown in the page's `data-status`. */
export function announce(message) {
  byId("status").textContent = message;
  document.body.dataset.status = message;
}

/** Opens a dialog whose form resolves the promise: the submit value, or null when cancelled. */
export function openDialog(dialog, onSubmit) {
  return new Promise((resolve) => {
    const form = dialog.querySelector("form");
    const cleanup = () => {
      form.removeEventListener("submit", submit);
      dialog.removeEventListener("cancel", cancel);
      for (const button of cancels) button.removeEventListener("click", cancel);
    };
    const submit = (event) => {
      event.preventDefault();
      const value = onSubmit ? onSubmit() : true;
      if (value === undefined) return;
      cleanup();
      dialog.close();
      resolve(value);
    };
    const cancel = (event) => {
      event.preventDefault();
      cleanup();
      dialog.close();
      resolve(null);
    };
    const cancels = [...dialog.querySelectorAll('button[value="cancel"]')];
    form.addEventListener("submit", submit);
    dialog.addEventListener("cancel", cancel);
    for (const button of cancels) button.addEventListener("click", cancel);
    dialog.showModal();
  });
}

/** Asks before something that cannot be undone; resolves true when confirmed. */
export async function confirmAction(title, text, okLabel) {
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  byId("confirm-ok").textContent = okLabel;
  return (await openDialog(byId("confirm"))) === true;
}

/** Runs an action, showing its failure as the API's message: resolves to true or false. */
export async function attempt(action) {
  try {
    await action();
    clearError();
    return true;
  } catch (error) {
    showError(error);
    return false;
  }
}

/** A mark for the browser benchmark, set once the next frame has been painted. */
export function markAfterPaint(name) {
  requestAnimationFrame(() => setTimeout(() => performance.mark(name), 0));
}

export const ROLES = { 1: "Owner", 2: "Team admin", 3: "Survey admin", 4: "Member" };
export const SOURCES = { 1: "API", 2: "sync" };
