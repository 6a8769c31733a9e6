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
import math
import os
import shutil
import socket
import struct
import subprocess
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


def downloaded_zip(folder, before, timeout=60):
    """The ZIP that appeared in `folder` since `before` (its listing), once complete."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = [p for p in set(folder.iterdir()) - before if p.suffix == ".zip"]
        if new:
            return new[0]
        time.sleep(0.2)
    fail(f"no ZIP was downloaded: {list(folder.iterdir())}")


def zip_names(path):
    with zipfile.ZipFile(path) as z:
        if z.testzip() is not None:
            fail(f"{path.name} has a damaged entry")
        return sorted(z.namelist())


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
               RATE_LIMIT="0", STEMIFY_WORKERS="1", STEMIFY_THREADS="2", LOG_LEVEL="warning")
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

    def shot(name):
        step[0] += 1
        driver.save_screenshot(str(args.artifacts / f"{step[0]:02d}-{name}.png"))

    wait = WebDriverWait(driver, 120)
    try:
        driver.get(url)
        wait.until(lambda d: any(o.get_attribute("value") == "ht_small"
                                 for o in d.find_elements(By.CSS_SELECTOR, "#model-select option")))
        Select(driver.find_element(By.ID, "model-select")).select_by_value("ht_small")
        Select(driver.find_element(By.ID, "quality-select")).select_by_value("fast")
        Select(driver.find_element(By.ID, "format-select")).select_by_value("wav")
        driver.find_element(By.ID, "karaoke-input").click()
        # Every control has a name a screen reader can read.
        unnamed = driver.execute_script("""
            return [...document.querySelectorAll('input, select, button')].filter(e =>
                !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim()).map(e => e.id || e.outerHTML);
        """)
        if unnamed:
            fail(f"controls without a label: {unnamed}")
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
        driver.find_element(By.ID, "file-input").send_keys(str(song))
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
            fail(f"waveforms not drawn from audio: peaks {peaks}")
        shot("done")

        driver.find_element(By.ID, "play-button").click()
        wait.until(lambda d: int(d.find_element(By.ID, "seek-input").get_attribute("value")) > 0)
        if driver.find_element(By.ID, "play-button").text != "Pause":
            fail("the play button did not turn into pause")
        shot("playing")

        mute = rows[3].find_element(By.CSS_SELECTOR, "button.mute")
        mute.click()
        if mute.get_attribute("aria-pressed") != "true" or rows[3].get_attribute("data-audible") != "false":
            fail("muting the vocals did not mute them")
        driver.find_element(By.ID, "karaoke-button").click()
        audible = [r.get_attribute("data-audible") for r in rows]
        if audible != ["false", "false", "false", "false", "true"]:
            fail(f"karaoke mode should leave only the instrumental audible: {audible}")
        shot("muted")

        # Keyboard: Space toggles playback when focus is not in a control. On a slow machine
        # the song may already have ended (the button reads Play again), so the check is the
        # toggle, not a fixed state.
        driver.find_element(By.TAG_NAME, "h1").click()
        before = driver.find_element(By.ID, "play-button").text
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.SPACE)
        wait.until(lambda d: d.find_element(By.ID, "play-button").text != before)

        rows[0].find_element(By.CSS_SELECTOR, "a.download").click()
        deadline = time.time() + 30
        while time.time() < deadline and not (downloads / "drums.wav").exists():
            time.sleep(0.2)
        if not (downloads / "drums.wav").exists() or (downloads / "drums.wav").stat().st_size < 1000:
            fail(f"the drums stem was not downloaded: {list(downloads.iterdir())}")
        # "Download all stems" is one ZIP from the server.
        before = set(downloads.iterdir())
        driver.find_element(By.ID, "download-all-button").click()
        names = zip_names(downloaded_zip(downloads, before))
        if names != sorted(f"song/{n}.wav" for n in ("drums", "bass", "other", "vocals", "instrumental")):
            fail(f"the job's ZIP holds {names}")
        shot("downloaded")

        driver.refresh()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recent-list li")) == 1)
        shot("recent-after-reload")

        driver.set_window_size(360, 800)
        driver.find_elements(By.CSS_SELECTOR, "#recent-list button")[0].click()
        wait.until(lambda d: d.find_element(By.ID, "mixer-section").is_displayed())
        overflow = driver.execute_script("return document.documentElement.scrollWidth")
        shot("mobile-360")
        if overflow > 360:
            fail(f"the page is {overflow} px wide at a 360 px viewport")

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
        wait.until(lambda d: any(o.get_attribute("value") == "ht_small"
                                 for o in d.find_elements(By.CSS_SELECTOR, "#model-select option")))
        Select(driver.find_element(By.ID, "model-select")).select_by_value("ht_small")
        Select(driver.find_element(By.ID, "quality-select")).select_by_value("fast")
        Select(driver.find_element(By.ID, "format-select")).select_by_value("wav")
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
        names = zip_names(downloaded_zip(downloads, before))
        expected = sorted(f"{i + 1:02d} {p.stem}/{stem}.wav" for i, p in enumerate(songs) for stem in ("drums", "bass", "other", "vocals"))
        if names != expected:
            fail(f"batch ZIP entries: {names}")
        driver.find_elements(By.CSS_SELECTOR, "#batch-list button.open")[1].click()
        wait.until(lambda d: d.find_element(By.ID, "mixer-section").is_displayed())
        shot("batch-song-in-mixer")

        # The drop itself shows as failed upload requests (the cut one, and Chrome's own resend
        # of it refused with 409 while the server still held the first); nothing else may fail.
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                  and not (e.get("source") == "network" and "/api/uploads/" in e["message"])]
        if errors:
            fail(f"console errors: {errors}")
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
