// The Stemify page: submit songs or YouTube links (several make a batch), watch the jobs, play
// and mix the stems. Plain ES module over the committed build of the TypeScript client
// (clients/typescript).

import { closeMixer, handleKey, openMixer, setUpMixer } from "/mixer.js";
import {
  batchFinished, batchZipUrl, cancelBatch, cancelJob, getLimits, getModels, newOwnerToken, requestBatch, requestStemSeparation, uploadResumable,
  watchBatch, watchJob,
} from "/lib/client.js";

const $ = (id) => document.getElementById(id);

// This browser's owner token: what it submits belongs to it, and only it sees those jobs. Kept
// in a cookie, so every same-origin request carries it (fetches, event streams, <audio>, links);
// made here, before the first request, so songs sent at once share one owner.
// On a server with API keys, the same cookie carries the key the person entered.
const ownerCookie = (value) => `stemify_owner=${value}; Path=/; Max-Age=31536000; SameSite=Strict`;
if (!document.cookie.split("; ").some((c) => c.startsWith("stemify_owner="))) document.cookie = ownerCookie(newOwnerToken());

/** A server with keys on refuses the page until a key is given: ask for one. */
function askForKey() {
  $("key-form").hidden = false;
  $("key-input").focus();
}

/** What each error code means for the person at the page. */
const messages = {
  missing_input: "Pick a file or paste a YouTube link.",
  empty_file: "That file is empty.",
  file_too_large: "That file is larger than the server accepts.",
  unsupported_format: "That file is not audio the server can read (mp3, wav, flac, ogg, m4a, aiff, webm).",
  invalid_audio: "That file could not be decoded as audio; it may be damaged.",
  audio_too_long: "That audio is longer than the server accepts.",
  invalid_youtube_url: "That is not a link to a single YouTube video.",
  youtube_playlist: "Playlists are not accepted; link one video.",
  video_too_long: "That video is longer than the server accepts.",
  video_blocked: "That video cannot be used here.",
  youtube_unavailable: "YouTube could not be reached or the video is unavailable.",
  unknown_model: "That model does not exist on this server.",
  model_unavailable: "That model is not installed on this server.",
  invalid_option: "One of the options is not valid.",
  rate_limited: "Too many jobs from here for now.",
  unauthorized: "This server needs an API key.",
  forbidden: "This key may not do that.",
  method_not_allowed: "The server does not take that request.",
  upload_length_exceeded: "The upload sent more bytes than it announced; start it again.",
  idempotency_key_reused: "That request was already sent with other settings.",
  idempotency_key_in_use: "That request is still being answered; try again in a moment.",
  job_not_found: "That job no longer exists (finished jobs are kept for a day).",
  stem_not_found: "That stem no longer exists.",
  upload_not_found: "That upload no longer exists; choose the file again.",
  upload_expired: "The upload waited too long and was removed; choose the file again.",
  upload_offset_mismatch: "The upload is out of step with the server; resuming.",
  upload_incomplete: "The upload has not finished yet.",
  checksum_mismatch: "Part of the upload arrived damaged; sending it again.",
  tus_version_unsupported: "This page does not speak the server's upload protocol; reload it.",
  invalid_content_type: "The upload could not be read; try again.",
  invalid_filename: "Rename the file: its name must not contain slashes or control characters.",
  invalid_batch: "Choose at least one song, and no more than the server allows at once.",
  batch_not_found: "That batch has expired; start a new one.",
  invalid_mix: "The mix could not be exported with these settings.",
  separation_failed: "The separation failed.",
  invalid_request: "The request could not be read; try again.",
  not_found: "That page or file does not exist.",
  unavailable: "The server is not ready yet; try again in a moment.",
  internal_error: "Something went wrong on the server.",
  network_error: "The server cannot be reached.",
};

function describe(error) {
  if (error.code === "unauthorized") askForKey();
  const base = messages[error.code] ?? error.message;
  if (error.code === "rate_limited" && error.retryAfter) return `${base} Try again in ${formatDuration(error.retryAfter)}.`;
  return error.message && error.message !== base ? `${base} (${error.message})` : base;
}

function formatDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${s} s`;
}

function formatBytes(n) {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(0)} MB` : `${(n / 1024).toFixed(0)} KB`;
}

let limits;
let stopWatching = () => {};
let currentJob;

// MARK: - Recent jobs, kept in this browser

const recentKey = "stemify.recentJobs";
const recent = () => JSON.parse(localStorage.getItem(recentKey) ?? "[]");
function remember(id, label, kind = "job") {
  const list = recent().filter((j) => j.id !== id);
  list.unshift({ id, label, kind, at: Date.now() });
  localStorage.setItem(recentKey, JSON.stringify(list.slice(0, 20)));
  renderRecent();
}
function forget(id) {
  localStorage.setItem(recentKey, JSON.stringify(recent().filter((j) => j.id !== id)));
  renderRecent();
}
function renderRecent() {
  const list = $("recent-list");
  list.replaceChildren();
  const jobs = recent();
  $("recent-empty").hidden = jobs.length > 0;
  for (const job of jobs) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = `${job.label} · ${new Date(job.at).toLocaleString()}`;
    button.addEventListener("click", () => (job.kind === "batch" ? followBatch(job.id) : follow(job.id)));
    item.append(button);
    list.append(item);
  }
}

// MARK: - The form

/** The limits before they refuse anything: size, length, songs at once, and how many songs this
 *  browser may still send now. */
function showLimits() {
  if (!limits) return;
  let text = `Up to ${formatBytes(limits.max_file_size)} and ${formatDuration(limits.max_duration_seconds)} of audio each, ${limits.max_batch_size} songs at once.`;
  if (limits.rate_limit > 0 && limits.rate_limit_remaining != null) {
    const period = formatDuration(limits.rate_limit_period_seconds).replace(/^1 h 0 min$/, "hour");
    text += ` ${limits.rate_limit_remaining} of ${limits.rate_limit} songs per ${period} left`;
    if (limits.rate_limit_remaining === 0 && limits.rate_limit_reset_seconds) text += ` (more in ${formatDuration(limits.rate_limit_reset_seconds)})`;
    text += ".";
  }
  $("limits-text").textContent = text;
}

async function refreshLimits() {
  try {
    limits = await getLimits();
    showLimits();
  } catch {
    // The text stays as it was; the server's answer to the next submission still says.
  }
}

function checkFile(file) {
  if (!limits) return null;
  const extension = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
  if (!limits.accepted_extensions.includes(extension)) return messages.unsupported_format;
  if (file.size === 0) return messages.empty_file;
  if (file.size > limits.max_file_size) return `${messages.file_too_large} (${formatBytes(file.size)}; the limit is ${formatBytes(limits.max_file_size)})`;
  return null;
}

/** Names the chosen files in the drop zone and says what is wrong with them, if anything. */
function chose(files) {
  const names = [...files].map((f) => f.name);
  $("file-names").textContent = names.length === 0 ? "" : names.length <= 3 ? names.join(", ") : `${names.slice(0, 2).join(", ")} and ${names.length - 2} more`;
  showFormError(checkFiles(files));
}

/** The first problem among the chosen files, naming the file when there are several. */
function checkFiles(list) {
  const files = [...list];
  for (const file of files) {
    const problem = checkFile(file);
    if (problem) return files.length > 1 ? `${file.name}: ${problem}` : problem;
  }
  return null;
}

/** An error from the server in a section's alert line. */
function showError(id, error) {
  $(id).hidden = false;
  $(id).textContent = describe(error);
}

function showFormError(text) {
  $("form-error").textContent = text ?? "";
  $("form-error").hidden = !text;
}

function formOptions() {
  const chunked = !$("overlap-field").hidden;
  return {
    model: $("model-select").value,
    ...(chunked ? { numOverlap: Number($("overlap-select").value) } : { quality: $("quality-select").value }),
    outputFormat: $("format-select").value,
    normalize: $("normalize-input").checked,
    removeVocals: $("karaoke-input").checked,
  };
}

async function submit(event) {
  event.preventDefault();
  showFormError(null);
  const files = [...$("file-input").files];
  const { links, error: linkError } = parseLinks($("youtube-input").value);
  if (linkError) return showFormError(linkError);
  if (files.length + links.length === 0) return showFormError(messages.missing_input);
  const problem = checkFiles(files);
  if (problem) return showFormError(problem);
  if (limits && files.length + links.length > limits.max_batch_size) {
    return showFormError(`${messages.invalid_batch} (at most ${limits.max_batch_size})`);
  }
  $("submit-button").disabled = true;
  try {
    if (files.length + links.length === 1) {
      // Files go up resumably: a dropped connection continues where the server's copy ends.
      const input = files.length ? { uploadId: await upload(files[0], showUpload) } : { youtubeUrl: links[0] };
      const accepted = await requestStemSeparation({ ...input, ...formOptions() });
      remember(accepted.job_id, files.length ? files[0].name : links[0]);
      follow(accepted.job_id);
    } else {
      await submitBatch(files, links);
    }
  } catch (error) {
    showFormError(describe(error));
  } finally {
    $("submit-button").disabled = false;
    $("upload-status").hidden = true;
    $("upload-progress").hidden = true;
    refreshLimits();
  }
}

/** The links box holds one link per line: a line with a space in it is one mistyped link, not
 *  several songs, and a line that is not an http(s) address is refused here, before anything is
 *  uploaded or counted. */
function parseLinks(text) {
  const lines = text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
  for (const [index, line] of lines.entries()) {
    let url;
    try {
      url = new URL(line);
    } catch {
      url = undefined;
    }
    if (!url || !["http:", "https:"].includes(url.protocol) || /\s/.test(line)) {
      const shown = line.length > 60 ? `${line.slice(0, 60)}…` : line;
      return { links: [], error: `Line ${index + 1} is not a link: “${shown}”. Put one YouTube link on each line.` };
    }
  }
  return { links: lines };
}

function showUpload(stored, total) {
  const percent = total > 0 ? Math.round((stored / total) * 100) : 0;
  $("upload-status").hidden = false;
  $("upload-progress").hidden = false;
  $("upload-status").textContent = `Uploading · ${percent} % · ${formatBytes(stored)} of ${formatBytes(total)}`;
  $("upload-progress").value = percent;
  $("upload-progress").setAttribute("aria-valuetext", `${percent} percent uploaded`);
}

function upload(file, onProgress) {
  onProgress(0, file.size);
  return uploadResumable(file, { onProgress });
}

/** Several songs: each file goes up resumably, with its own row, then one batch is made of them. */
async function submitBatch(files, links) {
  stopBatchWatching();
  $("batch-section").hidden = false;
  $("batch-error").hidden = true;
  $("batch-zip").hidden = true;
  $("batch-cancel-button").hidden = true;
  $("batch-list").replaceChildren();
  const rows = [...files.map((f) => f.name), ...links].map((name, index) => songRow(`pending-${index}`, name));
  try {
    await uploadAndRequestBatch(files, links, rows);
  } catch (error) {
    // Nothing was queued: the form's error says why, and no card is left saying "Checking…".
    $("batch-section").hidden = true;
    throw error;
  }
}

async function uploadAndRequestBatch(files, links, rows) {
  const songs = [];
  for (const [index, file] of files.entries()) {
    const row = rows[index];
    const uploadId = await upload(file, (stored, total) => {
      const percent = total > 0 ? Math.round((stored / total) * 100) : 0;
      row.status.textContent = `Uploading · ${percent} %`;
      row.progress.value = percent;
    });
    row.status.textContent = "Uploaded";
    songs.push({ uploadId });
  }
  for (const youtubeUrl of links) songs.push({ youtubeUrl });
  $("batch-status").textContent = "Checking the songs…";
  const batch = await requestBatch(songs, formOptions());
  const label = `${songs.length} songs: ${[...files.map((f) => f.name), ...links].slice(0, 2).join(", ")}…`;
  remember(batch.batch_id, label, "batch");
  followBatch(batch.batch_id, batch);
}

// MARK: - Following a job

const stageNames = {
  queued: "Waiting for a worker", downloading: "Downloading the video", decoding: "Reading the audio",
  separating: "Separating", encoding: "Writing the stems", done: "Done", failed: "Failed", cancelled: "Cancelled",
};

/** Where a queued song stands, counted from 1 (the API gives the jobs ahead of it). */
function queuePlace(ahead) {
  return ahead === 0 ? "next in line" : `number ${ahead + 1} in line`;
}

/** The song's name for people: its file name without the extension, or the link. */
function songTitle(job) {
  const name = job.input_name ?? "";
  return /^https?:/.test(name) ? name : name.replace(/\.[^./]+$/, "");
}

/** The address names what is open, so a reload or a shared link opens it again. */
function setAddress(path) {
  if (location.hash !== `#${path}`) history.replaceState(null, "", `#${path}`);
}

function route() {
  const [, kind, id] = location.hash.match(/^#\/(jobs|batches)\/([A-Za-z0-9-]{1,64})$/) ?? [];
  if (kind === "jobs" && id !== currentJob?.job_id) follow(id);
  else if (kind === "batches" && id !== currentBatch?.batch_id) followBatch(id);
}

function renderJob(job) {
  currentJob = job;
  $("job-section").hidden = false;
  $("job-title").textContent = songTitle(job);
  const percent = Math.round(job.progress * 100);
  let text = `${stageNames[job.status] ?? job.status} · ${percent} %`;
  if (job.status === "queued" && job.queue_position != null) text += ` · ${queuePlace(job.queue_position)}`;
  if (job.eta_seconds != null && !["done", "failed", "cancelled"].includes(job.status)) text += ` · about ${formatDuration(job.eta_seconds)} left`;
  $("job-status").textContent = text;
  $("job-progress").value = percent;
  $("job-progress").setAttribute("aria-valuetext", `${percent} percent`);
  const failed = job.status === "failed";
  $("job-error").hidden = !failed;
  if (failed) $("job-error").textContent = describe({ code: job.error?.code, message: job.error?.message });
  $("cancel-button").hidden = ["done", "failed", "cancelled"].includes(job.status);
  if (job.status === "done") openMixer(job);
}

function follow(id) {
  stopWatching();
  closeMixer();
  setAddress(`/jobs/${id}`);
  currentJob = { job_id: id };
  $("job-section").hidden = false;
  $("job-error").hidden = true;
  $("job-status").textContent = "Loading…";
  stopWatching = watchJob(id, renderJob, {
    onError: (error) => {
      showError("job-error", error);
      forget(id);
    },
  });
}

async function cancelCurrent() {
  if (!currentJob) return;
  const id = currentJob.job_id;
  stopWatching();
  try {
    await cancelJob(id);
  } catch (error) {
    if (error.code !== "job_not_found") return showFormError(describe(error));
  }
  forget(id);
  $("job-status").textContent = stageNames.cancelled;
  $("cancel-button").hidden = true;
}

// MARK: - Following a batch

let stopBatchWatching = () => {};
let currentBatch;

/** A row of the batch list (made once per song, updated in place so focus stays put). */
function button(text, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "secondary";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  return b;
}

function songRow(key, name) {
  let item = document.querySelector(`#batch-list li[data-key="${CSS.escape(key)}"]`);
  if (!item) {
    item = document.createElement("li");
    item.dataset.key = key;
    const title = document.createElement("span");
    title.className = "song-name";
    title.textContent = name;
    const status = document.createElement("span");
    status.className = "song-status";
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", `Progress of ${name}`);
    const open = button("Open in mixer", `Open ${name} in the mixer`);
    open.className = "secondary open";
    open.hidden = true;
    item.append(title, status, open, progress);
    $("batch-list").append(item);
  }
  return { item, status: item.querySelector(".song-status"), progress: item.querySelector("progress"), open: item.querySelector("button.open") };
}

function renderBatch(batch) {
  currentBatch = batch;
  $("batch-section").hidden = false;
  const percent = Math.round(batch.progress * 100);
  const finished = batch.songs.filter((s) => ["done", "failed", "cancelled", "deleted"].includes(s.status)).length;
  let text = `${finished} of ${batch.songs.length} songs finished · ${percent} %`;
  if (batch.eta_seconds != null && !batchFinished(batch)) text += ` · about ${formatDuration(batch.eta_seconds)} left`;
  $("batch-status").textContent = text;
  $("batch-progress").value = percent;
  $("batch-progress").setAttribute("aria-valuetext", `${percent} percent`);
  // Rows made while uploading are replaced by the songs' own.
  for (const pending of document.querySelectorAll('#batch-list li[data-key^="pending-"]')) pending.remove();
  for (const song of batch.songs) {
    const row = songRow(song.job_id, song.name);
    row.item.dataset.status = song.status;
    const job = song.job;
    const songPercent = job ? Math.round(job.progress * 100) : 100;
    row.progress.value = songPercent;
    row.status.textContent = song.status === "failed" && job?.error
      ? describe({ code: job.error.code, message: job.error.message })
      : song.status === "deleted" ? "Cancelled"
      : song.status === "queued" && job?.queue_position != null ? `${stageNames.queued} · ${queuePlace(job.queue_position)}`
      : `${stageNames[song.status] ?? song.status} · ${songPercent} %`;
    row.open.hidden = song.status !== "done";
    row.open.onclick = () => follow(song.job_id);
  }
  const done = batch.counts.done ?? 0;
  $("batch-zip").hidden = done === 0;
  $("batch-zip").href = batchZipUrl(batch.batch_id);
  $("batch-zip").textContent = `Download all stems (ZIP, ${done} song${done === 1 ? "" : "s"})`;
  $("batch-cancel-button").hidden = batchFinished(batch);
}

function followBatch(id, first) {
  stopBatchWatching();
  setAddress(`/batches/${id}`);
  currentBatch = first ?? { batch_id: id };
  $("batch-section").hidden = false;
  $("batch-error").hidden = true;
  if (first) renderBatch(first);
  else $("batch-status").textContent = "Loading…";
  stopBatchWatching = watchBatch(id, renderBatch, {
    onError: (error) => {
      showError("batch-error", error);
      forget(id);
    },
  });
}

async function cancelCurrentBatch() {
  if (!currentBatch) return;
  stopBatchWatching();
  try {
    renderBatch(await cancelBatch(currentBatch.batch_id));
  } catch (error) {
    showError("batch-error", error);
  }
}

// MARK: - The mixer (mixer.js)

/** Every stem at once, as the ZIP the server streams. */
function downloadAll() {
  if (!currentJob?.zip_url) return;
  const link = document.createElement("a");
  link.href = currentJob.zip_url;
  link.download = "";
  link.click();
}

// MARK: - Model choice

/// RoFormer and SCNet models trade time for quality by their overlap (Demucs ones by the
/// quality preset): each choice shows its cost, which grows in proportion to the overlap.
function showOverlapChoices(model) {
  const chunked = model?.num_overlap !== undefined && model?.num_overlap !== null;
  $("overlap-field").hidden = !chunked;
  $("quality-field").hidden = chunked;
  if (!chunked) return;
  const select = $("overlap-select");
  select.replaceChildren();
  const base = model.num_overlap;
  for (const n of [...new Set([1, 2, base, 4, 8])].sort((a, b) => a - b)) {
    const option = document.createElement("option");
    option.value = String(n);
    const cost = model.relative_cost * n / base;
    option.textContent = `${n}${n === base ? " (the model's)" : ""} · about ${cost < 10 ? cost.toFixed(1) : Math.round(cost)}× htdemucs's time`;
    select.append(option);
  }
  select.value = String(base);
}

// MARK: - Start

async function start() {
  $("submit-form").addEventListener("submit", submit);
  $("cancel-button").addEventListener("click", cancelCurrent);
  $("batch-cancel-button").addEventListener("click", cancelCurrentBatch);
  $("download-all-button").addEventListener("click", downloadAll);
  setUpMixer(describe);
  $("file-input").addEventListener("change", () => chose($("file-input").files));
  // Each line is checked as it is typed; the message goes when the lines are links again.
  $("youtube-input").addEventListener("input", () => showFormError(parseLinks($("youtube-input").value).error ?? null));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    if (e.dataTransfer?.files.length) {
      $("file-input").files = e.dataTransfer.files;
      chose(e.dataTransfer.files);
    }
  });
  document.addEventListener("keydown", handleKey);
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!/^sk_[A-Za-z0-9_-]{20,}$/.test(key)) return showFormError("That is not an API key (they start with sk_).");
    document.cookie = ownerCookie(key);
    location.reload();
  });
  renderRecent();
  try {
    const [serverLimits, models] = await Promise.all([getLimits(), getModels()]);
    limits = serverLimits;
    $("file-input").accept = limits.accepted_extensions.map((e) => `.${e}`).join(",") + ",audio/*";
    showLimits();
    const select = $("model-select");
    // Quality against time: Demucs first (fast), then the RoFormers (best vocals, much slower).
    const groups = [["demucs", "Demucs: fast, four or six stems"], ["bs_roformer", "BS-RoFormer: best quality, slow"],
                    ["mel_band_roformer", "Mel-Band RoFormer: best vocals, slow"], ["scnet", "SCNet: four stems, better than Demucs"]];
    for (const [family, label] of groups) {
      const members = models.filter((m) => (m.family ?? "demucs") === family);
      if (members.length === 0) continue;
      const group = document.createElement("optgroup");
      group.label = label;
      for (const model of members) {
        const option = document.createElement("option");
        option.value = model.name;
        option.textContent = model.available ? model.name : `${model.name} (downloads on first use)`;
        const sdr = model.sdr ? Object.entries(model.sdr).map(([stem, db]) => `${stem} SDR ${db} dB`).join(", ") : "";
        option.dataset.note = [model.description, sdr && `${sdr} (${model.sdr_source})`,
                               `about ${model.relative_cost}× the time of htdemucs`].filter(Boolean).join(" · ");
        group.append(option);
      }
      select.append(group);
    }
    const preferred = models.find((m) => m.name === "htdemucs" && m.available) ?? models.find((m) => m.available) ?? models[0];
    if (preferred) select.value = preferred.name;
    const note = () => {
      $("model-note").textContent = select.selectedOptions[0]?.dataset.note ?? "";
      showOverlapChoices(models.find((m) => m.name === select.value));
    };
    select.addEventListener("change", note);
    note();
  } catch (error) {
    showFormError(describe(error));
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
