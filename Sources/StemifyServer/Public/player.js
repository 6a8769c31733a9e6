// Every stem of a song on one clock: the page's half of the player (player-worklet.js is the
// audio thread's).
//
// Why not one <audio> element per stem: each element has its own clock, and keeping them
// together by re-seeking fails in Firefox and WebKit (hundreds of seeks, stems up to 1 s apart).
// Why not decoded AudioBuffers: a 10-minute 6-stem song is 1.3 GB of float samples, more than
// a phone gives a page. Here the server's 16-bit WAV of each stem (`playback_url`) is read in
// windows of 65536 frames (1.5 s) by HTTP Range, a few seconds ahead of the playhead, and one
// AudioWorklet plays all stems from one read position. What the page holds is the windows
// ahead (and the loop's): about 8 s × stems × channels × 4 bytes, 25 MB for six stereo stems.

const WINDOW_BITS = 16;
const WINDOW = 1 << WINDOW_BITS;
/** Seconds of song kept ready ahead of the playhead (at the current speed). */
const AHEAD_SECONDS = 8;
/** Loops up to this long stay whole in memory, so every repeat is ready. */
const LOOP_HELD_SECONDS = 60;
/** Windows fetched at once. */
const PARALLEL = 2;
/** One frame of the pitch shifter: what it delays the sound by when it works. */
const SHIFTER_LATENCY = 2048;

/** `fmt ` and `data` of a 16-bit PCM WAV, from its first bytes and its full size. */
export function parseWAVHeader(bytes, totalSize) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error("not a WAV file");
  let at = 12, format = null;
  while (at + 8 <= bytes.length) {
    const id = tag(at), size = view.getUint32(at + 4, true);
    if (id === "fmt ") {
      if (at + 24 > bytes.length) break;
      format = {
        code: view.getUint16(at + 8, true), channels: view.getUint16(at + 10, true),
        rate: view.getUint32(at + 12, true), blockAlign: view.getUint16(at + 20, true), bits: view.getUint16(at + 22, true),
      };
    } else if (id === "data") {
      if (!format) throw new Error("the WAV has no format before its data");
      if (format.bits !== 16 || (format.code !== 1 && format.code !== 0xfffe)) throw new Error("the WAV is not 16-bit PCM");
      const offset = at + 8;
      // A file still being written may say 0 or 2^32 − 1: the size of the file decides then.
      const available = totalSize - offset;
      const dataSize = size > 0 && size < 0xffffffff ? Math.min(size, available) : available;
      return { ...format, offset, frames: Math.floor(dataSize / format.blockAlign) };
    }
    at += 8 + size + (size & 1);
  }
  throw new Error("the WAV header is incomplete");
}

/** What the server answered about a window or header it could not give. */
class FetchError extends Error {}

async function fetchRange(url, from, to, signal) {
  const response = await fetch(url, { headers: { Range: `bytes=${from}-${to}` }, credentials: "same-origin", signal });
  if (response.status !== 206 && response.status !== 200) throw new FetchError(`HTTP ${response.status} for ${url}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const total = Number(response.headers.get("Content-Range")?.split("/")[1] ?? bytes.length);
  // A server that ignores Range sends the whole file: take the part asked for.
  return { bytes: response.status === 200 ? bytes.subarray(from, to + 1) : bytes, total };
}

export class StemPlayer {
  /**
   * Reads every stem's header and loads the worklet; `stems` are `{ name, url }` (16-bit WAVs,
   * same origin). The context may still be suspended: `play()` resumes it (after a gesture).
   */
  static async open(stems) {
    const headers = await Promise.all(stems.map(async (stem) => {
      const { bytes, total } = await fetchRange(stem.url, 0, 4095);
      return parseWAVHeader(bytes, total);
    }));
    const rate = headers[0].rate;
    if (headers.some((h) => h.rate !== rate)) throw new Error("the stems have different sample rates");
    let context;
    // At the stems' own rate a speed of 100 % copies samples untouched (the browser resamples
    // for the device after the mix, once, with its own resampler).
    try { context = new AudioContext({ sampleRate: rate, latencyHint: "playback" }); } catch { context = new AudioContext({ latencyHint: "playback" }); }
    await context.audioWorklet.addModule(new URL("./player-worklet.js", import.meta.url));
    return new StemPlayer(context, stems, headers, rate);
  }

  constructor(context, stems, headers, rate) {
    this.context = context;
    this.stems = stems;
    this.headers = headers;
    this.rate = rate;
    this.length = Math.max(...headers.map((h) => h.frames));
    this.duration = this.length / rate;
    this.node = new AudioWorkletNode(context, "stem-player", {
      numberOfInputs: 0, numberOfOutputs: stems.length, outputChannelCount: headers.map((h) => h.channels),
      processorOptions: { channels: headers.map((h) => h.channels), length: this.length },
    });
    this.shifter = new AudioWorkletNode(context, "pitch-shifter", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [2] });
    this.shifter.connect(context.destination);
    this.speed = 1;
    this.semitones = 0;
    this.loop = null;
    this.playing = false;
    this.report = { position: 0, time: 0, playing: false, waiting: false };
    /** Window index → "held" | AbortController (on its way). */
    this.windows = new Map();
    this.failures = 0;
    this.onended = null;
    this.onerror = null;
    this.node.port.onmessage = (e) => this.heard(e.data);
    this.schedule();
  }

  /** The bus every stem's chain ends in: it goes through the pitch shifter to the speakers. */
  get input() { return this.shifter; }

  heard(report) {
    const ended = this.report.playing && !report.playing && report.position >= this.length;
    this.report = report;
    this.schedule();
    if (ended) {
      this.playing = false;
      this.onended?.();
    }
  }

  /** Seconds into the song that are being heard now. */
  get position() {
    const r = this.report;
    let frames = r.position;
    if (this.playing && r.playing && !r.waiting) {
      frames += Math.max(0, this.context.currentTime - r.time) * this.context.sampleRate * this.step;
      if (this.loop && frames >= this.loop.b) frames = this.loop.a + ((frames - this.loop.b) % Math.max(1, this.loop.b - this.loop.a));
    }
    if (this.shifting) frames -= SHIFTER_LATENCY * this.step * (this.rate / this.context.sampleRate);
    return Math.min(Math.max(0, frames), this.length) / this.rate;
  }

  /** True while a stem's next window has not come: the clock waits for it. */
  get waiting() { return this.playing && this.report.waiting; }

  get step() { return (this.speed * this.rate) / this.context.sampleRate; }
  get shifting() { return Math.abs(this.factor - 1) > 1e-9; }
  /** The shifter's factor: the transpose, less the pitch the speed added. */
  get factor() { return 2 ** (this.semitones / 12) / this.speed; }

  async play() {
    if (this.report.position >= this.length) this.seek(this.loop ? this.loop.a / this.rate : 0);
    this.playing = true;
    this.node.port.postMessage({ playing: true, step: this.step, report: true });
    // Told first: some engines run the context well before resume()'s promise settles.
    await this.context.resume();
  }

  pause() {
    this.playing = false;
    this.node.port.postMessage({ playing: false, report: true });
  }

  seek(seconds) {
    const frame = Math.round(Math.min(Math.max(0, seconds), this.duration) * this.rate);
    this.report = { ...this.report, position: frame, time: this.context.currentTime };
    this.node.port.postMessage({ seek: frame, report: true });
    this.schedule();
  }

  setSpeed(speed) {
    this.speed = speed;
    this.node.port.postMessage({ step: this.step });
    this.shifter.port.postMessage({ factor: this.factor });
    this.schedule();
  }

  setKey(semitones) {
    this.semitones = semitones;
    this.shifter.port.postMessage({ factor: this.factor });
  }

  /** A loop from `a` to `b` seconds, or none (null). */
  setLoop(a, b) {
    this.loop = a === null ? null : { a: Math.round(a * this.rate), b: Math.round(b * this.rate) };
    this.node.port.postMessage({ loop: this.loop });
    this.schedule();
  }

  /** The windows wanted now, nearest first: the playhead's, those ahead (through the loop's
   *  end back to its start), and a short loop whole. */
  wanted() {
    const want = [];
    const add = (w) => { if (w >= 0 && w * WINDOW < this.length && !want.includes(w)) want.push(w); };
    let frame = Math.floor(this.report.position);
    add((frame - 1) >> WINDOW_BITS);
    let left = AHEAD_SECONDS * this.speed * this.rate;
    while (left > 0 && frame < this.length) {
      add(frame >> WINDOW_BITS);
      const next = (frame | (WINDOW - 1)) + 1;
      if (this.loop && frame < this.loop.b && next >= this.loop.b) {
        left -= this.loop.b - frame;
        frame = this.loop.a;
        add((frame - 1) >> WINDOW_BITS);
      } else {
        left -= next - frame;
        frame = next;
      }
    }
    if (this.loop && this.loop.b - this.loop.a <= LOOP_HELD_SECONDS * this.rate) {
      for (let w = (this.loop.a - 1) >> WINDOW_BITS; w <= (this.loop.b + 2) >> WINDOW_BITS; w++) add(w);
    }
    return want;
  }

  /** Fetches what is wanted and not here, lets go of what is here and no longer wanted. */
  schedule() {
    if (this.closed) return;
    const want = this.wanted();
    const drop = [];
    for (const [w, state] of this.windows) {
      if (want.includes(w)) continue;
      if (state === "held") drop.push(w); else state.abort();
      this.windows.delete(w);
    }
    if (drop.length) this.node.port.postMessage({ drop });
    let busy = [...this.windows.values()].filter((s) => s !== "held").length;
    for (const w of want) {
      if (busy >= PARALLEL) break;
      if (this.windows.has(w)) continue;
      busy++;
      this.fetchWindow(w);
    }
  }

  async fetchWindow(w) {
    const abort = new AbortController();
    this.windows.set(w, abort);
    try {
      const samples = await Promise.all(this.stems.map(async (stem, s) => {
        const h = this.headers[s];
        const first = w * WINDOW;
        const frames = Math.min(WINDOW, h.frames - first);
        const planes = Array.from({ length: h.channels }, () => new Float32Array(WINDOW));
        if (frames <= 0) return planes;
        const from = h.offset + first * h.blockAlign;
        const { bytes } = await fetchRange(stem.url, from, from + frames * h.blockAlign - 1, abort.signal);
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const got = Math.min(frames, Math.floor(bytes.length / h.blockAlign));
        for (let i = 0; i < got; i++) {
          for (let c = 0; c < h.channels; c++) planes[c][i] = view.getInt16(i * h.blockAlign + 2 * c, true) / 32768;
        }
        return planes;
      }));
      if (this.windows.get(w) !== abort) return;
      this.windows.set(w, "held");
      this.failures = 0;
      this.node.port.postMessage({ window: w, samples }, samples.flat().map((p) => p.buffer));
    } catch (error) {
      if (this.windows.get(w) === abort) this.windows.delete(w);
      if (abort.signal.aborted || this.closed) return;
      // A dropped connection: try again shortly; after a few in a row, say so.
      if (++this.failures === 3) this.onerror?.(error);
      setTimeout(() => this.schedule(), Math.min(2000, 200 * this.failures));
      return;
    }
    this.schedule();
  }

  close() {
    this.closed = true;
    for (const state of this.windows.values()) if (state !== "held") state.abort();
    this.windows.clear();
    this.node.port.onmessage = null;
    this.node.disconnect();
    this.shifter.disconnect();
    return this.context.close();
  }
}
