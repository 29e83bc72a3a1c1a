// Reads a snapshot file (JSON, NDJSON or CSV, in the shapes of docs/SYNC.md) into the JSON body
// of the sync call. Options inside the file are ignored: the form decides them.

/** `{groups, members}` of a file's text; throws an Error naming the bad line. */
export function parseSnapshot(text, name) {
  const start = text.trimStart();
  if (/\.csv$/i.test(name) || !start.startsWith("{")) return fromCsv(text);
  try {
    const whole = JSON.parse(text);
    return { groups: whole.groups || [], members: whole.members || [] };
  } catch {
    return fromNdjson(text);
  }
}

function fromNdjson(text) {
  const groups = [];
  const members = [];
  text.split(/\r?\n/).forEach((line, index) => {
    if (!line.trim()) return;
    let value;
    try {
      value = JSON.parse(line);
    } catch {
      throw new Error(`Line ${index + 1} is not JSON.`);
    }
    const { kind, ...fields } = value;
    if (kind === "group") groups.push(fields);
    else if (kind === "member") members.push(fields);
    else if (kind !== "options") throw new Error(`Line ${index + 1}: unknown kind ${JSON.stringify(kind)}.`);
  });
  return { groups, members };
}

/** RFC 4180 fields: quotes, doubled quotes, commas and line breaks inside quotes. */
function csvRows(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += c;
  }
  if (field !== "" || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((cells) => cells.some((cell) => cell.trim() !== ""));
}

function integer(value, fallback, where) {
  if (value.trim() === "") return fallback;
  const number = Number(value);
  if (!Number.isInteger(number)) throw new Error(`${where}: “${value}” is not an integer.`);
  return number;
}

function fromCsv(text) {
  const [header, ...rows] = csvRows(text.replace(/^\uFEFF/, ""));
  if (!header || !header.includes("kind")) throw new Error("The CSV file needs a header row with a kind column.");
  const groups = [];
  const members = [];
  rows.forEach((cells, index) => {
    const where = `Row ${index + 2}`;
    const cell = (column) => (cells[header.indexOf(column)] ?? "").trim();
    const kind = cell("kind");
    if (kind === "group") {
      groups.push({ remote_id: cell("remote_id"), name: cell("name"),
        parent_remote_id: cell("parent_remote_id"), order: integer(cell("order"), 0, where) });
    } else if (kind === "member") {
      const ids = cell("group_remote_ids");
      members.push({ openid: cell("openid"), nickname: cell("nickname"), avatar: cell("avatar"),
        role: integer(cell("role"), 4, where), group_remote_ids: ids ? ids.split("|") : [] });
    } else {
      throw new Error(`${where}: kind must be group or member, not “${kind}”.`);
    }
  });
  return { groups, members };
}
