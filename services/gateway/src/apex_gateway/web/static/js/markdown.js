// A small, safe markdown renderer for the assistant's answers. Safety comes first: the
// whole text is HTML-escaped before any markup is recognised, so nothing in a message can
// become a tag or an attribute; the only markup produced is the fixed set below, and
// links keep only http(s) targets. Supported: headings, paragraphs, **bold**, *italic*,
// `code`, fenced code blocks, bullet and numbered lists, block quotes, rules and pipe tables.

export function escapeHtml(text) {
  return String(text)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

function inline(escaped) {
  const codes = [];
  let out = escaped.replace(/`([^`\n]+)`/g, (_m, code) => {
    codes.push(code);
    return `\u0000${codes.length - 1}\u0000`;
  });
  out = out
    .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g,
      (_m, label, href) => `<a href="${href}" rel="noopener noreferrer" target="_blank">${label}</a>`)
    .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
    .replace(/__([^_\n]+)__/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\n]+)\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[\s(])_([^_\n]+)_(?=[\s).,;:!?]|$)/g, "$1<em>$2</em>");
  return out.replace(/\u0000(\d+)\u0000/g, (_m, i) => `<code>${codes[Number(i)]}</code>`);
}

const isTableRow = (line) => /^\s*\|.*\|\s*$/.test(line);
const isTableRule = (line) => /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/.test(line);

function cells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

function table(lines) {
  const head = cells(lines[0]);
  const align = cells(lines[1]).map((c) => (c.endsWith(":") ? "num" : ""));
  const cls = (i) => (align[i] ? ` class="${align[i]}"` : "");
  const th = head.map((c, i) => `<th scope="col"${cls(i)}>${inline(c)}</th>`).join("");
  const body = lines.slice(2).map((row) =>
    `<tr>${cells(row).map((c, i) => `<td${cls(i)}>${inline(c)}</td>`).join("")}</tr>`).join("");
  return `<table><thead><tr>${th}</tr></thead><tbody>${body}</tbody></table>`;
}

function list(lines, ordered) {
  const items = lines.map((l) => `<li>${inline(l.replace(/^\s*(?:[-*+]|\d+[.)])\s+/, ""))}</li>`).join("");
  return ordered ? `<ol>${items}</ol>` : `<ul>${items}</ul>`;
}

const BULLET = /^\s*[-*+]\s+/;
const NUMBERED = /^\s*\d+[.)]\s+/;

// Returns HTML built only from escaped text and the markup above.
export function renderMarkdown(source) {
  const lines = escapeHtml(source || "").replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let i = 0;
  const take = (test) => {
    const block = [];
    while (i < lines.length && test(lines[i])) block.push(lines[i++]);
    return block;
  };
  while (i < lines.length) {
    const line = lines[i];
    if (/^```/.test(line)) {
      i += 1;
      const code = take((l) => !/^```/.test(l));
      i += 1;
      out.push(`<pre><code>${code.join("\n")}</code></pre>`);
    } else if (/^#{1,6}\s/.test(line)) {
      const level = Math.min(6, line.match(/^#+/)[0].length + 2);  // the page owns h1 and h2
      out.push(`<h${level}>${inline(line.replace(/^#+\s*/, ""))}</h${level}>`);
      i += 1;
    } else if (isTableRow(line) && i + 1 < lines.length && isTableRule(lines[i + 1])) {
      out.push(table(take(isTableRow)));
    } else if (BULLET.test(line)) {
      out.push(list(take((l) => BULLET.test(l)), false));
    } else if (NUMBERED.test(line)) {
      out.push(list(take((l) => NUMBERED.test(l)), true));
    } else if (/^&gt;\s?/.test(line)) {
      const quote = take((l) => /^&gt;\s?/.test(l)).map((l) => l.replace(/^&gt;\s?/, ""));
      out.push(`<blockquote>${inline(quote.join("<br>"))}</blockquote>`);
    } else if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      out.push("<hr>");
      i += 1;
    } else if (!line.trim()) {
      i += 1;
    } else {
      const para = take((l) => l.trim() && !/^(```|#{1,6}\s|&gt;)/.test(l) && !BULLET.test(l)
        && !NUMBERED.test(l) && !(isTableRow(l)));
      if (!para.length) para.push(lines[i++]);
      out.push(`<p>${para.map(inline).join("<br>")}</p>`);
    }
  }
  return out.join("\n");
}
