#!/usr/bin/env python3
"""The mixer in the three browser engines: Chromium (chromedriver), Firefox (its own WebDriver
BiDi; Debian has no geckodriver) and WebKitGTK (WebKitWebDriver, under Xvfb).

One 10-minute song is separated through the API (the fixture model); each engine opens its
mixer from the job's address and, from the page's own player:
- records three stems' outputs while a loop plays, at 100 % and 150 %, and finds every recorded
  sample in the stem's 16-bit WAV: the stems must sit on the same song frame at the same
  instant (spread 0 frames, far under the 5 ms the issue allows) and every sample must be the
  stem's (at 150 %, the stem between its samples as the player interpolates: Catmull-Rom), the
  jumps from B back to A included;
- sends a 440 Hz tone through the page's pitch shifter at −5 and +3 semitones and measures it
  (±1 % of 440·2^(k/12));
- measures the time from Play to sound (at the start and after a seek to where nothing was
  fetched) and what the player holds in memory.
Headless Firefox and WebKit need an audio sink: a PulseAudio null sink is started if none runs.
Screenshots go to .build/browser-artifacts/engines/. Exit status 1 on any failure.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import websocket
from selenium import webdriver
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput

ROOT = Path(__file__).resolve().parent.parent
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


# MARK: - Drivers: evaluate a script, click an element, take a screenshot


class SeleniumDriver:
    def __init__(self, driver):
        self.driver = driver
        driver.set_script_timeout(180)

    def open(self, url):
        self.driver.get(url)

    def run(self, body, *args):
        """`body` is an async function's body; `args` are its `arguments`."""
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"(async function () {{ {body} }}).apply(null, [...arguments].slice(0, -1))"
            ".then(done, (e) => done({ error: String(e && e.stack || e) }));", *args)

    def click(self, element_id):
        self.driver.find_element("id", element_id).click()

    def viewport(self, width, height):
        self.driver.set_window_size(width, height)

    def touch(self, points):
        """One finger down at the first point, through the others, and up (viewport pixels)."""
        actions = ActionBuilder(self.driver, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
        finger = actions.pointer_action
        finger.move_to_location(int(points[0][0]), int(points[0][1]))
        finger.pointer_down()
        for x, y in points[1:]:
            finger.move_to_location(int(x), int(y))
            finger.pause(0.02)
        finger.pointer_up()
        actions.perform()

    def screenshot(self, path):
        self.driver.save_screenshot(str(path))

    def close(self):
        self.driver.quit()


class FirefoxBiDi:
    """Just enough WebDriver BiDi: one browsing context, scripts, a pointer click, screenshots."""

    def __init__(self, profile):
        port = free_port()
        self.process = subprocess.Popen(
            ["firefox-esr", "--headless", "--remote-debugging-port", str(port), "--profile", str(profile), "--no-remote"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, MOZ_HEADLESS_WIDTH="1280", MOZ_HEADLESS_HEIGHT="1000"))
        # Firefox says where it listens on stderr.
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.process.stderr.readline().decode(errors="replace")
            if "WebDriver BiDi listening" in line:
                break
        else:
            self.process.kill()
            raise RuntimeError("Firefox did not start its WebDriver BiDi server")
        # Keep reading what it says, or a full pipe would stop it.
        threading.Thread(target=lambda: [None for _ in self.process.stderr], daemon=True).start()
        try:
            self.socket = websocket.create_connection(f"ws://127.0.0.1:{port}/session", timeout=200, suppress_origin=True)
        except Exception:
            self.process.kill()
            raise
        self.next = 0
        self.logs = []
        self.send("session.new", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})
        self.send("session.subscribe", {"events": ["log.entryAdded"]})
        self.context = self.send("browsingContext.getTree", {})["contexts"][0]["context"]

    def send(self, method, params):
        self.next += 1
        self.socket.send(json.dumps({"id": self.next, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("type") == "event" or "method" in message and "id" not in message:
                if message.get("method") == "log.entryAdded":
                    self.logs.append(message["params"])
                continue
            if message.get("id") != self.next:
                continue
            if message.get("type") == "error" or "error" in message:
                raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
            return message["result"]

    def open(self, url):
        self.send("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def run(self, body, *args):
        result = self.send("script.callFunction", {
            "functionDeclaration": f"async function () {{ try {{ {body} }} catch (e) {{ return {{ error: String(e && e.stack || e) }}; }} }}",
            "arguments": [{"type": "number", "value": a} if isinstance(a, (int, float)) else {"type": "string", "value": str(a)} for a in args],
            "target": {"context": self.context}, "awaitPromise": True, "resultOwnership": "none",
            "serializationOptions": {"maxObjectDepth": 6},
        })
        if result.get("type") == "exception":
            return {"error": result["exceptionDetails"]["text"]}
        return self.value(result["result"])

    def value(self, remote):
        kind, v = remote.get("type"), remote.get("value")
        if kind == "object":
            return {k: self.value(x) for k, x in v}
        if kind == "array":
            return [self.value(x) for x in v]
        if kind in ("undefined", "null"):
            return None
        if kind == "number" and isinstance(v, str):
            return float(v)
        return v

    def click(self, element_id):
        box = self.run("const r = document.getElementById(arguments[0]).getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2];", element_id)
        x, y = int(box[0]), int(box[1])
        self.send("input.performActions", {"context": self.context, "actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "x": x, "y": y}, {"type": "pointerDown", "button": 0}, {"type": "pointerUp", "button": 0}]}]})

    def viewport(self, width, height):
        self.send("browsingContext.setViewport", {"context": self.context, "viewport": {"width": width, "height": height}})

    def touch(self, points):
        moves = [{"type": "pointerMove", "x": int(points[0][0]), "y": int(points[0][1])}, {"type": "pointerDown", "button": 0}]
        for x, y in points[1:]:
            moves += [{"type": "pointerMove", "x": int(x), "y": int(y), "duration": 20}]
        moves.append({"type": "pointerUp", "button": 0})
        self.send("input.performActions", {"context": self.context, "actions": [{
            "type": "pointer", "id": "finger", "parameters": {"pointerType": "touch"}, "actions": moves}]})
        self.send("input.releaseActions", {"context": self.context})

    def screenshot(self, path):
        data = self.send("browsingContext.captureScreenshot", {"context": self.context})["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        try:
            self.send("session.end", {})
        except Exception:
            pass
        self.process.kill()
        self.process.wait()


def chromium():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    service = webdriver.ChromeService(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return SeleniumDriver(webdriver.Chrome(service=service, options=options))


def webkit():
    options = webdriver.WebKitGTKOptions()
    # The browser WebKitGTK's library package installs (Debian: /usr/lib/<arch>/webkit2gtk-4.1/).
    found = sorted(Path("/usr/lib").glob("*/webkit2gtk-4.*/MiniBrowser"))
    options.binary_location = os.environ.get("STEMIFY_MINIBROWSER") or str(found[-1] if found else "MiniBrowser")
    options.add_argument("--automation")
    return SeleniumDriver(webdriver.WebKitGTK(options=options, service=webdriver.WebKitGTKService(shutil.which("WebKitWebDriver"))))


# MARK: - What each engine runs in the page


# Errors the page throws, kept for the end (WebKit's driver gives no console).
WATCH_ERRORS = """
window.__errors = [];
addEventListener('error', (e) => window.__errors.push(String(e.message)));
addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));
return true;
"""

# Records every stem's output (their taps, before volume and pan) while a loop from
# A to B plays at `speed`, and finds every recorded sample in the stem's own WAV.
ONE_CLOCK = """
const [a, b, speed] = [arguments[0], arguments[1], arguments[2]];
const { player, taps } = window.stemifyMixer;
const rate = player.context.sampleRate;
if (rate !== player.rate) throw new Error(`the context runs at ${rate} Hz, the stems at ${player.rate}`);
const stems = await Promise.all(player.stems.map(async (stem, k) => {
  const h = player.headers[k];
  const [A, B] = [Math.round(a * player.rate), Math.round(b * player.rate)];
  // The loop's samples and a little around them, from the stem's WAV.
  const from = Math.max(0, A - 4), to = Math.min(h.frames, B + 4);
  const r = await fetch(stem.url, { headers: { Range: `bytes=${h.offset + from * h.blockAlign}-${h.offset + to * h.blockAlign - 1}` } });
  const view = new DataView(await r.arrayBuffer());
  const x = new Float64Array(to - from);
  for (let i = 0; i < x.length; i++) x[i] = view.getInt16(i * h.blockAlign, true) / 32768;
  return { x, from };
}));
const record = (tap, frames) => new Promise((resolve) => {
  const on = (e) => {
    if (!e.data.recorded) return;
    tap.port.removeEventListener('message', on);
    resolve({ samples: e.data.recorded[0], end: Math.round(e.data.time * rate) });
  };
  tap.port.addEventListener('message', on);
  tap.port.start();
  tap.port.postMessage({ record: frames });
});
const [A, B] = [Math.round(a * player.rate), Math.round(b * player.rate)];
// The stem's sample at a fractional frame, as the player interpolates (Catmull-Rom).
const at = (stem, p) => {
  const f = Math.floor(p), t = p - f, s = (i) => stem.x[i - stem.from] ?? 0;
  const [y0, y1, y2, y3] = [s(f - 1), s(f), s(f + 1), s(f + 2)];
  return t === 0 ? y1 : y1 + 0.5 * t * (y2 - y0 + t * (2 * y0 - 5 * y1 + 4 * y2 - y3 + t * (3 * (y1 - y2) + y3 - y0)));
};
// The read positions after `p`, as the player steps and loops.
const after = (p) => { p += speed; if (p >= B) { const over = p - B; p = over < speed ? A + over : A; } return p; };
const input = document.getElementById('speed-input');
input.value = String(Math.round(speed * 100));
input.dispatchEvent(new Event('input'));
player.setLoop(a, b);
player.seek(a);
await player.play();
await new Promise((r) => setTimeout(r, 400));
const frames = Math.round(((b - a) * player.rate * 1.6) / speed);
const takes = await Promise.all(taps.map((tap) => record(tap, frames)));
player.pause();
let mismatches = 0, jumps = 0, worst = 0;
const starts = takes.map((take, k) => {
  const y = take.samples, stem = stems[k];
  // The first recorded sample's read position: a whole frame, or halfway at 150 %.
  let first = null;
  for (let f = A; f < B && first === null; f += speed === 1 ? 1 : 0.5) {
    let p = f, same = true;
    for (let i = 0; i < 256 && same; i++, p = after(p)) same = Math.abs(at(stem, p) - y[i]) < 1e-5;
    if (same) first = f;
  }
  if (first === null) { mismatches += y.length; return null; }
  let p = first;
  for (let i = 0; i < y.length; i++) {
    const error = Math.abs(at(stem, p) - y[i]);
    worst = Math.max(worst, error);
    if (error >= 1e-5) mismatches++;
    const next = after(p);
    if (next < p) jumps++;
    p = next;
  }
  // Where the song was (in frames, unlooped) at the recordings' common context frame.
  return { first, start: take.end - frames };
});
// Song frame at one context instant, per stem: equal when the stems share one clock.
const known = starts.filter((s) => s !== null);
const instants = known.map((s) => s.first - (s.start - known[0].start) * speed);
const spread = known.length === starts.length ? Math.max(...instants) - Math.min(...instants) : null;
return { spread, mismatches, jumps, worst, frames, stems: stems.length };
"""

TRANSPOSE = """
const semitones = arguments[0];
const context = window.stemifyMixer.player.context, rate = context.sampleRate;
const tone = new OscillatorNode(context, { frequency: 440 });
const shifter = new AudioWorkletNode(context, 'pitch-shifter', { outputChannelCount: [2] });
const tap = new AudioWorkletNode(context, 'tap', { outputChannelCount: [2] });
const silent = new GainNode(context, { gain: 0 });
shifter.port.postMessage({ factor: 2 ** (semitones / 12) });
tone.connect(shifter).connect(tap).connect(silent).connect(context.destination);
tone.start();
await new Promise((r) => setTimeout(r, 300));
const y = await new Promise((resolve) => {
  tap.port.onmessage = (e) => { if (e.data.recorded) resolve(e.data.recorded[0]); };
  tap.port.postMessage({ record: rate });
});
tone.stop();
tone.disconnect();
shifter.disconnect();
tap.disconnect();
const crossings = [];
for (let i = 1; i < y.length; i++) if (y[i - 1] < 0 && y[i] >= 0) crossings.push(i - y[i] / (y[i] - y[i - 1]));
return (crossings.length - 1) / ((crossings[crossings.length - 1] - crossings[0]) / rate);
"""

CLICK_TO_SOUND = """
window.__clickToSound = null;
window.__clickToRunning = null;
const { player, taps } = window.stemifyMixer;
document.getElementById('play-button').addEventListener('click', () => {
  const clicked = performance.now();
  player.context.addEventListener('statechange', () => {
    if (player.context.state === 'running' && window.__clickToRunning === null) window.__clickToRunning = performance.now() - clicked;
  });
  const on = (e) => { if (e.data.peak > 0 && window.__clickToSound === null) window.__clickToSound = performance.now() - clicked; };
  for (const tap of taps) tap.port.addEventListener('message', on);
}, { once: true, capture: true });
return true;
"""

# Play to the first sound the stems make (a tap reporting a level), from `seconds` into the
# song; what the player holds then.
PLAY_TO_SOUND = """
const seconds = arguments[0];
const { player, taps } = window.stemifyMixer;
player.setLoop(null);
player.pause();
player.seek(seconds);
await new Promise((r) => setTimeout(r, 100));
let heard = false;
for (const tap of taps) tap.port.addEventListener('message', (e) => { if (e.data.peak > 0) heard = true; });
const started = performance.now();
await player.play();
while (!heard && performance.now() - started < 10000) await new Promise((r) => setTimeout(r, 5));
const ms = performance.now() - started;
player.pause();
const held = [...player.windows.values()].filter((s) => s === 'held').length;
const bytes = held * player.headers.reduce((n, h) => n + h.channels * 4 * 65536, 0);
return { ms: heard ? ms : null, bytes, heap: performance.memory ? performance.memory.usedJSHeapSize : null };
"""


def run_engine(name, make, url, job, token, artifacts):
    print(f"--- {name}", flush=True)
    driver = None
    try:
        driver = make()
        driver.open(url)
        # The owner's token as the page keeps it, so the page may see the job.
        driver.run("document.cookie = `stemify_owner=${arguments[0]}; path=/; SameSite=Strict`; return true;", token)
        driver.open(f"{url}#/jobs/{job}")
        driver.run(WATCH_ERRORS)
        wait_for(lambda: driver.run("return Boolean(window.stemifyMixer) && !document.getElementById('play-button').disabled;"), 60, "the mixer")
        driver.screenshot(artifacts / f"{name}-mixer.png")
        # A real click: browsers start audio only after a gesture.
        # The first click on Play to the first sound, timed in the page.
        driver.run(CLICK_TO_SOUND)
        driver.click("play-button")
        sound = wait_for(lambda: driver.run("return window.__clickToSound;"), 10, "the first sound")
        label = driver.run("return document.getElementById('play-button').textContent;")
        running = driver.run("return window.__clickToRunning;")
        check(label == "Pause", f"{name}: the first click on Play: sound after {sound:.0f} ms, the audio context running after "
              f"{running if running is None else round(running)} ms (the button says {label})")
        driver.click("play-button")
        duration = driver.run("return window.stemifyMixer.player.duration;")
        for speed in (1, 1.5):
            a = round(duration * 0.3, 2)
            clock = driver.run(ONE_CLOCK, a, a + 1.5, speed)
            if "error" in clock:
                check(False, f"{name} at {speed:.0%}: {clock['error']}")
                continue
            check(clock["spread"] == 0 and clock["mismatches"] == 0 and clock["jumps"] >= 1,
                  f"{name} at {speed:.0%}: stems on one clock (spread {clock['spread']} frames), "
                  f"{clock['mismatches']} of {clock['stems'] * clock['frames']} samples off (worst {clock['worst']:.1e}), "
                  f"{clock['jumps']} loop jump(s)")
            driver.screenshot(artifacts / f"{name}-speed-{int(speed * 100)}.png")
        for semitones in (-5, 3):
            f = driver.run(TRANSPOSE, semitones)
            expected = 440 * 2 ** (semitones / 12)
            check(isinstance(f, (int, float)) and abs(f / expected - 1) < 0.01,
                  f"{name}: 440 Hz transposed by {semitones:+d} is {f if not isinstance(f, (int, float)) else round(f, 2)} Hz (expected {expected:.2f})")
        for seconds in (0, duration * 0.7):
            sound = driver.run(PLAY_TO_SOUND, seconds)
            ms = sound.get("ms") if isinstance(sound, dict) else None
            check(ms is not None and ms < 1000,
                  f"{name}: Play to sound at {seconds:.0f} s: {ms if ms is None else round(ms)} ms; "
                  f"the player holds {sound.get('bytes', 0) / 1e6:.1f} MB of samples"
                  + (f", JS heap {sound['heap'] / 1e6:.0f} MB" if sound.get("heap") else ""))
        phone(name, driver, artifacts)
        errors = driver.run("return window.__errors;")
        if isinstance(driver, FirefoxBiDi):
            errors += [e.get("text") for e in driver.logs if e.get("level") == "error"]
        check(not errors, f"{name}: no errors in the page {errors[:3]}")
        driver.screenshot(artifacts / f"{name}-end.png")
    except Exception as error:  # noqa: BLE001 - a failed engine is reported, the others still run
        check(False, f"{name}: {type(error).__name__}: {str(error)[:300]}")
    finally:
        if driver:
            driver.close()


WAVE_BOX = """
window.__pointers = [];
if (!window.__watchingPointers) {
  window.__watchingPointers = true;
  document.addEventListener('pointerdown', (e) => window.__pointers.push(e.pointerType), { capture: true });
}
const wave = document.querySelectorAll('#stem-list .wave')[1];
wave.scrollIntoView({ block: 'center' });
await new Promise((r) => setTimeout(r, 300));
const r = wave.getBoundingClientRect();
return [r.left, r.top, r.width, r.height, scrollY, Number(document.getElementById('ruler').getAttribute('aria-valuenow'))];
"""

STATE = "return [scrollY, Number(document.getElementById('ruler').getAttribute('aria-valuenow')), window.__pointers.join(',')];"


def phone(name, driver, artifacts):
    """At 360 px: an upward swipe that starts on a waveform scrolls the page and leaves the
    position; a sideways drag seeks; a tap seeks."""
    driver.viewport(360, 800)
    time.sleep(0.5)
    driver.screenshot(artifacts / f"{name}-phone.png")
    left, top, width, height, scrolled, before = driver.run(WAVE_BOX)
    x, y = left + width * 0.2, top + height / 2
    driver.touch([(x, y - k * 12) for k in range(12)])
    time.sleep(0.5)
    scrolled_after, after, pointers = driver.run(STATE)
    if pointers != "touch":
        # WebKitGTK's driver turns a touch action into mouse events: nothing to learn here.
        print(f"skip {name} at 360 px: the driver's touch actions reach the page as '{pointers}' pointers, not fingers")
        return
    check(abs(after - before) < 0.01, f"{name} at 360 px: an upward swipe on a waveform leaves the position ({before:.2f} → {after:.2f} s)")
    # Headless Firefox on a desktop does not pan the page for a synthetic finger.
    print(f"{name} at 360 px: the swipe scrolled the page {scrolled_after - scrolled:.0f} px")
    left, top, width, height, scrolled, before = driver.run(WAVE_BOX)
    y = top + height / 2
    driver.touch([(left + width * (0.2 + 0.05 * k), y) for k in range(12)])
    time.sleep(0.5)
    _, dragged, _ = driver.run(STATE)
    check(dragged > before + 1, f"{name} at 360 px: a sideways drag seeks ({before:.2f} → {dragged:.2f} s)")
    driver.touch([(left + width * 0.1, y)])
    time.sleep(0.5)
    _, tapped, _ = driver.run(STATE)
    check(tapped < dragged - 1, f"{name} at 360 px: a tap seeks ({dragged:.2f} → {tapped:.2f} s)")
    driver.screenshot(artifacts / f"{name}-phone-seeked.png")


def ensure_audio_sink():
    """A PulseAudio null sink for engines that play nothing without a device."""
    if subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
        subprocess.run(["pulseaudio", "--daemonize", "--exit-idle-time=-1", "--system=false"], capture_output=True)
        wait_for(lambda: subprocess.run(["pactl", "info"], capture_output=True).returncode == 0, 10, "PulseAudio")
    sinks = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True).stdout
    if "null" not in sinks:
        subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=null"], capture_output=True)
    subprocess.run(["pactl", "set-default-sink", "null"], capture_output=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stemify", type=Path, default=ROOT / ".build" / "release" / "stemify")
    p.add_argument("--artifacts", type=Path, default=ROOT / ".build" / "browser-artifacts" / "engines")
    p.add_argument("--engines", default="chromium,firefox,webkit")
    p.add_argument("--minutes", type=float, default=10)
    args = p.parse_args()

    base = Path(tempfile.mkdtemp(prefix="stemify-engines-"))
    shutil.rmtree(args.artifacts, ignore_errors=True)
    args.artifacts.mkdir(parents=True)
    ensure_audio_sink()
    xvfb = None
    if "webkit" in args.engines and not os.environ.get("DISPLAY"):
        display = f":{90 + os.getpid() % 9}"
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x1000x24"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ["DISPLAY"] = display
        time.sleep(1)
    port = free_port()
    env = dict(os.environ, DEMUCS_MODEL_PATH=str(ROOT / "Tests" / "Fixtures" / "repo"), MODEL_DOWNLOAD="false",
               RATE_LIMIT="100", MAX_DURATION="900", STEMIFY_WORKERS="1", LOG_LEVEL="warning")
    server = subprocess.Popen([str(args.stemify), "serve", "--port", str(port), "--data-dir", str(base / "data")],
                              env=env, stdout=open(base / "server.log", "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        def healthy():
            if server.poll() is not None:
                raise RuntimeError(f"the server stopped: {(base / 'server.log').read_text()[-500:]}")
            try:
                return urllib.request.urlopen(url + "healthz", timeout=1).status == 200
            except OSError:
                return False
        wait_for(healthy, 20, "the server")
        # MP3, as people upload; noise under the tone makes every stretch of every stem unique,
        # so a recording is found at one place only.
        song = base / "song.mp3"
        seconds = int(args.minutes * 60)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=220:duration={seconds}",
                        "-f", "lavfi", "-i", f"anoisesrc=amplitude=0.1:duration={seconds}", "-filter_complex", "amix=inputs=2",
                        "-ac", "2", "-ar", "44100", "-b:a", "128k", str(song)], check=True)
        boundary = uuid.uuid4().hex
        parts = [("model", b"ht6s_small"), ("quality", b"fast"), ("output_format", b"mp3")]
        body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n".encode() + v + b"\r\n" for k, v in parts)
        body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"song.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n".encode()
        body += song.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(url + "api/stemify", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        accepted = json.load(urllib.request.urlopen(request, timeout=120))
        job, token = accepted["job_id"], accepted["owner_token"]
        started = time.time()

        def finished():
            state = json.load(urllib.request.urlopen(urllib.request.Request(url + f"api/jobs/{job}", headers={"Authorization": f"Bearer {token}"})))
            if state["status"] in ("failed", "cancelled"):
                raise RuntimeError(f"the job {state['status']}: {state.get('error')}")
            return state["status"] == "done"
        wait_for(finished, 600, "the separation")
        print(f"a {args.minutes:g}-minute song separated (MP3 stems) in {time.time() - started:.0f} s", flush=True)
        makers = {"chromium": chromium, "firefox": lambda: FirefoxBiDi(base / "firefox-profile"), "webkit": webkit}
        for name in args.engines.split(","):
            (base / "firefox-profile").mkdir(exist_ok=True)
            run_engine(name, makers[name], url, job, token, args.artifacts)
    finally:
        server.terminate()
        server.wait()
        if xvfb:
            xvfb.terminate()
        shutil.rmtree(base, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print("the mixer passed in " + ", ".join(args.engines.split(",")))


if __name__ == "__main__":
    main()
