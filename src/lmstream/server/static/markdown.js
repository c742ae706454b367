// Markdown for streamed answers: markdown-it's parser (vendored, html off) and a renderer that
// builds DOM nodes from its tokens. No string from the model is ever parsed as HTML: text goes
// in through text nodes, links keep http/https/mailto only, images become plain links (the page
// never fetches what a model names).
//
// Streaming is linear: finished top-level blocks are rendered once and frozen; only the last
// (still growing) block is parsed and rebuilt, at most once per animation frame, and less often
// when that block is large (see MarkdownView.render).
import markdownit from "./vendor/markdown-it.min.mjs";

const md = markdownit({ html: false, linkify: false, typographer: false, breaks: true });
const SAFE_URL = /^(https?:|mailto:)/i;
md.validateLink = (url) => SAFE_URL.test(url.trim());

// Elements a token may open; anything else becomes a plain <div>/<span>.
const BLOCKS = new Set(["p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote",
  "table", "thead", "tbody", "tr", "th", "td"]);
const INLINE = new Set(["strong", "em", "s", "a"]);

function open(t) {
  const tag = BLOCKS.has(t.tag) || INLINE.has(t.tag) ? t.tag : (t.block ? "div" : "span");
  const e = document.createElement(tag);
  if (tag === "a") {
    const href = t.attrGet("href") || "";
    if (SAFE_URL.test(href)) { e.href = href; e.target = "_blank"; e.rel = "noopener noreferrer nofollow"; }
  } else if (tag === "ol") {
    const start = parseInt(t.attrGet("start") || "", 10);
    if (start > 1) e.start = start;
  } else if (tag === "th" || tag === "td") {
    const m = /text-align:(left|right|center)/.exec(t.attrGet("style") || "");
    if (m) e.style.textAlign = m[1];
  }
  return e;
}

export function codeBlock(code, info) {
  const box = document.createElement("div"); box.className = "code";
  const head = document.createElement("div"); head.className = "code-head";
  const lang = document.createElement("span"); lang.textContent = (info || "").trim().split(/\s+/)[0] || "code";
  const copy = document.createElement("button"); copy.type = "button"; copy.className = "copy"; copy.textContent = "Copy";
  copy.setAttribute("aria-label", "Copy code");
  head.append(lang, copy);
  const pre = document.createElement("pre"); const c = document.createElement("code");
  c.textContent = code; pre.appendChild(c); box.append(head, pre);
  return box;
}

function inline(children, parent) {
  const stack = [parent];
  for (const t of children || []) {
    const top = stack[stack.length - 1];
    if (t.nesting === 1) { const e = open(t); top.appendChild(e); stack.push(e); continue; }
    if (t.nesting === -1) { if (stack.length > 1) stack.pop(); continue; }
    switch (t.type) {
      case "code_inline": { const c = document.createElement("code"); c.textContent = t.content; top.appendChild(c); break; }
      case "hardbreak": top.appendChild(document.createElement("br")); break;
      case "softbreak": top.appendChild(document.createTextNode("\n")); break;
      case "image": { // never load it: show its description, linked when the address is safe
        const src = t.attrGet("src") || ""; const alt = t.content || src;
        if (SAFE_URL.test(src)) { const a = document.createElement("a"); a.href = src; a.target = "_blank"; a.rel = "noopener noreferrer nofollow"; a.textContent = "🖼 " + alt; top.appendChild(a); }
        else top.appendChild(document.createTextNode(alt));
        break;
      }
      default: if (t.content) top.appendChild(document.createTextNode(t.content));
    }
  }
}

// Block tokens -> DOM under `parent`.
export function renderTokens(tokens, parent) {
  const stack = [parent];
  for (const t of tokens) {
    const top = stack[stack.length - 1];
    if (t.nesting === 1) {
      if (t.hidden) { stack.push(top); continue; } // tight list paragraphs: no <p>
      const e = open(t); top.appendChild(e); stack.push(e); continue;
    }
    if (t.nesting === -1) { if (stack.length > 1) stack.pop(); continue; }
    if (t.type === "inline") inline(t.children, top);
    else if (t.type === "fence" || t.type === "code_block") top.appendChild(codeBlock(t.content.replace(/\n$/, ""), t.info));
    else if (t.type === "hr") top.appendChild(document.createElement("hr"));
    else if (t.content) top.appendChild(document.createTextNode(t.content)); // html_block cannot occur (html off)
  }
}

// Top-level blocks of a token list: [{line, tokens}], `line` where the block starts.
function blocks(tokens) {
  const out = [];
  for (const t of tokens) {
    if (t.level === 0 && t.nesting !== -1) out.push({ line: t.map ? t.map[0] : 0, tokens: [] });
    if (out.length) out[out.length - 1].tokens.push(t);
  }
  return out;
}

function lineOffset(text, line) {
  let at = 0;
  for (let i = 0; i < line; i++) { const n = text.indexOf("\n", at); if (n < 0) return text.length; at = n + 1; }
  return at;
}

// One streamed markdown text in `root`. append() is cheap; render() does the work.
export class MarkdownView {
  constructor(root) {
    this.root = root;
    this.text = "";
    this.frozen = 0;          // text before this offset is rendered for good
    this.live = document.createElement("div"); this.live.className = "live";
    root.appendChild(this.live);
    this.rendered = -1;       // text length at the last render
    this.cost = 0;            // ms the last render of the live block took
    this.next = 0;            // not before this time (performance.now) unless final
  }
  append(delta) { this.text += delta; }
  set(text) { this.text = text; this.frozen = 0; this.root.replaceChildren(this.live); this.live.replaceChildren(); this.rendered = -1; }
  // Renders what changed. A large live block costs more to rebuild, so it is rebuilt less often
  // (at most ~20% of the time on it): total work stays linear however long one block grows.
  render(final) {
    if (this.rendered === this.text.length) return false;
    const now = performance.now();
    if (!final && now < this.next) return true; // still dirty: try again next frame
    const tail = this.text.slice(this.frozen);
    const bs = blocks(md.parse(tail, {}));
    if (bs.length > 1) {
      const done = document.createDocumentFragment();
      for (const b of bs.slice(0, -1)) renderTokens(b.tokens, done);
      this.root.insertBefore(done, this.live);
      this.frozen += lineOffset(tail, bs[bs.length - 1].line);
    }
    const fresh = document.createElement("div"); fresh.className = "live";
    if (bs.length) renderTokens(bs[bs.length - 1].tokens, fresh);
    this.root.replaceChild(fresh, this.live); this.live = fresh;
    this.rendered = this.text.length;
    this.cost = performance.now() - now;
    this.next = performance.now() + this.cost * 4;
    return false;
  }
}

export function renderMarkdown(text, root) { const v = new MarkdownView(root); v.append(text); v.render(true); return v; }
