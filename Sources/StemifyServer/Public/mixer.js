// The mixer: every stem of a finished job on one timeline (shared playhead, click or drag to
// seek, zoom and scroll), practice controls (A–B loop, speed with pitch kept, key with tempo
// kept, volume, pan, mute, solo, minus one) and the export of the current mix.
//
// Playback is one clock for every stem (player.js): one AudioWorklet output per stem → gain →
// StereoPannerNode → the pitch shifter → speakers. The export sends the same volumes, pans,
// mutes, speed and key to the server, which applies the same gain and pan law and the same
// speed and key (POST /api/jobs/{id}/mix), so the file is what was heard.

import { exportMix, getPeaks } from "/lib/client.js";
import { StemPlayer } from "./player.js";

const $ = (id) => document.getElementById(id);

/** Lane colours by stem; others take the accent. */
const colours = {
  drums: "--stem-drums", bass: "--stem-bass", other: "--stem-other", vocals: "--stem-vocals",
  guitar: "--stem-guitar", piano: "--stem-piano", instrumental: "--stem-instrumental",
};

const minimumSpan = 4;
/** The layout where lanes fold to their name and waveform (style.css says the same width). */
const phone = matchMedia("(max-width: 600px)");
const seekStep = 5;

/** The open mixer, or null. */
let mix = null;

function formatTime(seconds) {
  const s = Math.floor(seconds || 0);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function control(tag, props) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "label") element.setAttribute("aria-label", value);
    else if (key === "pressed") element.setAttribute("aria-pressed", String(value));
    else element[key] = value;
  }
  return element;
}

// MARK: - Opening and closing

export function closeMixer() {
  if (!mix) return;
  cancelAnimationFrame(mix.frame);
  mix.player?.close();
  mix.resize.disconnect();
  mix = null;
  $("stem-list").replaceChildren();
  $("mixer-section").hidden = true;
}

/** The song's name for people and files: the upload's name without its extension, or "song" for a link. */
function title(job) {
  const name = job.input_name ?? "";
  return /^https?:/.test(name) ? name : name.replace(/\.[^./]+$/, "") || "song";
}

/** Shows the mixer for a finished job (once per job). */
export function openMixer(job) {
  if (mix?.job.job_id === job.job_id) return;
  closeMixer();
  const started = performance.now();
  $("mixer-section").hidden = false;
  $("mixer-section").dataset.drawMs = "";
  $("mixer-title").textContent = title(job);
  // A song that is ready is what the person waits for: bring it into view.
  $("mixer-section").scrollIntoView({ behavior: "smooth", block: "start" });
  const duration = Math.max(...job.stems.map((s) => s.duration), 0.01);
  mix = {
    job, duration, tracks: [], context: null, frame: 0,
    view: { start: 0, span: duration },
    loop: { a: null, b: null, on: false },
    speed: 1, semitones: 0, drag: null, player: null, at: 0,
    resize: new ResizeObserver(() => drawAll()),
  };
  const hasInstrumental = job.stems.some((s) => s.name === "instrumental");
  for (const [index, stem] of job.stems.entries()) {
    mix.tracks.push(buildTrack(stem, index, hasInstrumental));
  }
  $("karaoke-button").hidden = !hasInstrumental;
  $("ruler").setAttribute("aria-valuemax", duration.toFixed(2));
  fit();
  $("speed-input").value = "100";
  $("transpose-input").value = "0";
  showSpeed();
  showKey();
  showLoop();
  applyMix();
  mix.resize.observe($("ruler"));
  const current = mix;
  $("play-button").disabled = true;
  $("mixer-status").textContent = "";
  if (job.stems.every((s) => s.playback_url)) {
    StemPlayer.open(job.stems.map((s) => ({ name: s.name, url: s.playback_url }))).then((player) => {
      if (mix !== current) { player.close(); return; }
      connect(player);
    }, (error) => {
      if (mix === current) $("mixer-status").textContent = `The stems cannot be played here (${error.message}); download them below.`;
    });
  } else {
    $("mixer-status").textContent = "This song was separated before the mixer could play it; separate it again to play it here, or download the stems below.";
  }
  Promise.all(current.tracks.map(async (t) => {
    try {
      t.peaks = t.stem.peaks_url ? await getPeaks(t.stem.peaks_url) : null;
    } catch {
      t.peaks = null;
    }
    t.loudest = t.peaks ? Math.max(1, ...t.peaks.peaks) : 1;
  })).then(() => {
    if (mix !== current) return;
    drawAll();
    // How long the timeline took to appear (peaks fetched and every lane drawn), for the tests.
    $("mixer-section").dataset.drawMs = String(Math.round(performance.now() - started));
  });
  tick();
}

function buildTrack(stem, index, hasInstrumental) {
  // The instrumental is the other stems summed: it starts muted so the song is not doubled.
  const track = {
    stem, name: stem.name, index, volume: 1, pan: 0,
    muted: hasInstrumental && stem.name === "instrumental", solo: false, peaks: undefined, loudest: 1,
  };
  const label = stem.name.replace("_", " ");
  const item = control("li", { className: "stem" });
  item.dataset.stem = stem.name;
  item.style.setProperty("--lane", `var(${colours[stem.name] ?? "--accent"})`);
  const head = control("div", { className: "lane-head" });
  // On a phone a lane is its name and waveform; the name opens its controls.
  const name = control("button", { type: "button", className: "name", textContent: label });
  if (phone.matches) name.setAttribute("aria-expanded", "false");
  name.addEventListener("click", () => {
    const open = item.classList.toggle("open");
    if (phone.matches) name.setAttribute("aria-expanded", String(open));
  });
  const mute = control("button", { type: "button", className: "secondary mute", textContent: "M", label: `Mute ${label}`, title: `Mute (${index + 1})`, pressed: track.muted });
  mute.addEventListener("click", () => { track.muted = !track.muted; mix.minusOne = null; applyMix(); });
  const solo = control("button", { type: "button", className: "secondary solo", textContent: "S", label: `Solo ${label}`, title: "Solo", pressed: false });
  solo.addEventListener("click", () => { track.solo = !track.solo; mix.minusOne = null; applyMix(); });
  const minus = control("button", { type: "button", className: "secondary minus-one", textContent: "−1", label: `Minus one: everything but ${label}`, title: "Minus one: everything but this stem" });
  minus.addEventListener("click", () => minusOne(track));
  const volume = control("input", { type: "range", min: "0", max: "150", value: "100", className: "volume", id: `volume-${stem.name}` });
  volume.addEventListener("input", () => { track.volume = Number(volume.value) / 100; applyMix(); });
  const pan = control("input", { type: "range", min: "-100", max: "100", value: "0", className: "pan", id: `pan-${stem.name}` });
  pan.addEventListener("input", () => { track.pan = Number(pan.value) / 100; applyMix(); });
  pan.addEventListener("dblclick", () => { pan.value = "0"; track.pan = 0; applyMix(); });
  const fileTitle = /^https?:/.test(mix.job.input_name ?? "") ? "song" : title(mix.job).replace(/[\\/:*?"<>|]/g, "_");
  const download = control("a", { href: stem.url, download: `${fileTitle} (${stem.name}).${stem.format}`, className: "download", textContent: "↓", title: `Download ${label}` });
  download.setAttribute("aria-label", `Download ${label} (${stem.format})`);
  const volumeLabel = control("label", { htmlFor: volume.id, textContent: "Vol" });
  const panLabel = control("label", { htmlFor: pan.id, textContent: "Pan" });
  volume.setAttribute("aria-label", `${label} volume`);
  pan.setAttribute("aria-label", `${label} pan`);
  const buttons = control("div", { className: "buttons" });
  buttons.append(mute, solo, minus, download);
  const meter = control("div", { className: "meter" });
  meter.setAttribute("aria-hidden", "true");
  const volumeText = control("output", { className: "value" });
  const panText = control("output", { className: "value" });
  volumeText.htmlFor = volume.id;
  panText.htmlFor = pan.id;
  head.append(name, meter, buttons, volumeLabel, volume, volumeText, panLabel, pan, panText);

  const wave = control("div", { className: "wave" });
  const canvas = control("canvas", { height: 64 });
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `Waveform of ${label}`);
  wave.append(canvas, control("div", { className: "loop-region" }), control("div", { className: "playhead" }));
  attachPointer(wave, false);
  item.append(head, wave);
  $("stem-list").append(item);
  Object.assign(track, { item, canvas, wave, meter, buttons: { mute, solo, minus }, inputs: { volume, pan }, texts: { volume: volumeText, pan: panText } });
  return track;
}

// MARK: - Levels

/** Heard: not muted, and soloed when anything is. */
function audible(track) {
  const soloing = mix.tracks.some((t) => t.solo);
  return !track.muted && (!soloing || track.solo);
}

function applyMix() {
  for (const t of mix.tracks) {
    const on = audible(t);
    if (t.gain) t.gain.gain.value = on ? t.volume : 0;
    if (t.panner) t.panner.pan.value = t.pan;
    t.item.dataset.audible = String(on && t.volume > 0);
    t.buttons.mute.setAttribute("aria-pressed", String(t.muted));
    t.buttons.solo.setAttribute("aria-pressed", String(t.solo));
    t.buttons.minus.setAttribute("aria-pressed", String(mix.minusOne?.track === t));
    t.inputs.volume.value = String(Math.round(t.volume * 100));
    t.inputs.pan.value = String(Math.round(t.pan * 100));
    t.inputs.pan.setAttribute("aria-valuetext", t.pan === 0 ? "centre" : `${Math.round(Math.abs(t.pan) * 100)} % ${t.pan < 0 ? "left" : "right"}`);
    t.texts.volume.value = `${Math.round(t.volume * 100)} %`;
    t.texts.pan.value = t.pan === 0 ? "C" : `${t.pan < 0 ? "L" : "R"} ${Math.round(Math.abs(t.pan) * 100)}`;
  }
  const instrumental = mix.tracks.find((t) => t.name === "instrumental");
  $("karaoke-button").setAttribute("aria-pressed", String(Boolean(instrumental && isKaraoke())));
}

function isKaraoke() {
  return mix.tracks.every((t) => audible(t) === (t.name === "instrumental"));
}

/** Everything but `track` (the instrumental stays out: it would double the rest); pressed again,
 *  the song as it was before. */
function minusOne(track) {
  if (mix.minusOne?.track === track) {
    for (const t of mix.tracks) Object.assign(t, mix.minusOne.before.get(t));
    mix.minusOne = null;
    applyMix();
    return;
  }
  const before = new Map(mix.tracks.map((t) => [t, { muted: t.muted, solo: t.solo }]));
  for (const t of mix.tracks) {
    t.solo = false;
    t.muted = t === track || (t.name === "instrumental" && track.name !== "instrumental");
  }
  mix.minusOne = { track, before: mix.minusOne?.before ?? before };
  applyMix();
}

export function karaoke() {
  if (!mix) return;
  const instrumental = mix.tracks.find((t) => t.name === "instrumental");
  if (!instrumental) return;
  const on = !isKaraoke();
  mix.minusOne = null;
  for (const t of mix.tracks) {
    t.solo = false;
    t.muted = on ? t !== instrumental : t === instrumental;
  }
  applyMix();
}

/** Each stem's output of the player → tap (its level) → gain → panner → the player's shifter
 *  and speakers. */
function connect(player) {
  mix.player = player;
  for (const t of mix.tracks) {
    const channels = player.headers[t.index].channels;
    t.tap = new AudioWorkletNode(player.context, "tap", {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [channels], channelCount: channels, channelCountMode: "explicit",
    });
    t.tap.port.onmessage = (e) => { if (e.data.peak !== undefined) t.level = e.data.peak; };
    t.gain = player.context.createGain();
    t.panner = player.context.createStereoPanner();
    player.node.connect(t.tap, t.index).connect(t.gain).connect(t.panner).connect(player.input);
  }
  player.setSpeed(mix.speed);
  player.setKey(mix.semitones);
  player.seek(mix.at);
  sendLoop();
  player.onended = () => showPlaying();
  player.onerror = () => { $("mixer-status").textContent = "The stems stopped arriving; playback goes on when the connection is back."; };
  applyMix();
  $("play-button").disabled = false;
  // For the browser tests, which record what each stem plays.
  window.stemifyMixer = { player, taps: mix.tracks.map((t) => t.tap) };
}

// MARK: - Transport

function playing() {
  return Boolean(mix?.player?.playing);
}

function position() {
  return mix?.player ? mix.player.position : (mix?.at ?? 0);
}

export function seekTo(seconds) {
  if (!mix) return;
  const at = Math.min(Math.max(0, seconds), mix.duration);
  mix.at = at;
  mix.player?.seek(at);
  follow(at);
  showPosition(at);
}

export async function togglePlay() {
  if (!mix?.player) return;
  if (!playing()) {
    // Play after the end starts again (at A when looping), as every player does.
    let at = position() >= mix.duration - 0.01 ? 0 : position();
    if (mix.loop.on && (at < mix.loop.a || at >= mix.loop.b)) at = mix.loop.a;
    mix.player.seek(at);
    const started = mix.player.play();
    showPlaying();
    await started;
  } else {
    mix.player.pause();
    mix.at = position();
  }
  showPlaying();
}

function showPlaying() {
  const on = playing();
  $("play-button").textContent = on ? "Pause" : "Play";
  $("play-button").setAttribute("aria-pressed", String(on));
}

/** Every frame: the playhead (the loop itself is kept by the player, sample by sample). */
function tick() {
  if (!mix) return;
  const at = position();
  $("mixer-section").dataset.waiting = String(Boolean(mix.player?.waiting));
  if (playing() && mix.drag === null) follow(at);
  showPosition(at);
  showLevels();
  mix.frame = requestAnimationFrame(tick);
}

/** Each lane's meter: the stem's loudest sample lately, as heard (after volume and mute), on a
 *  60 dB scale. */
function showLevels() {
  for (const t of mix.tracks) {
    const heard = playing() ? (t.level ?? 0) * (audible(t) ? t.volume : 0) : 0;
    const db = heard > 0 ? 20 * Math.log10(heard) : -60;
    t.meter.style.setProperty("--level", String(Math.min(1, Math.max(0, (db + 60) / 60))));
  }
}

function showPosition(at) {
  const ruler = $("ruler");
  ruler.setAttribute("aria-valuenow", at.toFixed(2));
  ruler.setAttribute("aria-valuetext", `${formatTime(at)} of ${formatTime(mix.duration)}`);
  $("time-text").textContent = `${formatTime(at)} / ${formatTime(mix.duration)}`;
  const x = (at - mix.view.start) / mix.view.span;
  for (const head of document.querySelectorAll("#mixer-section .playhead")) {
    head.style.left = `${(x * 100).toFixed(3)}%`;
    head.hidden = x < 0 || x > 1;
  }
}

export function setSpeed(percent) {
  if (!mix) return;
  const clamped = Math.min(150, Math.max(50, Math.round(percent / 5) * 5));
  mix.speed = clamped / 100;
  $("speed-input").value = String(clamped);
  mix.player?.setSpeed(mix.speed);
  showSpeed();
}

function showSpeed() {
  $("speed-text").value = `${$("speed-input").value} %`;
}

/** Transpose by `semitones` (−6…6), tempo kept. */
export function setKey(semitones) {
  if (!mix) return;
  mix.semitones = Math.min(6, Math.max(-6, Math.round(semitones)));
  $("transpose-input").value = String(mix.semitones);
  mix.player?.setKey(mix.semitones);
  showKey();
}

function showKey() {
  const k = Number($("transpose-input").value);
  $("transpose-text").value = k === 0 ? "±0" : `${k > 0 ? "+" : "−"}${Math.abs(k)}`;
  $("transpose-input").setAttribute("aria-valuetext", k === 0 ? "original key" : `${Math.abs(k)} semitone${Math.abs(k) === 1 ? "" : "s"} ${k > 0 ? "up" : "down"}`);
}

// MARK: - Loop

export function setLoopPoint(which, at = position()) {
  if (!mix) return;
  mix.loop[which] = at;
  const { a, b } = mix.loop;
  if (a !== null && b !== null) {
    if (b < a) [mix.loop.a, mix.loop.b] = [b, a];
    // A loop shorter than a tenth of a second would only stutter.
    mix.loop.on = mix.loop.b - mix.loop.a >= 0.1;
  }
  showLoop();
}

export function toggleLoop() {
  if (!mix || mix.loop.a === null || mix.loop.b === null) return;
  mix.loop.on = !mix.loop.on;
  showLoop();
}

export function clearLoop() {
  if (!mix) return;
  mix.loop = { a: null, b: null, on: false };
  showLoop();
}

/** The player loops sample-exactly; it is told whenever the loop changes. */
function sendLoop() {
  const { a, b, on } = mix.loop;
  mix.player?.setLoop(on ? a : null, b);
}

function showLoop() {
  sendLoop();
  const { a, b, on } = mix.loop;
  const set = a !== null && b !== null;
  $("loop-button").setAttribute("aria-pressed", String(on));
  $("loop-button").disabled = !set;
  $("loop-text").textContent = set ? `${formatTime(a)}–${formatTime(b)}${on ? "" : " (off)"}`
    : a !== null ? `A at ${formatTime(a)}; press B to set the end` : "Drag on the ruler, or press A and B";
  const section = $("mixer-section");
  section.dataset.loopA = a === null ? "" : a.toFixed(3);
  section.dataset.loopB = b === null ? "" : b.toFixed(3);
  section.dataset.loop = String(on);
  drawLoop();
}

function drawLoop() {
  const { a, b, on } = mix.loop;
  for (const region of document.querySelectorAll("#mixer-section .loop-region")) {
    if (a === null || b === null) { region.hidden = true; continue; }
    const left = (a - mix.view.start) / mix.view.span, right = (b - mix.view.start) / mix.view.span;
    region.hidden = right < 0 || left > 1;
    region.style.left = `${Math.max(0, left) * 100}%`;
    region.style.width = `${(Math.min(1, right) - Math.max(0, left)) * 100}%`;
    region.classList.toggle("off", !on);
  }
}

// MARK: - Timeline: pointer, zoom, scroll

function timeAt(element, clientX) {
  const box = element.getBoundingClientRect();
  const x = Math.min(Math.max(0, (clientX - box.left) / box.width), 1);
  return mix.view.start + x * mix.view.span;
}

/** Click or drag on a lane seeks; on the ruler (or with Shift on a lane) a drag marks the loop.
 *  A finger on a lane seeks only on a tap or a sideways drag: an upward or downward swipe is
 *  left to the browser, which scrolls the page (the lanes are `touch-action: pan-y`). */
function attachPointer(element, isRuler) {
  element.addEventListener("pointerdown", (e) => {
    if (!mix || e.button !== 0) return;
    const at = timeAt(element, e.clientX);
    const touch = e.pointerType === "touch" && !isRuler;
    mix.drag = { from: at, loop: isRuler || e.shiftKey, moved: false, touch, seeking: !touch, x: e.clientX, y: e.clientY };
    if (touch) return;
    element.setPointerCapture(e.pointerId);
    if (!mix.drag.loop) seekTo(at);
  });
  element.addEventListener("pointermove", (e) => {
    if (!mix?.drag) return;
    if (mix.drag.touch && !mix.drag.seeking) {
      const dx = Math.abs(e.clientX - mix.drag.x), dy = Math.abs(e.clientY - mix.drag.y);
      if (dx < 10 || dx <= dy) return;
      mix.drag.seeking = true;
      element.setPointerCapture(e.pointerId);
    }
    if (!element.hasPointerCapture(e.pointerId)) return;
    const at = timeAt(element, e.clientX);
    mix.drag.moved ||= Math.abs(at - mix.drag.from) > mix.view.span / 200;
    if (!mix.drag.loop) seekTo(at);
    else if (mix.drag.moved) {
      mix.loop = { a: Math.min(mix.drag.from, at), b: Math.max(mix.drag.from, at), on: true };
      showLoop();
    }
  });
  const end = (e) => {
    if (!mix?.drag) return;
    const drag = mix.drag;
    mix.drag = null;
    if (element.hasPointerCapture(e.pointerId)) element.releasePointerCapture(e.pointerId);
    // A cancelled touch is the browser scrolling: nothing to do.
    if (e.type === "pointercancel") return;
    if (drag.touch && !drag.seeking) {
      // A tap seeks; a finger that wandered without going sideways did not mean to.
      if (Math.hypot(e.clientX - drag.x, e.clientY - drag.y) < 10) seekTo(drag.from);
      return;
    }
    // A click on the ruler seeks like a click on a lane.
    if (drag.loop && !drag.moved) seekTo(drag.from);
    else if (drag.loop) setLoopPoint("b", mix.loop.b);
  };
  element.addEventListener("pointerup", end);
  element.addEventListener("pointercancel", end);
}

export function zoom(factor, around = null) {
  if (!mix) return;
  const { start, span } = mix.view;
  const centre = around ?? (position() >= start && position() <= start + span ? position() : start + span / 2);
  const next = Math.min(mix.duration, Math.max(Math.min(minimumSpan, mix.duration), span / factor));
  mix.view.span = next;
  mix.view.start = centre - (centre - start) * (next / span);
  scrollTo(mix.view.start);
}

export function fit() {
  if (!mix) return;
  mix.view = { start: 0, span: mix.duration };
  scrollTo(0);
}

function scrollTo(start) {
  mix.view.start = Math.min(Math.max(0, start), mix.duration - mix.view.span);
  const room = mix.duration - mix.view.span;
  const scroll = $("scroll-input");
  scroll.disabled = room <= 0;
  scroll.value = room > 0 ? String(Math.round((mix.view.start / room) * 1000)) : "0";
  $("zoom-text").textContent = mix.view.span >= mix.duration ? "whole song" : `${Math.round(mix.view.span)} s shown`;
  drawAll();
  showPosition(position());
}

/** While playing, the view pages along with the playhead. */
function follow(at) {
  const { start, span } = mix.view;
  if (span >= mix.duration || (at >= start && at <= start + span)) return;
  scrollTo(at - span * 0.05);
}

function onWheel(e) {
  if (!mix) return;
  if (e.ctrlKey || e.metaKey) {
    e.preventDefault();
    zoom(e.deltaY < 0 ? 1.25 : 0.8, timeAt($("ruler"), e.clientX));
  } else if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
    e.preventDefault();
    const delta = (e.shiftKey ? e.deltaY : e.deltaX) || e.deltaY;
    scrollTo(mix.view.start + (delta / 500) * mix.view.span);
  }
}

// MARK: - Drawing

function colour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function drawAll() {
  if (!mix) return;
  drawRuler();
  for (const t of mix.tracks) drawLane(t);
  drawLoop();
}

function sizeCanvas(canvas, cssHeight) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.round(cssHeight * ratio);
  if (canvas.width !== width || canvas.height !== height) Object.assign(canvas, { width, height });
  return { width, height, ratio };
}

/** The loudest value of each pixel column of the visible span, from the stem's peaks. */
function drawLane(track) {
  const { canvas, peaks } = track;
  const { width, height } = sizeCanvas(canvas, 64);
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, width, height);
  const mid = height / 2;
  g.fillStyle = getComputedStyle(track.item).getPropertyValue("--lane").trim() || colour("--accent");
  if (peaks === undefined) return;
  if (peaks === null) {
    g.fillRect(0, mid, width, 1);
    canvas.dataset.drawn = "none";
    canvas.setAttribute("aria-label", `Waveform of ${track.name} (not available for this job)`);
    return;
  }
  const perSecond = peaks.sample_rate / peaks.samples_per_peak;
  const values = peaks.peaks;
  const { start, span } = mix.view;
  for (let x = 0; x < width; x++) {
    const from = Math.floor((start + (x / width) * span) * perSecond);
    const to = Math.max(from + 1, Math.floor((start + ((x + 1) / width) * span) * perSecond));
    let peak = 0;
    for (let i = from; i < Math.min(to, values.length); i++) peak = Math.max(peak, values[i]);
    const h = (peak / track.loudest) * (mid - 1);
    g.fillRect(x, mid - h, 1, Math.max(1, 2 * h));
  }
  canvas.dataset.drawn = "true";
  canvas.dataset.peak = String(track.loudest / peaks.scale);
}

/** Time ticks at a step that leaves ~80 px between labels. */
function drawRuler() {
  const canvas = $("ruler-canvas");
  const { width, height, ratio } = sizeCanvas(canvas, 24);
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, width, height);
  g.fillStyle = colour("--muted");
  g.font = `${11 * ratio}px system-ui, sans-serif`;
  const { start, span } = mix.view;
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600];
  const step = steps.find((s) => (s / span) * (width / ratio) >= 80) ?? 600;
  for (let t = Math.ceil(start / step) * step; t <= start + span; t += step) {
    const x = ((t - start) / span) * width;
    g.fillRect(x, height * 0.55, ratio, height * 0.45);
    g.fillText(formatTime(t), x + 3 * ratio, height * 0.45);
  }
}

// MARK: - Export

/** What the server needs to render what is heard: every stem's volume, pan and whether it is
 *  heard, the speed and the key. */
function settings() {
  const stems = Object.fromEntries(mix.tracks.map((t) => [t.name, { volume: t.volume, pan: t.pan, muted: !audible(t) }]));
  return { stems, speed: mix.speed, semitones: mix.semitones };
}

export async function exportCurrentMix(describe) {
  if (!mix) return;
  const format = $("export-format").value;
  const button = $("export-button");
  button.disabled = true;
  $("export-status").textContent = "Rendering the mix…";
  try {
    const blob = await exportMix(mix.job.job_id, { format, ...settings() });
    const name = /^https?:/.test(mix.job.input_name ?? "") ? `stemify-${mix.job.job_id.slice(0, 8)}` : title(mix.job).replace(/[\\/:*?"<>|]/g, "_");
    const link = control("a", { href: URL.createObjectURL(blob), download: `${name} (mix).${format}` });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    $("export-status").textContent = `Mix exported (${format.toUpperCase()}).`;
  } catch (error) {
    $("export-status").textContent = describe(error);
  } finally {
    button.disabled = false;
  }
}

// MARK: - Keyboard

/** The mixer's shortcuts (listed on the page); true when the key was one. */
export function handleKey(e) {
  if (!mix || e.ctrlKey || e.metaKey || e.altKey) return false;
  const target = e.target;
  const typing = target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement
    || (target instanceof HTMLInputElement && target.type !== "range" && target.type !== "checkbox");
  if (typing) return false;
  // Sliders keep their arrow keys; buttons keep Space and Enter.
  const onSlider = target instanceof HTMLInputElement && target.type === "range";
  const onButton = target instanceof HTMLButtonElement || target instanceof HTMLAnchorElement;
  const key = e.key;
  if (key === " " && !onButton) togglePlay();
  else if ((key === "ArrowLeft" || key === "ArrowRight") && !onSlider) seekTo(position() + (key === "ArrowLeft" ? -seekStep : seekStep));
  else if (key === "Home" && !onSlider) seekTo(mix.loop.on ? mix.loop.a : 0);
  else if (key === "a" || key === "A") setLoopPoint("a");
  else if (key === "b" || key === "B") setLoopPoint("b");
  else if (key === "l" || key === "L") toggleLoop();
  else if (key === "Escape") clearLoop();
  else if (key === "[" || key === "]") setSpeed(mix.speed * 100 + (key === "[" ? -5 : 5));
  else if (key === "," || key === ".") setKey(mix.semitones + (key === "," ? -1 : 1));
  else if (key === "+" || key === "=") zoom(2);
  else if (key === "-" || key === "_") zoom(0.5);
  else if (key === "0") fit();
  else if (key >= "1" && key <= "9" && Number(key) <= mix.tracks.length) {
    const track = mix.tracks[Number(key) - 1];
    track.muted = !track.muted;
    mix.minusOne = null;
    applyMix();
  } else return false;
  e.preventDefault();
  return true;
}

/** Wires the mixer's fixed controls once, at page start. */
export function setUpMixer(describe) {
  // A button pressed with the pointer lets go of the focus, so Space goes on playing and
  // pausing (keyboard users, who moved the focus there on purpose, keep Space on the button).
  $("mixer-section").addEventListener("click", (e) => {
    const pressed = e.target instanceof Element ? e.target.closest("button") : null;
    if (pressed && e.detail > 0) pressed.blur();
  });
  $("play-button").addEventListener("click", togglePlay);
  // Opening the audio device takes up to a second or two in some engines; any press on the page
  // may start it (browsers allow that after a gesture), so Play sounds at once.
  const warm = () => { if (mix?.player?.context.state === "suspended") mix.player.context.resume(); };
  document.addEventListener("pointerdown", warm, { capture: true });
  document.addEventListener("keydown", warm, { capture: true });
  $("speed-input").addEventListener("input", () => setSpeed(Number($("speed-input").value)));
  $("transpose-input").addEventListener("input", () => setKey(Number($("transpose-input").value)));
  $("loop-button").addEventListener("click", toggleLoop);
  $("zoom-in-button").addEventListener("click", () => zoom(2));
  $("zoom-out-button").addEventListener("click", () => zoom(0.5));
  $("zoom-fit-button").addEventListener("click", fit);
  $("scroll-input").addEventListener("input", () => {
    if (mix) scrollTo((Number($("scroll-input").value) / 1000) * (mix.duration - mix.view.span));
  });
  $("karaoke-button").addEventListener("click", karaoke);
  $("export-button").addEventListener("click", () => exportCurrentMix(describe));
  const ruler = $("ruler");
  attachPointer(ruler, true);
  ruler.addEventListener("keydown", (e) => {
    if (!mix) return;
    const steps = { ArrowLeft: -seekStep, ArrowRight: seekStep, PageDown: -30, PageUp: 30 };
    if (e.key in steps) {
      seekTo(position() + steps[e.key]);
      e.preventDefault();
      e.stopPropagation();
    } else if (e.key === "End") {
      seekTo(mix.duration);
      e.preventDefault();
    }
  });
  $("timeline").addEventListener("wheel", onWheel, { passive: false });
  // Lane colours follow the light or dark theme.
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => drawAll());
}
