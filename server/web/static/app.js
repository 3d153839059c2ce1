// visearch web page: plain JavaScript, no build step, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { image: null, crop: null, info: null, drag: null,
                // paging: how to send the shown query again with a page token, the tokens
                // of the pages seen so far ("" = the first page) and which one is shown
                repeat: null, tokens: [""], page: 0 };
// What the page last sent and got back; the browser test reads it.
window.visearch = { lastResponse: null, lastError: null, searches: 0 };

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { credentials: "same-origin", ...options });
  } catch (err) {
    throw new ApiError(0, "UNAVAILABLE", "the web server cannot be reached: " + err.message);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(response.status, error.code || "HTTP " + response.status,
                       error.message || response.statusText);
  }
  return body;
}

// ---- messages ---------------------------------------------------------------------------
const EXPLAIN = {
  UNAUTHENTICATED: "A token is needed.",
  RESOURCE_EXHAUSTED: "The request is too large or the server is busy.",
  UNAVAILABLE: "The search server is not available (still loading, or down).",
  DEADLINE_EXCEEDED: "The search took too long.",
  NOT_FOUND: "That image is no longer in the index.",
  INVALID_ARGUMENT: "The server could not use this query.",
};

function showMessage(text, busy = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("busy", busy);
  box.hidden = !text;
}

function showError(err) {
  window.visearch.lastError = { status: err.status, code: err.code, message: err.message };
  const lead = EXPLAIN[err.code] || "Something went wrong.";
  showMessage(`${lead} ${err.code}: ${err.message}`);
  $("token-form").hidden = err.code !== "UNAUTHENTICATED";
}

// ---- info -------------------------------------------------------------------------------
async function loadInfo() {
  try {
    const info = await api("/v1/info");
    state.info = info;
    const box = $("info");
    box.textContent = `model ${info.model}${info.pretrained ? " (" + info.pretrained + ")" : ""}` +
      ` · index version ${info.index_version} · ${Number(info.vector_count).toLocaleString()} images` +
      ` · ${info.index_spec}`;
    if (info.untrained) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.id = "untrained";
      badge.title = "random weights: results show the plumbing, not visual similarity";
      badge.textContent = "UNTRAINED";
      box.append(" ", badge);
    }
    $("nprobe").disabled = Boolean(info.exact);
    if (info.exact) $("nprobe").placeholder = "exact";
    if (info.max_k) $("k").max = info.max_k;
    showMessage("");
  } catch (err) {
    $("info").textContent = "not connected";
    showError(err);
  }
}

// ---- searching --------------------------------------------------------------------------
function params() {
  const out = { k: Number($("k").value) || 10 };
  if ($("nprobe").value && !$("nprobe").disabled) out.nprobe = Number($("nprobe").value);
  if ($("filter").value.trim()) out.filter = $("filter").value.trim();
  if ($("min-score").value) out.min_score = Number($("min-score").value);
  if ($("collapse").checked) out.collapse = true;
  return out;
}

async function run(path, options, what, page = 0) {
  showMessage("Searching…", true);
  window.visearch.searches += 1;
  try {
    const result = await api(path, { method: "POST", ...options });
    window.visearch.lastResponse = result;
    showMessage("");
    $("token-form").hidden = true;
    state.page = page;
    render(result, what);
  } catch (err) {
    showError(err);
  }
}

// A new query starts at page 1; the pager sends the same query again with a page token.
function startQuery(send) {
  state.repeat = send;
  state.tokens = [""];
  send(0);
}

function goToPage(page) {
  if (state.repeat && page >= 0 && page < state.tokens.length) state.repeat(page);
}

function searchImage() {
  if (!state.image) return;
  const image = state.image, crop = state.crop;
  startQuery((page) => {
    const form = new FormData();
    form.append("image", image, image.name || "query");
    if (crop) form.append("crop", crop.join(","));
    for (const [key, value] of Object.entries(params())) form.append(key, value);
    if (state.tokens[page]) form.append("page_token", state.tokens[page]);
    run("/v1/search", { body: form }, crop ? `region ${crop.join(",")}` : "image", page);
  });
}

function searchJson(query, what) {
  startQuery((page) => {
    const body = { ...query, ...params() };
    if (state.tokens[page]) body.page_token = state.tokens[page];
    run("/v1/search", { headers: { "Content-Type": "application/json" },
                        body: JSON.stringify(body) }, what, page);
  });
}

// ---- results ----------------------------------------------------------------------------
function commonFolder(paths) {
  if (paths.length < 2) return paths.length ? paths[0].slice(0, paths[0].lastIndexOf("/") + 1) : "";
  let prefix = paths[0];
  for (const p of paths) while (!p.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix.slice(0, prefix.lastIndexOf("/") + 1);
}

function render(result, what) {
  const list = $("results");
  list.replaceChildren();
  const folder = commonFolder(result.hits.map((h) => h.path));
  for (const hit of result.hits) {
    const item = document.createElement("li");
    item.className = "result";
    item.tabIndex = 0;
    item.dataset.id = hit.id;
    item.dataset.path = hit.path;
    item.title = `${hit.path}\nclick: more like this`;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = hit.path;
    img.src = `${hit.thumb}?size=256`;
    const meta = document.createElement("div");
    meta.className = "meta";
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = hit.score.toFixed(4);
    const path = document.createElement("div");
    path.className = "path";
    path.textContent = hit.path.slice(folder.length) || hit.path;
    meta.append(score, path);
    item.append(img, meta);
    const like = () => searchJson({ like_id: hit.id }, `more like ${path.textContent}`);
    item.addEventListener("click", like);
    item.addEventListener("keydown", (e) => { if (e.key === "Enter") like(); });
    list.append(item);
  }
  const t = result.timings;
  $("summary").textContent = `${result.hits.length} results for ${what} from index version ` +
    `${result.index_version} in ${t.total_ms.toFixed(1)} ms` + (folder ? ` · in ${folder}` : "");
  renderPager(result);
}

function renderPager(result) {
  // The token of the page after this one; a shorter history is cut (a new branch).
  state.tokens = state.tokens.slice(0, state.page + 1);
  if (result.next_page_token) state.tokens.push(result.next_page_token);
  $("prev-page").hidden = $("next-page").hidden = false;
  $("prev-page").disabled = state.page === 0;
  $("next-page").disabled = !result.next_page_token;
  $("page-no").textContent = `page ${state.page + 1}`;
  $("pager").hidden = state.page === 0 && !result.next_page_token;
}

// ---- the query image: pick, drop, paste -------------------------------------------------
function setImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    showMessage("That is not an image file.");
    return;
  }
  state.image = file;
  state.crop = null;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.onload = () => { $("stage").hidden = false; $("crop-hint").hidden = false; drawCrop(); };
  preview.src = URL.createObjectURL(file);
  updateCropText();
  searchImage();
}

function wireInputs() {
  $("file").addEventListener("change", (e) => setImage(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    setImage(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
    if (item) setImage(item.getAsFile());
  });
  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (text) searchJson({ text }, `“${text}”`);
  });
  $("prev-page").addEventListener("click", () => goToPage(state.page - 1));
  $("next-page").addEventListener("click", () => goToPage(state.page + 1));
  $("clear-crop").addEventListener("click", () => { state.crop = null; drawCrop(); updateCropText(); searchImage(); });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = encodeURIComponent($("token").value.trim());
    document.cookie = `visearch_token=${token}; path=/; SameSite=Strict`;
    $("token-form").hidden = true;
    loadInfo();
  });
}

// ---- the crop box: drawn with the mouse, sent in the image's own pixels -----------------
function toImagePixels(event) {
  const canvas = $("crop-layer");
  const rect = canvas.getBoundingClientRect();
  const img = $("preview");
  const x = Math.min(Math.max(event.clientX - rect.left, 0), rect.width);
  const y = Math.min(Math.max(event.clientY - rect.top, 0), rect.height);
  return [x * img.naturalWidth / rect.width, y * img.naturalHeight / rect.height];
}

function boxFrom(a, b) {
  const img = $("preview");
  const left = Math.floor(Math.min(a[0], b[0])), top = Math.floor(Math.min(a[1], b[1]));
  const right = Math.min(img.naturalWidth, Math.ceil(Math.max(a[0], b[0])));
  const bottom = Math.min(img.naturalHeight, Math.ceil(Math.max(a[1], b[1])));
  return [left, top, right, bottom];
}

function drawCrop(box = state.crop) {
  const canvas = $("crop-layer");
  const img = $("preview");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!box) return;
  const [l, t, r, b] = box;
  ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.clearRect(l, t, r - l, b - t);
  ctx.strokeStyle = "#2f6fde";
  ctx.lineWidth = Math.max(1, canvas.width / 200);
  ctx.strokeRect(l, t, r - l, b - t);
}

function updateCropText() {
  $("crop-text").textContent = state.crop ? `Region ${state.crop.join(", ")}.` : "";
  $("clear-crop").hidden = !state.crop;
}

function wireCrop() {
  const canvas = $("crop-layer");
  canvas.addEventListener("pointerdown", (e) => {
    state.drag = toImagePixels(e);
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (state.drag) drawCrop(boxFrom(state.drag, toImagePixels(e)));
  });
  canvas.addEventListener("pointerup", (e) => {
    if (!state.drag) return;
    const box = boxFrom(state.drag, toImagePixels(e));
    state.drag = null;
    if (box[2] - box[0] >= 2 && box[3] - box[1] >= 2) {
      state.crop = box;
      updateCropText();
      drawCrop();
      searchImage();
    } else {
      drawCrop();
    }
  });
}

wireInputs();
wireCrop();
loadInfo();
