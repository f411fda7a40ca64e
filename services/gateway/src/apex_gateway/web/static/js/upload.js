// Usage upload: the file goes as is to POST /api/v1/usage (CSV, NDJSON or JSON, told by
// its name); the answer names every rejected row with its line and reason.

import { ApiError } from "./session.js";

const TYPES = { csv: "text/csv", ndjson: "application/x-ndjson", jsonl: "application/x-ndjson", json: "application/json" };

function contentType(file) {
  const ext = (file.name.split(".").pop() || "").toLowerCase();
  return TYPES[ext] || file.type || "application/octet-stream";
}

function line(text, tag = "p") {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

function showResult(out, result) {
  const rejected = result.rejected || [];
  const total = result.rejected_total ?? rejected.length;
  const summary = `Accepted ${result.accepted} row${result.accepted === 1 ? "" : "s"}, `
    + `${result.duplicates} duplicate${result.duplicates === 1 ? "" : "s"}, ${total} rejected.`;
  out.replaceChildren(line(summary));
  if (rejected.length) {
    const list = document.createElement("ul");
    list.className = "upload-errors";
    list.setAttribute("aria-label", "Rejected rows");
    for (const row of rejected) list.append(line(`Line ${row.line}: ${row.error}`, "li"));
    out.append(list);
    if (total > rejected.length) out.append(line(`…and ${total - rejected.length} more.`));
  }
}

export function bindUpload(session, form, input, out) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = input.files && input.files[0];
    if (!file) {
      out.replaceChildren(line("Choose a file first."));
      input.focus();
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    out.replaceChildren(line(`Uploading ${file.name}…`));
    try {
      const result = await session.api("POST", "/api/v1/usage", { body: file, headers: { "Content-Type": contentType(file) } });
      showResult(out, result);
    } catch (error) {
      out.replaceChildren(line(error instanceof ApiError ? `Upload refused: ${error.message}` : "Upload failed: the server could not be reached."));
    } finally {
      button.disabled = false;
    }
  });
}
