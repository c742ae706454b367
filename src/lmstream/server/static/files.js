// Files on the page: the composer's tray (attach button, paste, drag and drop, removal before
// sending, limits shown before upload), and thumbnails in the conversation.
// A file goes to the server once, as a data: URL; the server keeps it by its SHA-256 and the
// saved chat and every later turn carry only "/api/files/<sha256>". Images are shown through
// blob: URLs; only raster images (png, jpeg, gif, webp) are ever drawn: SVG, HTML and the
// rest are a name chip, never rendered.
import { el } from "./answer.js";

export const RASTER = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const REF = "/api/files/";
const blobs = new Map();     // sha256 -> Blob (this page session: no fetch for what we sent)
const uploads = new Map();   // sha256 -> data: URL, for files the server has not stored yet
let limits = { max_file_bytes: 10 * 1024 * 1024, max_request_bytes: 25 * 1024 * 1024, max_files: 10, types: [...RASTER, "application/pdf", "audio/wav", "audio/mpeg", "text/plain", "text/markdown", "text/csv"] };
let tray = [];               // files waiting in the composer: {file, type, url}
let headersOf = () => ({});

const $ = (id) => document.getElementById(id);
const mib = (n) => (n >= 1048576 ? (n / 1048576).toFixed(n % 1048576 ? 1 : 0) + " MB" : Math.ceil(n / 1024) + " kB");
const short = (t) => t.replace("image/", "").replace("application/", "").replace("audio/mpeg", "mp3").replace("audio/", "").replace("text/plain", "text").replace("text/", "");

// ------------------------------------------------------------------ what a file is, from its bytes
async function sniff(file) {
  const b = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  const s = (i, t) => [...t].every((c, k) => b[i + k] === c.charCodeAt(0));
  if (b[0] === 0x89 && s(1, "PNG")) return "image/png";
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "image/jpeg";
  if (s(0, "GIF8")) return "image/gif";
  if (s(0, "RIFF") && s(8, "WEBP")) return "image/webp";
  if (s(0, "RIFF") && s(8, "WAVE")) return "audio/wav";
  if (s(0, "%PDF-")) return "application/pdf";
  if (s(0, "ID3") || (b[0] === 0xff && (b[1] & 0xe0) === 0xe0)) return "audio/mpeg";
  const head = new TextDecoder("utf-8", { fatal: false }).decode(await file.slice(0, 512).arrayBuffer()).trimStart().toLowerCase();
  if (/^<(!doctype|html|svg|\?xml|script|head|body)/.test(head)) return null; // markup: never carried
  if (file.type.startsWith("text/") || /\.(txt|md|csv)$/i.test(file.name)) return file.type === "text/markdown" || /\.md$/i.test(file.name) ? "text/markdown" : file.type === "text/csv" || /\.csv$/i.test(file.name) ? "text/csv" : "text/plain";
  return null;
}

async function sha256(buf) {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
  return [...d].map((x) => x.toString(16).padStart(2, "0")).join("");
}
function dataUrl(blob) {
  return new Promise((ok, bad) => { const r = new FileReader(); r.onload = () => ok(r.result); r.onerror = () => bad(r.error); r.readAsDataURL(blob); });
}
function base64Blob(url) { // a data: URL -> Blob, without fetch (the page's CSP allows no data: connections)
  const [head, b64] = url.split(",", 2);
  const type = head.slice(5).split(";")[0];
  const bin = atob(b64 || ""); const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes], { type });
}

// ------------------------------------------------------------------ the composer's tray
function say(text) { const n = $("filemsg"); n.textContent = text; n.hidden = !text; }
function hint() {
  $("filehint").textContent = `Attach up to ${limits.max_files} files, ${mib(limits.max_file_bytes)} each (${limits.types.map(short).join(", ")}).`;
}
export async function loadLimits(headers) {
  headersOf = headers;
  hint();
  try {
    const r = await fetch("api/files", { headers: headers(false) });
    if (r.ok) { limits = await r.json(); hint(); $("file").accept = limits.types.join(","); }
  } catch (_) { /* the defaults stand; the server checks anyway */ }
}

export async function addFiles(list) {
  say("");
  for (const file of list) {
    if (tray.length >= limits.max_files) { say(`At most ${limits.max_files} files per message.`); break; }
    if (file.size > limits.max_file_bytes) { say(`${file.name} is ${mib(file.size)}: the limit is ${mib(limits.max_file_bytes)} per file.`); continue; }
    const type = await sniff(file);
    if (!type || !limits.types.includes(type)) { say(`${file.name}: this kind of file cannot be attached (${limits.types.map(short).join(", ")} only).`); continue; }
    const total = tray.reduce((n, t) => n + t.file.size, 0) + file.size;
    if (total > limits.max_request_bytes) { say(`Together the files pass ${mib(limits.max_request_bytes)} per message.`); continue; }
    tray.push({ file, type, url: RASTER.includes(type) ? URL.createObjectURL(file) : null });
  }
  drawTray();
}

function chip(item, onRemove) {
  const c = el("div", "file-chip");
  if (item.url) { const img = el("img", "thumb"); img.src = item.url; img.alt = item.name; c.appendChild(img); }
  else c.appendChild(el("span", "file-kind", short(item.type)));
  c.appendChild(el("span", "file-name", item.name));
  if (onRemove) {
    const x = el("button", "file-remove", "×"); x.type = "button"; x.setAttribute("aria-label", "Remove " + item.name);
    x.onclick = onRemove; c.appendChild(x);
  }
  return c;
}
function drawTray() {
  const box = $("tray"); box.replaceChildren();
  tray.forEach((t, i) => box.appendChild(chip({ name: t.file.name, type: t.type, url: t.url }, () => {
    if (t.url) URL.revokeObjectURL(t.url);
    tray.splice(i, 1); drawTray(); $("input").focus();
  })));
  box.hidden = !tray.length;
}
export function hasFiles() { return tray.length > 0; }

// The tray's files as UI `file` parts (saved with their reference); the tray empties.
export async function takeParts() {
  const parts = [];
  for (const t of tray) {
    const buf = await t.file.arrayBuffer();
    const digest = await sha256(buf);
    blobs.set(digest, new Blob([buf], { type: t.type }));
    uploads.set(digest, await dataUrl(blobs.get(digest)));
    parts.push({ type: "file", mediaType: t.type, filename: t.file.name, url: REF + digest });
    if (t.url) URL.revokeObjectURL(t.url);
  }
  tray = []; drawTray();
  return parts;
}

// What the server gets: a file it has not stored yet goes as its bytes, the rest by reference.
export function forRequest(messages) {
  if (!uploads.size) return messages;
  return messages.map((m) => (!m.parts.some((p) => p.type === "file" && uploads.has(p.url.slice(REF.length))) ? m : {
    ...m, parts: m.parts.map((p) => (p.type === "file" && uploads.has(p.url.slice(REF.length)) ? { ...p, url: uploads.get(p.url.slice(REF.length)) } : p)),
  }));
}
export function stored() { uploads.clear(); } // the server answered: it keeps them now

// ------------------------------------------------------------------ thumbnails in the conversation
async function blobOf(url) {
  if (url.startsWith("data:")) return base64Blob(url);
  if (!url.startsWith(REF)) return null; // the page fetches nothing but its own server's files
  const digest = url.slice(REF.length);
  if (blobs.has(digest)) return blobs.get(digest);
  const r = await fetch("api/files/" + digest, { headers: headersOf(false) });
  if (!r.ok) return null;
  const b = await r.blob(); blobs.set(digest, b); return b;
}
// One file part drawn into `box`: a raster image through a blob: URL, anything else a chip.
export function fileNode(part, img) {
  const type = part.mediaType || "";
  const name = part.filename || short(type) || "file";
  if (!RASTER.includes(type)) return chip({ name, type }, null);
  const node = el("div", "file-chip image");
  img = img || el("img", "thumb");
  img.alt = name; node.appendChild(img);
  blobOf(part.url || "").then((b) => {
    if (!b) { node.replaceWith(chip({ name: name + " (no longer kept)", type }, null)); return; }
    const old = img.src; img.src = URL.createObjectURL(b); if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  });
  return node;
}

// A model's image (or its preview) into `img`, through a blob: URL; false when it is no raster image.
export function setImage(img, url, type) {
  if (!RASTER.includes(type)) return false;
  blobOf(url).then((b) => {
    if (!b) return;
    const old = img.src; img.src = URL.createObjectURL(b); if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  });
  return true;
}

// ------------------------------------------------------------------ wiring
export function wire(onPaste) {
  $("attach").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", (e) => { addFiles([...e.target.files]); e.target.value = ""; });
  $("input").addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length) { e.preventDefault(); addFiles(files); }
    if (onPaste) onPaste();
  });
  const app = $("app");
  app.addEventListener("dragover", (e) => { if (e.dataTransfer?.types?.includes("Files")) { e.preventDefault(); app.classList.add("dropping"); } });
  app.addEventListener("dragleave", (e) => { if (e.target === app) app.classList.remove("dropping"); });
  app.addEventListener("drop", (e) => {
    app.classList.remove("dropping");
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) { e.preventDefault(); addFiles(files); }
  });
}
