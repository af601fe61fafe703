// The asrkit search page: make a query (microphone, upload or a span of the archive),
// show the ranked hits, play them, draw them and, with a model, transcribe them.
// Plain browser JavaScript, no build step and nothing fetched from elsewhere.
"use strict";

const SAMPLE_RATE = 16000; // Hz: what the server reads queries at
const PLAY_PAD = 0.15; // seconds of audio played and drawn around each hit

const $ = (id) => document.getElementById(id);
const state = { info: null, query: null, searchId: 0, recorder: null };

// ---- talking to the server ----------------------------------------------------------

async function api(url, options) {
  const response = await fetch(url, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function spanUrl(path, file, start, end, extra = {}) {
  const params = new URLSearchParams({ file, start: start.toFixed(3), end: end.toFixed(3), ...extra });
  return `${path}?${params}`;
}

function uploadForm(blob, name, fields = {}) {
  const form = new FormData();
  form.append("audio", blob, name);
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  return form;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function topWanted() {
  const top = parseInt($("top").value, 10);
  return Number.isFinite(top) ? Math.min(Math.max(top, 1), 100) : 10;
}

// ---- the query ------------------------------------------------------------------------

async function searchBlob(blob, name) {
  const limit = state.info.max_upload_mb * 1024 * 1024;
  if (blob.size > limit) {
    showError(`${name}: the file is larger than the server's limit of ${state.info.max_upload_mb} MB`);
    return;
  }
  state.query = { kind: "upload", blob, name };
  showQuery(name, URL.createObjectURL(blob));
  api("/api/picture", { method: "POST", body: uploadForm(blob, name) })
    .then((r) => r.blob()).then((png) => { $("query-picture").src = URL.createObjectURL(png); })
    .catch(() => { $("query-picture").removeAttribute("src"); });
  await runSearch(() => api("/api/search", { method: "POST", body: uploadForm(blob, name, { top: topWanted() }) }));
}

async function searchSpan(file, start, end) {
  state.query = { kind: "span", file, start, end };
  showQuery(`${file}  ${start.toFixed(2)}–${end.toFixed(2)} s`, spanUrl("/api/audio", file, start, end));
  $("query-picture").src = spanUrl("/api/picture", file, start, end);
  const body = JSON.stringify({ file, start, end, top: topWanted() });
  await runSearch(() => api("/api/search-span", { method: "POST", body, headers: { "Content-Type": "application/json" } }));
}

function showQuery(name, audioUrl) {
  $("query").hidden = false;
  $("query-name").textContent = name;
  $("query-audio").src = audioUrl;
  $("query-text").textContent = "";
}

async function transcribeQuery() {
  const q = state.query;
  if (!q) { showError("make a query first"); return; }
  $("query-text").textContent = "transcribing…";
  try {
    const response = q.kind === "upload"
      ? await api("/api/transcribe", { method: "POST", body: uploadForm(q.blob, q.name) })
      : await api(spanUrl("/api/transcript", q.file, q.start, q.end, { context: 0 }));
    const text = (await response.json()).text;
    $("query-text").textContent = text ? `“${text}”` : "(nothing recognised)";
  } catch (e) {
    $("query-text").textContent = "";
    showError(e.message);
  }
}

// ---- hits ---------------------------------------------------------------------------

async function runSearch(request) {
  const id = ++state.searchId;
  showError("");
  $("status").textContent = "searching…";
  $("hits").replaceChildren();
  try {
    const result = await (await request()).json();
    if (id !== state.searchId) return; // a newer search has started
    $("status").textContent = result.hits.length
      ? `${result.hits.length} hits for ${result.query.name} (${(1000 * result.seconds).toFixed(0)} ms)`
      : `no hits for ${result.query.name}`;
    const items = result.hits.map(renderHit);
    $("hits").replaceChildren(...items.map((item) => item.element));
    if (state.info.model) await fillTranscripts(items, id);
  } catch (e) {
    if (id !== state.searchId) return;
    $("status").textContent = "The search failed.";
    showError(e.message);
  }
}

function renderHit(hit) {
  const element = $("hit-template").content.firstElementChild.cloneNode(true);
  const duration = recordingDuration(hit.file);
  const start = Math.max(0, hit.start - PLAY_PAD);
  const end = Math.min(duration, hit.end + PLAY_PAD);
  Object.assign(element.dataset, { file: hit.file, start: hit.start, end: hit.end, score: hit.score });
  element.querySelector(".rank").textContent = `${hit.rank}.`;
  element.querySelector(".file").textContent = hit.file;
  element.querySelector(".span").textContent = `${hit.start.toFixed(2)}–${hit.end.toFixed(2)} s`;
  element.querySelector("meter").value = Math.max(0, hit.score);
  element.querySelector(".score-value").textContent = `score ${hit.score.toFixed(3)}`;
  element.querySelector(".hit-picture").src = spanUrl("/api/picture", hit.file, start, end);
  element.querySelector(".hit-audio").src = spanUrl("/api/audio", hit.file, start, end);
  element.querySelector(".use").addEventListener("click", () => {
    setSpanForm(hit.file, hit.start, hit.end);
    searchSpan(hit.file, hit.start, hit.end);
  });
  return { hit, element };
}

async function fillTranscripts(items, id) {
  // One at a time, best hit first: the server works on one request at a time anyway.
  for (const { hit, element } of items) {
    if (id !== state.searchId) return;
    const out = element.querySelector(".transcript");
    try {
      const t = await (await api(spanUrl("/api/transcript", hit.file, hit.start, hit.end))).json();
      out.textContent = `${t.start.toFixed(1)}–${t.end.toFixed(1)} s: “${t.text || "…"}”`;
    } catch (e) {
      out.textContent = `no transcript: ${e.message}`;
    }
  }
}

function recordingDuration(name) {
  const rec = state.info.recordings.find((r) => r.name === name);
  return rec ? rec.duration : Infinity;
}

// ---- the microphone -------------------------------------------------------------------

async function toggleRecording() {
  if (state.recorder) { state.recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("this browser cannot record here (the page must be opened as http://localhost or https)");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    showError(`no microphone: ${e.message}`);
    return;
  }
  const live = state.info.live ? await startLive(stream) : null;
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (event) => chunks.push(event.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((track) => track.stop());
    if (live) live.stop();
    state.recorder = null;
    $("record").textContent = "● Record";
    $("record").classList.remove("recording");
    try {
      const samples = await decodeToMono(new Blob(chunks, { type: recorder.mimeType }));
      await searchBlob(encodeWav(samples, SAMPLE_RATE), "recording.wav");
    } catch (e) {
      showError(`the recording could not be read: ${e.message}`);
    }
  };
  state.recorder = recorder;
  recorder.start();
  $("record").textContent = "■ Stop";
  $("record").classList.add("recording");
}

// ---- live words while recording (a forward-only model) ---------------------------------

// The microphone's samples, at 16 kHz, go to the server as 16-bit PCM about four times a
// second; each answer adds the words that became final and replaces the partial guess.
async function startLive(stream) {
  let session;
  try {
    session = (await (await api("/api/live", { method: "POST" })).json()).session;
  } catch (e) {
    showError(`live transcription: ${e.message}`);
    return null;
  }
  const shown = $("live-text");
  const words = [];
  const show = (update) => {
    words.push(...update.final.map((w) => w.word));
    shown.textContent = [...words, update.partial].join(" ").trim() || "…";
  };
  shown.hidden = false;
  shown.textContent = "…";
  const context = new AudioContext({ sampleRate: SAMPLE_RATE });
  const source = context.createMediaStreamSource(stream);
  const node = context.createScriptProcessor(4096, 1, 1);
  let sending = Promise.resolve();
  const post = (url, body) => sending = sending.then(async () => {
    try {
      show(await (await api(url, { method: "POST", body })).json());
    } catch (e) {
      showError(`live transcription: ${e.message}`);
    }
  });
  node.onaudioprocess = (event) => {
    const samples = event.inputBuffer.getChannelData(0);
    const pcm = new Int16Array(samples.length);
    samples.forEach((x, i) => { pcm[i] = Math.max(-1, Math.min(1, x)) * 0x7fff; });
    post(`/api/live/${session}`, pcm.buffer);
  };
  source.connect(node);
  node.connect(context.destination);
  return {
    stop() {
      node.disconnect();
      source.disconnect();
      context.close();
      post(`/api/live/${session}/end`, null);
    },
  };
}

// The browser records compressed audio (WebM/Opus) that the server's reader does not
// take, so it is decoded here, mixed to mono at 16 kHz and sent as 16-bit PCM WAV.
async function decodeToMono(blob) {
  const context = new AudioContext();
  const decoded = await context.decodeAudioData(await blob.arrayBuffer());
  context.close();
  const frames = Math.max(1, Math.ceil(decoded.duration * SAMPLE_RATE));
  const offline = new OfflineAudioContext(1, frames, SAMPLE_RATE);
  const source = offline.createBufferSource();
  source.buffer = decoded;
  source.connect(offline.destination);
  source.start();
  return (await offline.startRendering()).getChannelData(0);
}

function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + 2 * samples.length));
  const text = (offset, s) => [...s].forEach((c, i) => view.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * samples.length, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true);
  text(36, "data"); view.setUint32(40, 2 * samples.length, true);
  samples.forEach((x, i) => {
    const s = Math.max(-1, Math.min(1, x));
    view.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  });
  return new Blob([view.buffer], { type: "audio/wav" });
}

// ---- the page -------------------------------------------------------------------------

function setSpanForm(file, start, end) {
  $("span-file").value = file;
  $("span-start").value = start.toFixed(2);
  $("span-end").value = end.toFixed(2);
}

async function init() {
  try {
    state.info = await (await api("/api/info")).json();
  } catch (e) {
    $("summary").textContent = "The server did not answer.";
    showError(e.message);
    return;
  }
  const info = state.info;
  $("summary").textContent = `index ${info.index}: ${info.recordings.length} recordings, `
    + `${info.segments} segments; ` + (info.model ? `transcripts by ${info.model}` : "no recognition model");
  $("upload-hint").textContent = `WAV, FLAC or OGG, up to ${info.max_upload_mb} MB.`;
  $("span-file").replaceChildren(...info.recordings.map((r) => new Option(`${r.name} (${r.duration.toFixed(1)} s)`, r.name)));
  $("transcribe").hidden = !info.model;
  document.body.dataset.ready = "true";
}

$("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) searchBlob(file, file.name);
});
$("record").addEventListener("click", toggleRecording);
$("transcribe").addEventListener("click", transcribeQuery);
$("span-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const start = parseFloat($("span-start").value);
  const end = parseFloat($("span-end").value);
  if (!(end > start)) { showError("the span's end must come after its start"); return; }
  searchSpan($("span-file").value, start, end);
});
init();
