// The playground: upload a video through /v1/files, show the frames each sampling strategy picks
// (/v1/files/{id}/frames), ask through /v1/chat/completions and stream the answer. Public API only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, file: null, busy: false, maxTokens: 256 };

// --- API key: from ?key= (then dropped from the address bar) or typed; kept for this tab only ---
function initKey() {
  const params = new URLSearchParams(location.search);
  if (params.has("key")) {
    sessionStorage.setItem("playground-key", params.get("key"));
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
  $("key").value = sessionStorage.getItem("playground-key") || "";
  $("key").addEventListener("change", () => {
    sessionStorage.setItem("playground-key", $("key").value.trim());
    loadModel();
  });
}

function authHeaders(extra = {}) {
  const key = $("key").value.trim();
  return key ? { ...extra, Authorization: "Bearer " + key } : extra;
}

// --- errors, worded by the API ---
function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function apiMessage(status, text) {
  try {
    const error = JSON.parse(text).error;
    if (error && error.message) {
      return `${status}: ${error.message}` + (error.param ? ` (${error.param})` : "");
    }
  } catch (_) { /* not JSON: fall through */ }
  return `${status}: ${text.slice(0, 300) || "request failed"}`;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  if (!response.ok) {
    throw new Error(apiMessage(response.status, await response.text()));
  }
  return response;
}

async function loadModel() {
  try {
    const models = await (await api("v1/models")).json();
    state.model = models.data[0].id;
    $("model").textContent = "Model: " + state.model;
  } catch (error) {
    const hint = error.message.startsWith("401:") ? "type the server's API key below; " : "";
    $("model").textContent = "Model: unknown (" + hint + error.message + ")";
  }
}

// --- what the page needs before any key: is the model a toy (the demo's), and how long answers should be ---
async function loadConfig() {
  try {
    const config = await (await fetch("playground/config.json")).json();
    $("toy-note").hidden = !config.toy_model;
    state.maxTokens = config.max_tokens;
    $("max-tokens").value = String(config.max_tokens);
  } catch (_) { /* an older server: keep the page's defaults */ }
}

// --- upload with a progress bar (XMLHttpRequest: fetch reports no upload progress) ---
function upload(file) {
  clearError();
  state.file = null;
  setReady(false);
  $("facts").hidden = true;
  $("strips").replaceChildren();
  const bar = $("progress");
  bar.hidden = false;
  bar.value = 0;
  const form = new FormData();
  form.append("file", file);
  form.append("purpose", "user_data");
  const request = new XMLHttpRequest();
  request.open("POST", "v1/files");
  for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) bar.value = (100 * event.loaded) / event.total;
  };
  request.onerror = () => showError("The upload failed: the server could not be reached.");
  request.onload = () => {
    bar.value = 100;
    if (request.status >= 400) {
      showError(apiMessage(request.status, request.responseText));
      return;
    }
    state.file = JSON.parse(request.responseText);
    showFacts(state.file);
    setReady(true);
    showFrames();
  };
  request.send(form);
}

function showFacts(file) {
  const video = file.video || {};
  const facts = {
    File: `${file.filename} (${file.id})`,
    Duration: `${Number(video.duration_s).toFixed(2)} s`,
    "Frame rate": `${Number(video.fps).toFixed(2)} fps`,
    Frames: String(video.num_frames),
    Size: `${video.width} × ${video.height} px, ${file.bytes} bytes`,
  };
  const list = $("facts");
  list.replaceChildren();
  for (const [term, value] of Object.entries(facts)) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
  list.hidden = false;
}

function setReady(ready) {
  $("show-frames").disabled = !ready || state.busy;
  $("ask-button").disabled = !ready || state.busy;
}

function sampling() {
  const count = parseInt($("num-frames").value, 10);
  return { strategy: $("strategy").value, num_frames: Number.isFinite(count) ? count : undefined };
}

// --- frames: uniform and space-aware side by side, candidates on a timeline ---
async function showFrames() {
  if (!state.file) return;
  const strips = $("strips");
  strips.replaceChildren();
  const count = sampling().num_frames;
  for (const strategy of ["uniform", "space_aware"]) {
    const strip = document.createElement("figure");
    strip.className = "strip";
    strip.dataset.strategy = strategy;
    strip.setAttribute("aria-busy", "true");
    const caption = document.createElement("figcaption");
    caption.textContent = `${strategy.replace("_", "-")}: selecting…`;
    strip.append(caption);
    strips.append(strip);
    try {
      const response = await api(`v1/files/${state.file.id}/frames`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ video_sampling: { strategy, num_frames: count } }),
      });
      drawStrip(strip, caption, await response.json());
    } catch (error) {
      caption.textContent = `${strategy.replace("_", "-")}: ${error.message}`;
      strip.classList.add("failed");
    }
    strip.setAttribute("aria-busy", "false");
  }
}

function drawStrip(strip, caption, result) {
  const name = result.strategy.replace("_", "-");
  const extra = result.candidates.length ? `, chosen from ${result.candidates.length} candidates` : "";
  caption.textContent = `${name}: ${result.frames.length} frames${extra}`;
  if (result.note) {  // fewer frames than asked (space-aware on a short video): the API says why
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = result.note;
    strip.append(note);
  }
  const last = Math.max(1, result.video_num_frames - 1);
  const timeline = document.createElement("div");
  timeline.className = "timeline";
  timeline.setAttribute("role", "img");
  const chosen = result.frames.map((f) => f.index);
  timeline.setAttribute("aria-label", `${name} frames ${chosen.join(", ")} of ${result.video_num_frames}`
    + (result.candidates.length ? `; candidates ${result.candidates.join(", ")}` : ""));
  for (const index of result.candidates) timeline.append(mark("candidate", index, last));
  for (const index of chosen) timeline.append(mark("chosen", index, last));
  const thumbs = document.createElement("ol");
  thumbs.className = "thumbs";
  for (const frame of result.frames) {
    const item = document.createElement("li");
    const image = document.createElement("img");
    image.src = frame.thumbnail;
    const when = frame.timestamp_s === null ? "" : ` at ${frame.timestamp_s.toFixed(2)} s`;
    image.alt = `Frame ${frame.index}${when}`;
    const label = document.createElement("span");
    label.textContent = `#${frame.index}${when.replace(" at", " ·")}`;
    item.append(image, label);
    thumbs.append(item);
  }
  strip.append(timeline, thumbs);
}

function mark(kind, index, last) {
  const tick = document.createElement("span");
  tick.className = "mark " + kind;
  tick.style.left = `${(100 * index) / last}%`;
  tick.title = `${kind} frame ${index}`;
  return tick;
}

// --- ask: stream the answer, with time to first token, total time and usage ---
async function ask(question) {
  clearError();
  state.busy = true;
  setReady(true);
  const turn = document.createElement("article");
  turn.className = "turn";
  const q = document.createElement("p");
  q.className = "question";
  q.textContent = question;
  const a = document.createElement("p");
  a.className = "reply";
  a.dataset.state = "streaming";
  turn.append(q, a);
  $("answer").append(turn);
  $("stats").textContent = "Waiting for the first token…";
  const started = performance.now();
  let firstToken = null;
  let usage = null;
  try {
    const response = await api("v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        model: state.model,
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: parseInt($("max-tokens").value, 10) || state.maxTokens,
        video_sampling: sampling(),
        messages: [{
          role: "user",
          content: [
            { type: "video_url", video_url: { url: state.file.id } },
            { type: "text", text: question },
          ],
        }],
      }),
    });
    for await (const event of serverEvents(response)) {
      if (event.error) throw new Error(apiMessage(event.error.code || "error", JSON.stringify(event)));
      if (event.usage) usage = event.usage;
      for (const choice of event.choices || []) {
        const text = (choice.delta && choice.delta.content) || "";
        if (text) {
          if (firstToken === null) firstToken = performance.now();
          a.textContent += text;
        }
      }
    }
    a.dataset.state = "done";
    const total = performance.now() - started;
    const ttft = firstToken === null ? "–" : `${((firstToken - started) / 1000).toFixed(2)} s`;
    const tokens = usage ? `, ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens` : "";
    $("stats").textContent = `TTFT ${ttft}, total ${(total / 1000).toFixed(2)} s${tokens}`;
  } catch (error) {
    a.dataset.state = "failed";
    $("stats").textContent = "";
    showError(error.message);
  } finally {
    state.busy = false;
    setReady(Boolean(state.file));
    $("answer").focus();
  }
}

async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

// --- wiring ---
function init() {
  initKey();
  loadConfig();
  loadModel();
  $("file").addEventListener("change", () => {
    if ($("file").files.length) upload($("file").files[0]);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) upload(event.dataTransfer.files[0]);
  });
  $("settings").addEventListener("submit", (event) => {
    event.preventDefault();
    showFrames();
  });
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (question && state.file && !state.busy) ask(question);
  });
}

document.addEventListener("DOMContentLoaded", init);
