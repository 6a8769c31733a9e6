#!/usr/bin/env python3
"""The page in a real headless Chromium (Selenium), against a running `stemify serve` with the
small fixture model. `scripts/test.sh` runs it; by hand:

    swift build -c release && python3 tools/browser_test.py [--artifacts DIR]

Uploads a fixture file, follows the progress to done, checks one drawn waveform per stem,
plays (the position advances), mutes a stem, toggles playback from the keyboard, downloads a
stem, reloads (the recent job is still listed), checks 360 px and desktop widths, labels on
every control and no console errors. Then a batch of three files through a proxy that drops
the connection once in the middle of the first upload chunk: the upload resumes (no restart
from zero), all three songs finish, and the ZIP downloads with every stem. Screenshots of each
step go to the artifacts folder.
Needs Debian's chromium and chromium-driver and PyPI selenium (scripts/install-deps.sh).
"""
import argparse
import array
import io
import math
import os
import shutil
import socket
import struct
import subprocess
import re
import sys
import tempfile
import threading
import time
import zipfile
import urllib.request
import wave
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = Path(__file__).resolve().parent.parent


def fail(why):
    print(f"FAIL: {why}", file=sys.stderr)
    raise SystemExit(1)


def write_wav(path, seconds=3.0):
    rate = 44100
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        beat = math.exp(-((i % (rate // 2)) / 800.0))
        left = 0.3 * math.sin(2 * math.pi * 220 * t) + 0.3 * beat * math.sin(2 * math.pi * 60 * t)
        right = 0.3 * math.sin(2 * math.pi * 330 * t) + 0.3 * beat * math.sin(2 * math.pi * 60 * t)
        frames += struct.pack("<hh", int(left * 30000), int(right * 30000))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


class CuttingProxy(threading.Thread):
    """Forwards a local port to the server and, once, closes the connection in the middle of an
    upload chunk (`cut_after` bytes after a PATCH to /api/uploads began): a network drop seen by
    the browser as a failed fetch. Records each upload request (method, upload id, Upload-Offset)
    and whether it came after the cut."""

    def __init__(self, target_port, cut_after):
        super().__init__(daemon=True)
        self.target_port = target_port
        self.cut_after = cut_after
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.cut = False
        self.forwarded = None  # bytes of the cut request that reached the server, headers included
        self.requests = []

    def run(self):
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(target=self.pump, args=(src, dst, up), daemon=True).start()

    @staticmethod
    def close(*sockets):
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def pump(self, src, dst, upstream):
        patch_bytes = None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    with self.lock:
                        for method in (b"PATCH", b"POST", b"HEAD"):
                            at = data.find(method + b" /api/uploads")
                            if at >= 0:
                                head = data[at:data.find(b"\r\n\r\n", at)].decode("latin-1")
                                target = head.split(" ")[1]
                                offset = [int(line.split(":")[1]) for line in head.split("\r\n")
                                          if line.lower().startswith("upload-offset:")]
                                self.requests.append((method.decode(), target.rsplit("/", 1)[-1],
                                                      offset[0] if offset else None, self.cut))
                        if not self.cut:
                            if patch_bytes is None and b"PATCH /api/uploads/" in data:
                                patch_bytes = 0
                            if patch_bytes is not None:
                                patch_bytes += len(data)
                                if patch_bytes > self.cut_after:
                                    self.cut = True
                                    self.forwarded = patch_bytes - len(data) + len(data) // 2
                                    dst.sendall(data[: len(data) // 2])
                                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self.close(src, dst)


def downloaded(folder, before, suffix, timeout=60, driver=None):
    """The file ending in `suffix` that appeared in `folder` since `before` (its listing), once
    complete; on failure, what the page said (its status lines and console)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = [p for p in set(folder.iterdir()) - before if p.suffix == suffix]
        if new:
            return new[0]
        time.sleep(0.2)
    said = ""
    if driver is not None:
        said = driver.execute_script("return [...document.querySelectorAll('[aria-live], .help')].map(e => e.id + ': ' + e.textContent.trim()).filter(t => t.length > 2).join(' | ')")
        said += f"; console: {[e['message'] for e in driver.get_log('browser')][-5:]}"
    fail(f"no {suffix} file was downloaded: {list(folder.iterdir())}; the page: {said}")


def wav_channels(data):
    """A 16-bit WAV's samples as one list of floats per channel."""
    with wave.open(io.BytesIO(data)) as w:
        if w.getsampwidth() != 2:
            fail(f"expected 16-bit WAV, got {8 * w.getsampwidth()}-bit")
        count = w.getnchannels()
        samples = array.array("h")
        samples.frombytes(w.readframes(w.getnframes()))
    return [[v / 32768 for v in samples[c::count]] for c in range(count)]


def mixed(stems):
    """Stereo stems, each (channels, volume, pan), through a gain and Web Audio's
    StereoPannerNode as its specification defines it for a stereo input, summed."""
    n = len(stems[0][0][0])
    out = [[0.0] * n, [0.0] * n]
    for (left, right), volume, pan in stems:
        x = pan + 1 if pan <= 0 else pan
        gl, gr = math.cos(x * math.pi / 2), math.sin(x * math.pi / 2)
        for i in range(n):
            if pan <= 0:
                out[0][i] += volume * (left[i] + right[i] * gl)
                out[1][i] += volume * right[i] * gr
            else:
                out[0][i] += volume * left[i] * gl
                out[1][i] += volume * (right[i] + left[i] * gr)
    return out


def snr(expected, actual):
    if len(actual) != len(expected) or len(actual[0]) != len(expected[0]):
        fail(f"the mix has {len(actual)}×{len(actual[0])} samples, the stems {len(expected)}×{len(expected[0])}")
    signal = sum(x * x for c in expected for x in c)
    noise = sum((x - y) ** 2 for e, a in zip(expected, actual) for x, y in zip(e, a))
    return 10 * math.log10(signal / max(noise, 1e-30))


def choose_options(driver, wait):
    """The small fixture model, fast, WAV stems, once the page has listed the models."""
    wait.until(lambda d: any(o.get_attribute("value") == "ht_small"
                             for o in d.find_elements(By.CSS_SELECTOR, "#model-select option")))
    Select(driver.find_element(By.ID, "model-select")).select_by_value("ht_small")
    Select(driver.find_element(By.ID, "quality-select")).select_by_value("fast")
    Select(driver.find_element(By.ID, "format-select")).select_by_value("wav")


def check_labels(driver):
    """Every control has a name a screen reader can read."""
    unnamed = driver.execute_script("""
        return [...document.querySelectorAll('input, select, button, [role=slider]')].filter(e =>
            !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()).map(e => e.id || e.outerHTML);
    """)
    if unnamed:
        fail(f"controls without a label: {unnamed}")


def position(driver):
    return float(driver.find_element(By.ID, "ruler").get_attribute("aria-valuenow"))


def audible(rows):
    return [r.get_attribute("data-audible") == "true" for r in rows]


def click_at(driver, element, fraction):
    """A click at `fraction` of the element's width (Selenium offsets count from its centre)."""
    width = element.size["width"]
    ActionChains(driver).move_to_element_with_offset(element, int(width * (fraction - 0.5)), 0).click().perform()


def drag_on(driver, element, start, end):
    width = element.size["width"]
    steps = 5
    chain = ActionChains(driver).move_to_element_with_offset(element, int(width * (start - 0.5)), 0).click_and_hold()
    for _ in range(steps):
        chain = chain.move_by_offset(int(width * (end - start) / steps), 0)
    chain.release().perform()


def press(driver, key):
    """A key with the focus on the page (not in a control)."""
    ActionChains(driver).send_keys(key).perform()


def sample_positions(driver, seconds):
    """The playhead's position every 50 ms for `seconds`."""
    return driver.execute_async_script("""
        const [seconds, done] = [arguments[0], arguments[arguments.length - 1]];
        const out = [];
        const started = performance.now();
        const timer = setInterval(() => {
          out.push(Number(document.getElementById('ruler').getAttribute('aria-valuenow')));
          if (performance.now() - started > seconds * 1000) { clearInterval(timer); done(out); }
        }, 50);
    """, seconds)


def zip_names(path):
    with zipfile.ZipFile(path) as z:
        if z.testzip() is not None:
            fail(f"{path.name} has a damaged entry")
        return sorted(z.namelist())


# Records every stem's output of the page's player (its "tap", before volume and pan) while it
# plays a loop from A to B (seconds), and finds each recording in the stem's own samples: the
# stems must sit at the same song frame at the same instant (spread 0) and every recorded
# sample must be the stem's sample at that frame, jumps from B back to A included. Then a
# 440 Hz tone through the page's pitch shifter at +3 semitones, measured by its zero crossings.
ONE_CLOCK = """
const [a, b, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
(async () => {
  const { player, taps } = window.stemifyMixer;
  const rate = player.context.sampleRate;
  if (rate !== player.rate) throw new Error(`the context runs at ${rate} Hz, the stems at ${player.rate}`);
  const stems = await Promise.all(player.stems.map(async (stem, k) => {
    const bytes = await (await fetch(stem.url)).arrayBuffer();
    const h = player.headers[k], view = new DataView(bytes);
    const x = new Float32Array(h.frames);
    for (let i = 0; i < h.frames; i++) x[i] = view.getInt16(h.offset + i * h.blockAlign, true) / 32768;
    return x;
  }));
  const record = (tap, frames) => new Promise((resolve) => {
    const on = (e) => {
      if (!e.data.recorded) return;
      tap.port.removeEventListener('message', on);
      resolve({ samples: e.data.recorded[0], start: Math.round(e.data.time * rate) - frames });
    };
    tap.port.addEventListener('message', on);
    tap.port.start();
    tap.port.postMessage({ record: frames });
  });
  const [A, B] = [Math.round(a * player.rate), Math.round(b * player.rate)];
  // The stem frame the player gives `i` frames after the recording's first, looping A to B.
  const frameAt = (first, i) => { let f = first + i; while (f >= B) f = A + (f - B); return f; };
  player.setLoop(a, b);
  player.seek(a);
  await player.play();
  await new Promise((r) => setTimeout(r, 300));
  const frames = Math.round((b - a) * player.rate * 1.5);
  const takes = await Promise.all(taps.slice(0, 3).map((tap) => record(tap, frames)));
  player.pause();
  let mismatches = 0, jumps = 0;
  const offsets = takes.map((take, k) => {
    const x = stems[k], y = take.samples;
    // Where the first 512 recorded samples are in the stem (between A and B).
    let first = -1;
    for (let f = A; f < B && first < 0; f++) {
      let same = true;
      for (let i = 0; i < 512 && same; i++) same = Math.abs(x[frameAt(f, i)] - y[i]) < 1e-6;
      if (same) first = f;
    }
    if (first < 0) { mismatches += y.length; return null; }
    for (let i = 0; i < y.length; i++) {
      if (Math.abs(x[frameAt(first, i)] - y[i]) >= 1e-6) mismatches++;
      if (i > 0 && frameAt(first, i) < frameAt(first, i - 1)) jumps++;
    }
    // The song frame played at context frame 0 of the recordings' common clock.
    return first - take.start;
  });
  const known = offsets.filter((o) => o !== null);
  const spread = known.length === offsets.length ? Math.max(...known) - Math.min(...known) : null;

  const context = player.context;
  const tone = new OscillatorNode(context, { frequency: 440 });
  const shifter = new AudioWorkletNode(context, 'pitch-shifter', { outputChannelCount: [2] });
  const tap = new AudioWorkletNode(context, 'tap', { outputChannelCount: [2] });
  const silent = new GainNode(context, { gain: 0 });
  shifter.port.postMessage({ factor: 2 ** (3 / 12) });
  tone.connect(shifter).connect(tap).connect(silent).connect(context.destination);
  tone.start();
  await new Promise((r) => setTimeout(r, 300));
  const y = (await record(tap, rate)).samples;
  tone.stop();
  tone.disconnect();
  const crossings = [];
  for (let i = 1; i < y.length; i++) if (y[i - 1] < 0 && y[i] >= 0) crossings.push(i - y[i] / (y[i] - y[i - 1]));
  const transposed = (crossings.length - 1) / ((crossings[crossings.length - 1] - crossings[0]) / rate);
  done({ offsets, spread, mismatches, jumps, transposed });
})().catch((e) => done({ error: String(e) }));
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stemify", type=Path, default=ROOT / ".build" / "release" / "stemify")
    p.add_argument("--artifacts", type=Path, default=ROOT / ".build" / "browser-artifacts")
    p.add_argument("--port", type=int, default=18741)
    args = p.parse_args()

    base = Path(tempfile.mkdtemp(prefix="stemify-browser-"))
    downloads = base / "downloads"
    downloads.mkdir()
    shutil.rmtree(args.artifacts, ignore_errors=True)
    args.artifacts.mkdir(parents=True)
    song = base / "song.wav"
    write_wav(song, seconds=20.0)

    env = dict(os.environ, DEMUCS_MODEL_PATH=str(ROOT / "Tests" / "Fixtures" / "repo"), MODEL_DOWNLOAD="false",
               RATE_LIMIT="100", MAX_DURATION="900", STEMIFY_WORKERS="1", STEMIFY_THREADS="2", LOG_LEVEL="warning")
    server = subprocess.Popen([str(args.stemify), "serve", "--port", str(args.port), "--data-dir", str(base / "data")],
                              env=env, stdout=open(base / "server.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{args.port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "healthz", timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    else:
        fail("the server did not start")

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    step = [0]

    def shot(name, at=None):
        """A screenshot, scrolled to the element with id `at` when given."""
        if at:
            driver.execute_script("document.getElementById(arguments[0]).scrollIntoView()", at)
        step[0] += 1
        driver.save_screenshot(str(args.artifacts / f"{step[0]:02d}-{name}.png"))

    wait = WebDriverWait(driver, 120)
    try:
        driver.get(url)
        choose_options(driver, wait)
        driver.find_element(By.ID, "karaoke-input").click()
        check_labels(driver)
        shot("form")

        # A file the server would refuse is refused in the browser first.
        bad = base / "notes.txt"
        bad.write_text("not audio")
        driver.find_element(By.ID, "file-input").send_keys(str(bad))
        wait.until(lambda d: d.find_element(By.ID, "form-error").is_displayed())
        if "not audio" not in driver.find_element(By.ID, "form-error").text:
            fail(f"unexpected message for a text file: {driver.find_element(By.ID, 'form-error').text!r}")
        shot("refused-file")

        # The input takes several files: empty it before choosing the song.
        driver.find_element(By.ID, "file-input").clear()
        # The links box takes one link per line: words with spaces are one bad line, refused in
        # the page (no batch of four "songs" stuck at "Checking the songs…").
        driver.find_element(By.ID, "youtube-input").send_keys("hello not a link")
        # Checked as typed, before anything is sent.
        wait.until(lambda d: "Line 1 is not a link" in d.find_element(By.ID, "form-error").text)
        driver.find_element(By.ID, "submit-button").click()
        wait.until(lambda d: "Line 1 is not a link" in d.find_element(By.ID, "form-error").text)
        if driver.find_element(By.ID, "batch-section").is_displayed() or driver.find_element(By.ID, "job-section").is_displayed():
            fail("a line of words became a submission")
        driver.find_element(By.ID, "youtube-input").clear()
        driver.find_element(By.ID, "file-input").send_keys(str(song))
        # The drop zone names what was chosen.
        wait.until(lambda d: d.find_element(By.ID, "file-names").text == song.name)
        driver.find_element(By.ID, "submit-button").click()
        wait.until(lambda d: d.find_element(By.ID, "job-section").is_displayed())
        shot("progress")
        wait.until(lambda d: d.find_element(By.ID, "job-status").text.startswith("Done"))
        # The page sent the file as a resumable upload, then made the job from its id.
        tus = driver.execute_script("return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/uploads')).length")
        if not tus:
            fail("the page did not upload the file through /api/uploads")
        if driver.find_element(By.ID, "job-progress").get_attribute("value") != "100":
            fail("the progress bar did not reach 100")
        rows = driver.find_elements(By.CSS_SELECTOR, "#stem-list li.stem")
        names = [r.get_attribute("data-stem") for r in rows]
        if names != ["drums", "bass", "other", "vocals", "instrumental"]:
            fail(f"stems shown: {names}")
        wait.until(lambda d: all(c.get_attribute("data-drawn") == "true" for c in d.find_elements(By.CSS_SELECTOR, "#stem-list canvas")))
        peaks = [float(c.get_attribute("data-peak")) for c in driver.find_elements(By.CSS_SELECTOR, "#stem-list canvas")]
        if len(peaks) != len(names) or not all(p > 0 for p in peaks):
            fail(f"waveforms not drawn from the server's peaks: {peaks}")
        # The instrumental is the other stems summed: it starts muted so the song is not doubled.
        if audible(rows) != [True, True, True, True, False]:
            fail(f"stems heard at first: {audible(rows)}")
        check_labels(driver)
        shot("done", at="mixer-section")

        ruler = driver.find_element(By.ID, "ruler")
        driver.find_element(By.ID, "play-button").click()
        wait.until(lambda d: position(d) > 0.2)
        if driver.find_element(By.ID, "play-button").text != "Pause":
            fail("the play button did not turn into pause")
        shot("playing", at="mixer-section")
        driver.find_element(By.ID, "play-button").click()

        # Seek: a click at three quarters of a waveform puts the playhead (on every lane) there.
        wave = rows[1].find_element(By.CSS_SELECTOR, ".wave")
        click_at(driver, wave, 0.75)
        duration = float(ruler.get_attribute("aria-valuemax"))
        if abs(position(driver) - 0.75 * duration) > 0.3:
            fail(f"clicking at 75 % of a {duration} s waveform went to {position(driver)} s")
        lefts = [float(h.value_of_css_property("left").rstrip("px")) / h.find_element(By.XPATH, "..").size["width"]
                 for h in driver.find_elements(By.CSS_SELECTOR, "#stem-list .playhead")]
        if len(lefts) != 5 or any(abs(x - 0.75) > 0.02 for x in lefts):
            fail(f"the playheads are not at 75 %: {lefts}")
        shot("seeked", at="mixer-section")

        # A–B loop by dragging on the ruler from 30 % to 40 % of the song; Home goes to A; while
        # playing, the position jumps back from B to A and never runs past B.
        drag_on(driver, ruler, 0.30, 0.40)
        section = driver.find_element(By.ID, "mixer-section")
        a, b = float(section.get_attribute("data-loop-a") or -1), float(section.get_attribute("data-loop-b") or -1)
        if abs(a - 0.3 * duration) > 0.3 or abs(b - 0.4 * duration) > 0.3 or section.get_attribute("data-loop") != "true":
            fail(f"the dragged loop is {a}–{b} (on: {section.get_attribute('data-loop')})")
        press(driver, Keys.HOME)
        if abs(position(driver) - a) > 0.05:
            fail(f"Home with a loop went to {position(driver)}, not A = {a}")
        press(driver, Keys.SPACE)
        trace = sample_positions(driver, 2.5 * (b - a) + 1)
        press(driver, Keys.SPACE)
        jumps = [(x, y) for x, y in zip(trace, trace[1:]) if y < x - 0.5]
        if not jumps or min(trace) < a - 0.05 or max(trace) > b + 0.3:
            fail(f"the loop {a:.2f}–{b:.2f} s did not repeat: positions {min(trace):.2f}–{max(trace):.2f}, jumps {jumps}")
        print(f"loop {a:.2f}–{b:.2f} s: {len(jumps)} jump(s) back to A, from {[round(x, 2) for x, _ in jumps]} s")
        shot("loop", at="mixer-section")
        # One clock: what the player gives each stem is the stem's own samples (its 16-bit WAV)
        # at the same song position, sample for sample, and through the loop's jump.
        driver.set_script_timeout(120)
        clock = driver.execute_async_script(ONE_CLOCK, a, b)
        if "error" in clock:
            fail(f"recording the stems failed: {clock['error']}")
        print(f"one clock: stems {clock['offsets']} (song frames at one instant), {clock['mismatches']} samples off, "
              f"{clock['jumps']} loop jump(s) recorded; transpose +3: {clock['transposed']:.2f} Hz for 440·2^(3/12) = 523.25 Hz")
        if clock["spread"] != 0 or clock["mismatches"] or not clock["jumps"]:
            fail(f"the stems are not on one clock: {clock}")
        if abs(clock["transposed"] / 523.2511 - 1) > 0.01:
            fail(f"a tone transposed by +3 semitones came out at {clock['transposed']:.2f} Hz")
        # The keyboard marks a loop too: A and B at the playhead; Escape clears it.
        press(driver, Keys.ESCAPE)
        click_at(driver, wave, 0.10)
        press(driver, "a")
        click_at(driver, wave, 0.175)
        press(driver, "b")
        a, b = float(section.get_attribute("data-loop-a") or -1), float(section.get_attribute("data-loop-b") or -1)
        if abs(a - 0.1 * duration) > 0.3 or abs(b - 0.175 * duration) > 0.3:
            fail(f"keys A and B marked {a}–{b}")
        press(driver, Keys.ESCAPE)
        if section.get_attribute("data-loop-a") != "":
            fail("Escape did not clear the loop")

        # Speed 75 % (five presses of '['): the song advances at 0.75× real time, pitch kept.
        for _ in range(5):
            press(driver, "[")
        if driver.find_element(By.ID, "speed-text").text != "75 %":
            fail(f"speed shows {driver.find_element(By.ID, 'speed-text').text}")
        press(driver, Keys.HOME)
        press(driver, Keys.SPACE)
        rate = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const now = () => Number(document.getElementById('ruler').getAttribute('aria-valuenow'));
            const wait = (ms) => new Promise((r) => setTimeout(r, ms));
            (async () => {
              await wait(500);
              const [p0, t0] = [now(), performance.now()];
              await wait(4000);
              done((now() - p0) / ((performance.now() - t0) / 1000));
            })();
        """)
        press(driver, Keys.SPACE)
        print(f"speed 75 %: the position advanced {rate:.3f} s per second")
        if not 0.67 <= rate <= 0.83:
            fail(f"at 75 % the position advanced {rate:.3f} s per second")
        shot("speed-75", at="mixer-section")
        for _ in range(5):
            press(driver, "]")

        # Mute, karaoke, minus one.
        mute = rows[3].find_element(By.CSS_SELECTOR, "button.mute")
        mute.click()
        if mute.get_attribute("aria-pressed") != "true" or audible(rows)[3]:
            fail("muting the vocals did not mute them")
        driver.find_element(By.ID, "karaoke-button").click()
        if audible(rows) != [False, False, False, False, True]:
            fail(f"karaoke mode should leave only the instrumental audible: {audible(rows)}")
        shot("karaoke", at="mixer-section")
        driver.find_element(By.ID, "karaoke-button").click()
        if audible(rows) != [True, True, True, True, False]:
            fail(f"karaoke off should bring back the four stems: {audible(rows)}")
        rows[3].find_element(By.CSS_SELECTOR, "button.minus-one").click()
        if audible(rows) != [True, True, True, False, False]:
            fail(f"minus one (vocals) should leave drums, bass and other: {audible(rows)}")

        # Export: vocals out (minus one), drums at 50 %, bass panned 60 % left. The WAV the page
        # downloads equals the stems at those settings through Web Audio's pan law (>= 60 dB),
        # and putting the vocals back makes it far off: they are not in it.
        driver.execute_script("""
            const set = (id, v) => { const e = document.getElementById(id); e.value = v; e.dispatchEvent(new Event('input')); };
            set('volume-drums', 50); set('pan-bass', -60);
        """)
        Select(driver.find_element(By.ID, "export-format")).select_by_value("wav")
        before = set(downloads.iterdir())
        driver.find_element(By.ID, "export-button").click()
        exported = downloaded(downloads, before, ".wav", driver=driver)
        job_id = rows[0].find_element(By.CSS_SELECTOR, "a.download").get_attribute("href").split("/api/jobs/")[1].split("/")[0]
        # The page's jobs belong to the owner cookie the server gave it.
        owner = {"Cookie": f"stemify_owner={driver.get_cookie('stemify_owner')['value']}"}
        stems = {n: wav_channels(urllib.request.urlopen(urllib.request.Request(f"{url}api/jobs/{job_id}/stems/{n}.wav", headers=owner)).read())
                 for n in ("drums", "bass", "other", "vocals")}
        mix = wav_channels(exported.read_bytes())
        expected = mixed([(stems["drums"], 0.5, 0.0), (stems["bass"], 1.0, -0.6), (stems["other"], 1.0, 0.0)])
        with_vocals = mixed([(stems["drums"], 0.5, 0.0), (stems["bass"], 1.0, -0.6), (stems["other"], 1.0, 0.0), (stems["vocals"], 1.0, 0.0)])
        ratio, leak = snr(expected, mix), snr(with_vocals, mix)
        print(f"exported mix: {ratio:.1f} dB against drums 50 % + bass panned -60 % + other; {leak:.1f} dB against the same with vocals")
        if ratio < 60 or leak > 30:
            fail(f"the exported mix is {ratio:.1f} dB from the expected one and {leak:.1f} dB from it with vocals")
        shot("exported", at="mixer-section")
        if not exported.name.startswith("song (mix)"):
            fail(f"the exported mix is named {exported.name}, not after the song")
        # The export is what plays: at 150 % (ten presses of ']') and two semitones up (','
        # lowers, '.' raises) it lasts two thirds of the song.
        driver.find_element(By.TAG_NAME, "h1").click()
        for key in "]" * 10 + "..":
            press(driver, key)
        if (driver.find_element(By.ID, "speed-text").text, driver.find_element(By.ID, "transpose-text").text) != ("150 %", "+2"):
            fail(f"speed and key show {driver.find_element(By.ID, 'speed-text').text}, {driver.find_element(By.ID, 'transpose-text').text}")
        before = set(downloads.iterdir())
        driver.find_element(By.ID, "export-button").click()
        faster = downloaded(downloads, before, ".wav", driver=driver)
        frames = len(wav_channels(faster.read_bytes())[0])
        print(f"exported at 150 %, +2: {frames / 44100:.2f} s of a {duration:.2f} s song")
        if abs(frames / 44100 - duration / 1.5) > 0.1:
            fail(f"the mix exported at 150 % lasts {frames / 44100:.2f} s, not {duration / 1.5:.2f} s")
        for key in "[" * 10 + ",,":
            press(driver, key)

        # Minus one toggles: pressed again, the song is as it was (vocals back, instrumental out).
        rows[3].find_element(By.CSS_SELECTOR, "button.minus-one").click()
        if audible(rows) != [True, True, True, True, False]:
            fail(f"minus one pressed again should bring the vocals back: {audible(rows)}")

        # Keyboard: Space toggles playback when focus is not in a control, and after a mixer
        # button was clicked with the pointer (it used to toggle that button again).
        driver.find_element(By.TAG_NAME, "h1").click()
        before = driver.find_element(By.ID, "play-button").text
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.SPACE)
        wait.until(lambda d: d.find_element(By.ID, "play-button").text != before)
        rows[0].find_element(By.CSS_SELECTOR, "button.mute").click()
        muted = audible(rows)
        before = driver.find_element(By.ID, "play-button").text
        ActionChains(driver).send_keys(Keys.SPACE).perform()
        wait.until(lambda d: d.find_element(By.ID, "play-button").text != before)
        if audible(rows) != muted:
            fail("Space after clicking M toggled the mute again instead of playing")
        rows[0].find_element(By.CSS_SELECTOR, "button.mute").click()
        if driver.find_element(By.ID, "play-button").text == "Pause":
            driver.find_element(By.ID, "play-button").click()

        # The song's name on the job card and the mixer; the job in the address, so a reload
        # (or the link sent to someone with the same browser) opens the mixer again.
        for element in ("job-title", "mixer-title"):
            if driver.find_element(By.ID, element).text != "song":
                fail(f"#{element} shows {driver.find_element(By.ID, element).text!r}, not the song's name")
        if not re.fullmatch(r"#/jobs/[0-9a-f-]{36}", driver.execute_script("return location.hash")):
            fail(f"the address does not name the job: {driver.current_url}")
        driver.refresh()
        wait.until(lambda d: d.find_element(By.ID, "mixer-section").is_displayed())
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#stem-list li.stem")) == 5)
        rows = driver.find_elements(By.CSS_SELECTOR, "#stem-list li.stem")
        # The limits, and what is left of them, before anything is refused.
        if not re.search(r"\d+ of \d+ songs per \w+ left", driver.find_element(By.ID, "limits-text").text):
            fail(f"the limits text does not say how many songs are left: {driver.find_element(By.ID, 'limits-text').text!r}")

        rows[0].find_element(By.CSS_SELECTOR, "a.download").click()
        deadline = time.time() + 30
        while time.time() < deadline and not (downloads / "song (drums).wav").exists():
            time.sleep(0.2)
        if not (downloads / "song (drums).wav").exists() or (downloads / "song (drums).wav").stat().st_size < 1000:
            fail(f"the drums stem was not downloaded: {list(downloads.iterdir())}")
        # "Download all stems" is one ZIP from the server.
        before = set(downloads.iterdir())
        driver.find_element(By.ID, "download-all-button").click()
        names = zip_names(downloaded(downloads, before, ".zip"))
        if names != sorted(f"song/song ({n}).wav" for n in ("drums", "bass", "other", "vocals", "instrumental")):
            fail(f"the job's ZIP holds {names}")
        shot("downloaded", at="mixer-section")
        # The dark theme follows the system: the page and the lanes change colour.
        def colours():
            return driver.execute_script("""return [getComputedStyle(document.body).backgroundColor,
                getComputedStyle(document.querySelector('#stem-list li')).getPropertyValue('--lane').trim()]""")
        light = colours()
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        time.sleep(0.3)
        dark = colours()
        if dark[0] == light[0] or dark[1] == light[1]:
            fail(f"the dark theme did not change the page ({light} → {dark})")
        shot("mixer-dark", at="mixer-section")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})

        driver.refresh()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recent-list li")) == 1)
        shot("recent-after-reload")

        driver.set_window_size(360, 800)
        driver.find_elements(By.CSS_SELECTOR, "#recent-list button")[0].click()
        wait.until(lambda d: d.find_element(By.ID, "mixer-section").is_displayed())
        overflow = driver.execute_script("return document.documentElement.scrollWidth")
        shot("mobile-360")
        shot("mobile-360-mixer", at="mixer-section")
        if overflow > 360:
            fail(f"the page is {overflow} px wide at a 360 px viewport")
        # A lane folds to its name and waveform; its name opens the controls and closes them.
        lane = driver.find_elements(By.CSS_SELECTOR, "#stem-list li.stem")[0]
        if lane.find_element(By.CSS_SELECTOR, "button.mute").is_displayed():
            fail("at 360 px a lane shows its controls before its name is tapped")
        lane.find_element(By.CSS_SELECTOR, "button.name").click()
        if not lane.find_element(By.CSS_SELECTOR, "button.mute").is_displayed() or \
                lane.find_element(By.CSS_SELECTOR, "button.name").get_attribute("aria-expanded") != "true":
            fail("tapping a lane's name did not show its controls")
        shot("mobile-360-lane-open", at="mixer-section")
        # Phones: every control of the mixer at least 44 px each way.
        small = driver.execute_script("""
            return [...document.querySelectorAll('#mixer-section button, #mixer-section a.download')]
              .filter(e => e.offsetParent !== null)
              .map(e => [e.getAttribute('aria-label') || e.textContent.trim(), e.getBoundingClientRect()])
              .filter(([, r]) => r.width < 44 || r.height < 44).map(([n, r]) => `${n} ${Math.round(r.width)}×${Math.round(r.height)}`);""")
        if small:
            fail(f"tap targets under 44 px at 360 px: {small[:6]}")
        # The transport stays on screen while the lanes scroll.
        driver.execute_script("document.querySelector('#stem-list li:last-child').scrollIntoView({block: 'end'})")
        time.sleep(0.3)
        top = driver.execute_script("return document.querySelector('#mixer-section .transport').getBoundingClientRect().top")
        if not -1 <= top <= 2:
            fail(f"the transport scrolled away on a phone (its top at {top} px)")
        shot("mobile-360-scrolled")
        # Fingers: an upward swipe that starts on a waveform scrolls and does not seek; a
        # sideways drag seeks; a tap seeks.
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1})
        wave = driver.find_elements(By.CSS_SELECTOR, "#stem-list .wave")[1]
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", wave)
        time.sleep(0.3)
        box = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height]", wave)
        def touch(points):
            driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0], "y": points[0][1]}]})
            for x, y in points[1:]:
                driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
                time.sleep(0.02)
            driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
            time.sleep(0.3)
        x0, y0 = box[0] + box[2] * 0.2, box[1] + box[3] / 2
        before, scroll_before = position(driver), driver.execute_script("return scrollY")
        touch([(x0, y0 - k * 12) for k in range(12)])
        after, scroll_after = position(driver), driver.execute_script("return scrollY")
        if abs(after - before) > 0.01:
            fail(f"an upward swipe on a waveform seeked ({before:.2f} → {after:.2f} s)")
        print(f"phone: an upward swipe on a waveform scrolled the page by {scroll_after - scroll_before:.0f} px and left the position at {after:.2f} s")
        # Back in the middle of the screen, clear of the transport that stays at the top.
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", wave)
        time.sleep(0.3)
        box = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, r.height]", wave)
        y0 = box[1] + box[3] / 2
        touch([(box[0] + box[2] * (0.2 + 0.05 * k), y0) for k in range(12)])
        dragged = position(driver)
        if not dragged > before + 0.5:
            fail(f"a sideways drag on a waveform did not seek ({before:.2f} → {dragged:.2f} s)")
        touch([(box[0] + box[2] * 0.1, y0)])
        if not position(driver) < dragged:
            fail("a tap on a waveform did not seek")
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})

        # The client's resumable upload in a real browser against the real server: a connection
        # that drops once (the injected fetch fails the second chunk) is resumed from the offset
        # the server reports, and no byte is sent twice.
        result = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            (async () => {
              const { uploadResumable } = await import('/lib/client.js');
              const size = 5 * 1024 * 1024 + 123;
              const bytes = new Uint8Array(size);
              for (let i = 0; i < size; i++) bytes[i] = (i * 7919) & 255;
              let patches = 0, sent = 0, dropped = false;
              const flaky = async (url, init) => {
                if (init && init.method === 'PATCH') {
                  patches++;
                  if (patches === 2) { dropped = true; throw new TypeError('Failed to fetch'); }
                  sent += init.body.size;
                }
                return fetch(url, init);
              };
              const progress = [];
              const id = await uploadResumable(new Blob([bytes]), {
                chunkSize: 1024 * 1024, fetch: flaky, fileName: 'noise.bin', onProgress: (stored) => progress.push(stored) });
              const head = await fetch('/api/uploads/' + id, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
              await fetch('/api/uploads/' + id, { method: 'DELETE', headers: { 'Tus-Resumable': '1.0.0' } });
              done({ offset: Number(head.headers.get('Upload-Offset')), size, sent, dropped, progress });
            })().catch(e => done({ error: String(e) }));
        """)
        if "error" in result:
            fail(f"resumable upload failed in the browser: {result['error']}")
        if not result["dropped"] or result["offset"] != result["size"] or result["sent"] != result["size"]:
            fail(f"resumable upload: {result}")
        if result["progress"] != sorted(result["progress"]) or result["progress"][-1] != result["size"]:
            fail(f"upload progress not monotone up to the size: {result['progress']}")

        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            fail(f"console errors: {errors}")

        # A batch of three files, through a proxy that drops the connection once, 2 MB into the
        # first upload chunk (the page sends 4 MiB chunks).
        proxy = CuttingProxy(args.port, cut_after=2 * 1024 * 1024)
        proxy.start()
        songs = [base / "batch long.wav", base / "batch a.wav", base / "batch b.wav"]
        for path, seconds in zip(songs, (32.0, 3.0, 4.0)):
            write_wav(path, seconds=seconds)
        driver.set_window_size(1280, 1000)
        driver.get(f"http://127.0.0.1:{proxy.port}/")
        choose_options(driver, wait)
        driver.find_element(By.ID, "file-input").send_keys("\n".join(str(p) for p in songs))
        driver.find_element(By.ID, "submit-button").click()
        wait.until(lambda d: d.find_element(By.ID, "batch-section").is_displayed())
        shot("batch-uploading")
        wait.until(lambda d: d.find_element(By.ID, "batch-status").text.startswith("3 of 3 songs finished"))
        shot("batch-done")
        # Resumed, not restarted: one upload created per file, and after the cut the cut upload
        # went on with a chunk at the offset the server had kept (past 1 MB, and no more than the
        # proxy let through before the cut).
        if not proxy.cut:
            fail("the proxy never cut an upload")
        creations = [r for r in proxy.requests if r[0] == "POST"]
        cut_id = next(r[1] for r in proxy.requests if r[0] == "PATCH")
        resumed = [r for r in proxy.requests if r[0] == "PATCH" and r[1] == cut_id and r[3] and 1 << 20 < r[2] <= proxy.forwarded]
        if len(creations) != 3 or not resumed:
            fail(f"the cut upload did not resume from its offset: {proxy.requests}")
        statuses = [li.get_attribute("data-status") for li in driver.find_elements(By.CSS_SELECTOR, "#batch-list li")]
        if statuses != ["done", "done", "done"]:
            fail(f"batch songs: {statuses}")
        before = set(downloads.iterdir())
        driver.find_element(By.ID, "batch-zip").click()
        names = zip_names(downloaded(downloads, before, ".zip"))
        expected = sorted(f"{i + 1:02d} {p.stem}/{p.stem} ({stem}).wav" for i, p in enumerate(songs) for stem in ("drums", "bass", "other", "vocals"))
        if names != expected:
            fail(f"batch ZIP entries: {names}")
        driver.find_elements(By.CSS_SELECTOR, "#batch-list button.open")[1].click()
        wait.until(lambda d: d.find_element(By.ID, "mixer-section").is_displayed())
        shot("batch-song-in-mixer", at="mixer-section")

        # A 10-minute song: the mixer draws every lane from the server's peaks, without
        # downloading or decoding a stem; the time it takes is reported, not asserted.
        long_song = base / "ten minutes.mp3"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=220:duration=600",
                        "-f", "lavfi", "-i", "anoisesrc=amplitude=0.05:duration=600", "-filter_complex", "amix=inputs=2",
                        "-ac", "2", "-ar", "44100", "-b:a", "128k", str(long_song)], check=True)
        driver.get(url)
        choose_options(driver, wait)
        driver.find_element(By.ID, "file-input").send_keys(str(long_song))
        driver.find_element(By.ID, "submit-button").click()
        started = time.time()
        WebDriverWait(driver, 900).until(lambda d: d.find_element(By.ID, "job-status").text.startswith("Done"))
        separated = time.time() - started
        wait.until(lambda d: d.find_element(By.ID, "mixer-section").get_attribute("data-draw-ms"))
        draw_ms = int(driver.find_element(By.ID, "mixer-section").get_attribute("data-draw-ms"))
        peak_bytes = driver.execute_script(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('/peaks/')).reduce((s, e) => s + e.encodedBodySize, 0)")
        print(f"10-minute song: separated in {separated:.0f} s; the mixer fetched {peak_bytes / 1024:.0f} kB of peaks "
              f"and drew its 4 lanes in {draw_ms} ms")
        shot("long-song", at="mixer-section")
        driver.find_element(By.TAG_NAME, "h1").click()
        press(driver, "+")
        press(driver, "+")
        zoomed = driver.find_element(By.ID, "zoom-text").text
        if zoomed != "150 s shown" or not driver.find_element(By.ID, "scroll-input").is_enabled():
            fail(f"zooming in twice on a 600 s song shows '{zoomed}'")
        driver.execute_script("const s = document.getElementById('scroll-input'); s.value = 500; s.dispatchEvent(new Event('input'));")
        shot("long-song-zoomed", at="mixer-section")

        # The drop itself shows as failed upload requests (the cut one, and Chrome's own resend
        # of it refused with 409 while the server still held the first); nothing else may fail.
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                  and not (e.get("source") == "network" and "/api/uploads/" in e["message"])]
        if errors:
            fail(f"console errors: {errors}")

        # A server with API keys: the page asks for one, keeps it, and then works (its stems
        # and event streams included, through the same cookie).
        keyed = base / "keyed"
        key = subprocess.run([str(args.stemify), "keys", "create", "--name", "page"], env=dict(env, STEMIFY_DATA_DIR=str(keyed)),
                             capture_output=True, text=True, check=True).stdout.strip()
        keyed_server = subprocess.Popen([str(args.stemify), "serve", "--port", str(args.port + 2), "--data-dir", str(keyed)],
                                        env=dict(env, STEMIFY_API_KEYS="on"), stdout=open(base / "keyed.log", "wb"), stderr=subprocess.STDOUT)
        try:
            keyed_url = f"http://127.0.0.1:{args.port + 2}/"
            for _ in range(100):
                try:
                    urllib.request.urlopen(keyed_url + "healthz", timeout=1)
                    break
                except Exception:
                    time.sleep(0.1)
            driver.delete_all_cookies()
            driver.get(keyed_url)
            wait.until(lambda d: d.find_element(By.ID, "key-form").is_displayed())
            shot("api-key-asked")
            driver.find_element(By.ID, "key-input").send_keys(key)
            driver.find_element(By.ID, "key-button").click()
            wait.until(lambda d: d.find_element(By.ID, "limits-text").text.startswith("Up to"))
            if driver.find_element(By.ID, "key-form").is_displayed():
                fail("the page still asks for a key after one was given")
            choose_options(driver, wait)
            driver.find_element(By.ID, "file-input").send_keys(str(base / "batch a.wav"))
            driver.find_element(By.ID, "submit-button").click()
            wait.until(lambda d: d.find_element(By.ID, "job-status").text.startswith("Done"))
            wait.until(lambda d: all(c.get_attribute("data-drawn") == "true" for c in d.find_elements(By.CSS_SELECTOR, "#stem-list canvas")))
            driver.find_element(By.ID, "play-button").click()
            wait.until(lambda d: position(d) > 0.2)
            shot("api-key-mixer", at="mixer-section")
        finally:
            keyed_server.kill()
        print(f"browser test passed; screenshots in {args.artifacts}")
    except Exception:
        shot("failure")
        raise
    finally:
        driver.quit()
        server.kill()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
