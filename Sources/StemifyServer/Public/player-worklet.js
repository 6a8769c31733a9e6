// The audio thread's half of the mixer (an AudioWorklet module; see player.js for the other).
//
// "stem-player" plays every stem from one read position: one output per stem, all written in
// the same render quantum from the same position, so the stems cannot drift apart in any
// engine. Speed is a change of reading rate (varispeed, which also raises the pitch); the
// "pitch-shifter" after the mix takes that pitch back out and adds the transpose, so every stem
// passes through the same shifter and stays in time with the others.

/** Frames per window of samples the page sends (a power of two: index = frame >> WINDOW_BITS). */
const WINDOW_BITS = 16;
const WINDOW = 1 << WINDOW_BITS;

class StemPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { channels, length } = options.processorOptions;
    /** Channels of each stem (its output has as many). */
    this.channels = channels;
    this.length = length;
    /** Read position in stem frames; fractional when the step is. */
    this.position = 0;
    /** Stem frames per output frame: speed × stem rate / context rate. */
    this.step = 1;
    this.playing = false;
    /** Loop in stem frames, or null. */
    this.loop = null;
    /** Window index → [stem][channel] Float32Array(WINDOW) (the last one may be shorter). */
    this.windows = new Map();
    this.waiting = false;
    this.quanta = 0;
    this.port.onmessage = (e) => this.receive(e.data);
  }

  receive(m) {
    if (m.window !== undefined) this.windows.set(m.window, m.samples);
    if (m.drop) for (const index of m.drop) this.windows.delete(index);
    if (m.seek !== undefined) this.position = m.seek;
    if (m.step !== undefined) this.step = m.step;
    if (m.loop !== undefined) this.loop = m.loop;
    if (m.playing !== undefined) this.playing = m.playing;
    if (m.report) this.report();
  }

  report() {
    this.port.postMessage({ position: this.position, time: currentTime, playing: this.playing, waiting: this.waiting });
  }

  /** True when frames `from`…`to` of every stem are here. */
  holds(from, to) {
    for (let w = Math.max(0, from) >> WINDOW_BITS; w <= Math.min(to, this.length - 1) >> WINDOW_BITS; w++) {
      if (!this.windows.has(w)) return false;
    }
    return true;
  }

  /** Sample `frame` of stem `s`, channel `c` (silence outside the song). */
  sample(s, c, frame) {
    if (frame < 0 || frame >= this.length) return 0;
    const window = this.windows.get(frame >> WINDOW_BITS);
    return window ? window[s][c][frame & (WINDOW - 1)] : 0;
  }

  process(inputs, outputs) {
    const frames = outputs[0]?.[0]?.length ?? 128;
    let ended = false;
    if (this.playing) {
      // Enough for this quantum (and the interpolation's neighbours), or nothing moves: a stem
      // that is late holds all the others, so they wait together.
      const span = Math.ceil(frames * this.step) + 3;
      const wraps = this.loop && this.position + span >= this.loop.b;
      const ready = wraps
        ? this.holds(Math.floor(this.position) - 1, this.loop.b + 2) && this.holds(this.loop.a - 1, this.loop.a + span)
        : this.holds(Math.floor(this.position) - 1, Math.floor(this.position) + span);
      this.waiting = !ready;
      if (ready) ended = this.render(outputs, frames);
    }
    if (++this.quanta % 8 === 0 || ended) this.report();
    return true;
  }

  /** Writes one quantum from the read position; true when the song ended in it. */
  render(outputs, frames) {
    const exact = this.step === 1 && Number.isInteger(this.position);
    for (let i = 0; i < frames; i++) {
      if (this.position >= this.length) {
        this.playing = false;
        this.position = this.length;
        return true;
      }
      const at = Math.floor(this.position);
      const t = this.position - at;
      for (let s = 0; s < outputs.length; s++) {
        const out = outputs[s];
        for (let c = 0; c < out.length; c++) {
          if (exact) { out[c][i] = this.sample(s, c, at); continue; }
          // Catmull-Rom through four neighbours: exact at t = 0, smooth between.
          const y0 = this.sample(s, c, at - 1), y1 = this.sample(s, c, at);
          const y2 = this.sample(s, c, at + 1), y3 = this.sample(s, c, at + 2);
          out[c][i] = y1 + 0.5 * t * (y2 - y0 + t * (2 * y0 - 5 * y1 + 4 * y2 - y3 + t * (3 * (y1 - y2) + y3 - y0)));
        }
      }
      this.position += this.step;
      if (this.loop && this.position >= this.loop.b) {
        // Past B by a step: on from A by as much. Far past (a loop set behind the playhead): A.
        const over = this.position - this.loop.b;
        this.position = over < this.step ? this.loop.a + over : this.loop.a;
      }
    }
    return false;
  }
}

/** In-place radix-2 complex FFT of size n (sign −1 forward, +1 inverse, unscaled). */
class FFT {
  constructor(n) {
    this.n = n;
    this.reverse = new Uint32Array(n);
    const bits = Math.log2(n);
    for (let i = 0; i < n; i++) {
      let r = 0;
      for (let b = 0; b < bits; b++) r |= ((i >> b) & 1) << (bits - 1 - b);
      this.reverse[i] = r;
    }
    this.cos = new Float64Array(n / 2);
    this.sin = new Float64Array(n / 2);
    for (let i = 0; i < n / 2; i++) {
      this.cos[i] = Math.cos((2 * Math.PI * i) / n);
      this.sin[i] = Math.sin((2 * Math.PI * i) / n);
    }
  }

  transform(re, im, sign) {
    const n = this.n;
    for (let i = 0; i < n; i++) {
      const j = this.reverse[i];
      if (j > i) {
        [re[i], re[j]] = [re[j], re[i]];
        [im[i], im[j]] = [im[j], im[i]];
      }
    }
    for (let size = 2; size <= n; size <<= 1) {
      const half = size >> 1, stride = n / size;
      for (let start = 0; start < n; start += size) {
        for (let k = 0; k < half; k++) {
          const wr = this.cos[k * stride], wi = sign * this.sin[k * stride];
          const a = start + k, b = a + half;
          const xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
          re[b] = re[a] - xr; im[b] = im[a] - xi;
          re[a] += xr; im[a] += xi;
        }
      }
    }
  }
}

/**
 * A phase vocoder that shifts pitch by `factor` and keeps time, after Laroche and Dolson ("New
 * phase-vocoder techniques for pitch-shifting, harmonizing and other exotic effects", 1999):
 * each spectral peak moves with the bins around it (its "region") to `factor` × its frequency,
 * and the region's phases turn together by what the shift adds per hop, so a partial keeps its
 * shape and its frequency comes out exact. Frames of 2048 with hop 512 (4× overlap), Hann in
 * and out; the latency is one frame (46 ms at 44.1 kHz). At factor 1 the input passes untouched.
 */
class PitchShifter extends AudioWorkletProcessor {
  static size = 2048;
  static hop = 512;

  constructor() {
    super();
    this.factor = 1;
    this.channels = [];
    this.fft = new FFT(PitchShifter.size);
    this.window = new Float64Array(PitchShifter.size).map((_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / PitchShifter.size));
    this.port.onmessage = (e) => {
      if (e.data.factor !== undefined) {
        // A fresh start: what was in the frames belonged to another factor.
        if (e.data.factor !== this.factor) this.channels = [];
        this.factor = e.data.factor;
      }
    };
  }

  channel(c) {
    const n = PitchShifter.size, hop = PitchShifter.hop;
    return (this.channels[c] ??= {
      // The last frame of input (its newest hop filling), the overlap-add of the frames made so
      // far, and the hop of output being played while the next hop of input comes in.
      input: new Float64Array(n), sum: new Float64Array(n), ready: new Float64Array(hop), filled: 0,
      lastPhase: new Float64Array(n / 2 + 1), rotation: new Map(),
      re: new Float64Array(n), im: new Float64Array(n),
      magnitude: new Float64Array(n / 2 + 1), phase: new Float64Array(n / 2 + 1),
    });
  }

  process(inputs, outputs) {
    const input = inputs[0], output = outputs[0];
    const n = PitchShifter.size, hop = PitchShifter.hop;
    for (let c = 0; c < output.length; c++) {
      const x = input[c] ?? input[0];
      if (!x) { output[c].fill(0); continue; }
      if (this.factor === 1) { output[c].set(x); continue; }
      const s = this.channel(c);
      for (let i = 0; i < x.length; i++) {
        s.input[n - hop + s.filled] = x[i];
        output[c][i] = s.ready[s.filled];
        if (++s.filled === hop) {
          s.filled = 0;
          this.frame(s);
          s.ready.set(s.sum.subarray(0, hop));
          s.sum.copyWithin(0, hop);
          s.sum.fill(0, n - hop);
          s.input.copyWithin(0, hop);
        }
      }
    }
    return true;
  }

  frame(s) {
    const n = PitchShifter.size, hop = PitchShifter.hop, half = n / 2;
    const expected = (2 * Math.PI * hop) / n;
    for (let i = 0; i < n; i++) { s.re[i] = s.input[i] * this.window[i]; s.im[i] = 0; }
    this.fft.transform(s.re, s.im, -1);
    const { magnitude, phase } = s;
    for (let k = 0; k <= half; k++) {
      magnitude[k] = Math.hypot(s.re[k], s.im[k]);
      phase[k] = Math.atan2(s.im[k], s.re[k]);
    }
    // Peaks: bins louder than two neighbours each side.
    const peaks = [];
    for (let k = 2; k <= half - 2; k++) {
      const m = magnitude[k];
      if (m > 1e-9 && m > magnitude[k - 1] && m >= magnitude[k + 1] && m > magnitude[k - 2] && m >= magnitude[k + 2]) peaks.push(k);
    }
    s.re.fill(0);
    s.im.fill(0);
    const rotation = new Map();
    for (let p = 0; p < peaks.length; p++) {
      const k = peaks[p];
      // The peak's true frequency (in bins) from its phase advance since the last frame.
      let delta = phase[k] - s.lastPhase[k] - k * expected;
      delta -= 2 * Math.PI * Math.round(delta / (2 * Math.PI));
      const frequency = k + delta / expected;
      const shift = frequency * (this.factor - 1);
      const bins = Math.round(shift);
      // The shift's phase per hop, carried on from the nearest peak of the last frame.
      let previous = 0;
      for (const near of [k, k - 1, k + 1, k - 2, k + 2]) {
        if (s.rotation.has(near)) { previous = s.rotation.get(near); break; }
      }
      const turn = previous + shift * expected;
      rotation.set(k, turn - 2 * Math.PI * Math.floor(turn / (2 * Math.PI)));
      const from = p === 0 ? 0 : Math.ceil((peaks[p - 1] + k) / 2);
      const to = p === peaks.length - 1 ? half : Math.floor((k + peaks[p + 1]) / 2 - 0.5);
      for (let j = from; j <= to; j++) {
        const target = j + bins;
        if (target < 0 || target > half) continue;
        const angle = phase[j] + turn;
        s.re[target] += magnitude[j] * Math.cos(angle);
        s.im[target] += magnitude[j] * Math.sin(angle);
      }
    }
    s.rotation = rotation;
    s.lastPhase.set(phase);
    for (let k = 1; k < half; k++) { s.re[n - k] = s.re[k]; s.im[n - k] = -s.im[k]; }
    s.im[0] = 0;
    s.im[half] = 0;
    this.fft.transform(s.re, s.im, 1);
    // Hann in and out at 4× overlap sums to 1.5; the inverse transform is unscaled (× n).
    const scale = 1 / (n * 1.5);
    for (let i = 0; i < n; i++) s.sum[i] += s.re[i] * this.window[i] * scale;
  }
}

/**
 * Passes its input through and reports on it: the loudest sample of each channel about 30 times
 * a second (the lanes' level meters), and on request ({ record: frames }) the next `frames`
 * samples as they were (the browser tests compare them with the stems).
 */
class Tap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.peak = 0;
    this.quanta = 0;
    this.recording = null;
    this.port.onmessage = (e) => {
      if (e.data.record) this.recording = { frames: e.data.record, got: 0, channels: [] };
    };
  }

  process(inputs, outputs) {
    const input = inputs[0];
    for (let c = 0; c < outputs[0].length; c++) {
      const x = input[c] ?? input[0];
      if (x) outputs[0][c].set(x); else outputs[0][c].fill(0);
      if (x) for (let i = 0; i < x.length; i++) this.peak = Math.max(this.peak, Math.abs(x[i]));
    }
    const r = this.recording;
    if (r) {
      const n = Math.min(outputs[0][0].length, r.frames - r.got);
      outputs[0].forEach((channel, c) => {
        r.channels[c] ??= new Float32Array(r.frames);
        r.channels[c].set(channel.subarray(0, n), r.got);
      });
      r.got += n;
      if (r.got === r.frames) {
        this.port.postMessage({ recorded: r.channels, time: currentTime });
        this.recording = null;
      }
    }
    if (++this.quanta % 12 === 0) {
      this.port.postMessage({ peak: this.peak });
      this.peak = 0;
    }
    return true;
  }
}

registerProcessor("stem-player", StemPlayer);
registerProcessor("tap", Tap);
registerProcessor("pitch-shifter", PitchShifter);
