"""`fex explore` (docs/explore.md): the backend against `fex edit` on a real tiny run, bad photos as messages,
and the page itself driven in a real headless Chromium over its DevTools protocol."""
from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from _edit_fixtures import build_run, canvas_photo, fex_edit
from _ingest_fixtures import no_face_image

from fexdata.images import read_rgb, write_png

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium")
SCREENSHOT = "FEX_EXPLORE_SCREENSHOT"   # set to a path (docs/img/explore.png) to keep the browser test's screenshot


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.getbasetemp() / "edit-pipeline")


@pytest.fixture(scope="module")
def explorer(run):
    from fextrain.explore import ExploreOptions, Explorer

    return Explorer(run, ExploreOptions(device="cpu"), log=lambda msg: None)


def edited_by_fex_edit(run: Path, command: str, out: Path) -> np.ndarray:
    """Run the page's `fex edit` command line (its --out replaced) and read the one photo it wrote."""
    args = shlex.split(command)
    assert args[:3] == ["fex", "edit", str(run)] and args[-2] == "--out"
    fex_edit(*args[2:-2], "--out", str(out), "--device", "cpu")
    written = [p for p in out.rglob("*.png") if p.name != "grid.png"]
    assert len(written) == 1, written
    return read_rgb(written[0])


def test_explore_render_is_what_fex_edit_writes(explorer, run, tmp_path):
    photo_path = write_png(tmp_path / "me.png", canvas_photo())
    photo = explorer.prepare(photo_path)
    weights = [0, 0, 0, 0.6, 0, 0, 0.35]   # the sliders: 0.6 joy, 0.35 surprise
    spec = explorer.spec(weights)
    assert spec == "0.6*joy+0.35*surprise"
    result = explorer.render(photo, spec)
    assert not np.array_equal(result, photo.image)
    command = explorer.command(photo, spec)
    assert np.array_equal(result, edited_by_fex_edit(run, command, tmp_path / "edits"))
    # the grid's tiles are the same renders, over joy from 0 to 1 with surprise held
    specs, frames = explorer.sweep(photo, weights, "joy", 5)
    assert specs == ["0.35*surprise", "0.25*joy+0.35*surprise", "0.5*joy+0.35*surprise", "0.75*joy+0.35*surprise",
                     "joy+0.35*surprise"]
    assert np.array_equal(frames[2], explorer.render(photo, specs[2]))


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(__import__("fextrain.models", fromlist=["MODELS"]).MODELS))
def test_explore_render_is_what_fex_edit_writes_for_every_model(model, tmp_path_factory, tmp_path):
    """The page reuses fex edit's pipeline for every registered model (a model-specific paste-back in fex edit
    that the explorer does not follow fails here)."""
    from fextrain.explore import ExploreOptions, Explorer

    run = build_run(tmp_path_factory.getbasetemp() / "edit-pipeline", model=model)
    explorer = Explorer(run, ExploreOptions(device="cpu"), log=lambda msg: None)
    photo = explorer.prepare(write_png(tmp_path / "me.png", canvas_photo()))
    spec = explorer.spec([0, 0, 0, 0.6, 0, 0, 0.35])
    expected = edited_by_fex_edit(run, explorer.command(photo, spec), tmp_path / "edits")
    assert np.array_equal(explorer.render(photo, spec), expected)


def test_bad_photos_and_mixes_are_messages_and_the_page_goes_on(explorer, tmp_path):
    from fextrain.explore import Session

    session = Session(explorer, tmp_path / "work")
    (tmp_path / "work").mkdir()
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    noise = write_png(tmp_path / "wall.png", no_face_image(size=400))   # over 128 px: not taken as a crop
    joy = [0, 0, 0, 1, 0, 0, 0]
    for path, phrase in ((text, "not an image"), (noise, "no face found"), (tmp_path / "gone.png", "does not exist")):
        shown = session.show(str(path), joy)
        assert set(shown) == {"message"} and phrase in shown["message"], shown
    good = write_png(tmp_path / "me.png", canvas_photo())
    shown = session.show(str(good), joy)
    assert shown["spec"] == "joy" and Path(shown["result"]).is_file() and "joy" in shown["command"]
    assert {Path(f).suffix for f in shown["files"]} == {".png", ".txt"}
    assert "fex edit" in Path(shown["files"][1]).read_text()
    # a mix fex edit refuses, and no mix at all: a message, and the photo as it is
    too_much = session.show(str(good), [0, 0, 0, 2, 0, 0, 0.5])
    assert too_much["spec"] == "" and "add up to 2.5" in too_much["message"]
    assert np.array_equal(read_rgb(too_much["result"]), read_rgb(good))
    assert "move a slider" in session.show(str(good), [0] * 7)["message"]


def test_explore_without_gradio_says_how_to_install_it(explorer, monkeypatch):
    from fextrain.explore import ExploreError, serve

    monkeypatch.setitem(sys.modules, "gradio", None)   # an import of gradio fails as when it is not installed
    for name in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "GRADIO_SSR_MODE"):
        monkeypatch.setenv(name, os.environ.get(name, ""))   # serve sets them; restored after the test
    with pytest.raises(ExploreError) as exc:
        serve(explorer, [])
    assert "requirements-ui.lock" in exc.value.hint


# --- the page in a real browser -------------------------------------------------------------------------------


class DevTools:
    """A page of a headless Chromium, driven over its DevTools protocol (one websocket, one command at a time)."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0

    def send(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply.get("result", {})

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 60.0):
        """Poll a JS expression until it is truthy; returns its value."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        pytest.fail(f"page: `{expression}` still false after {timeout:.0f} s; page text:\n"
                    + str(self.js("document.body.innerText"))[:3000])

    def click(self, x: float, y: float) -> None:
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def close(self) -> None:
        self.ws.close()


RESULT_SRC = "document.querySelector('#result img')?.src"
SPEC = "document.querySelector('#spec textarea, #spec input')?.value"
MESSAGE = "document.querySelector('#message')?.innerText"


def move_slider(page: DevTools, affect: str, fraction: float) -> None:
    """Click the affect's slider track at `fraction` of its width, as a user would."""
    box = page.js(f"(() => {{ const r = document.querySelector('#w-{affect} input[type=range]')"
                  ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()")
    page.click(box[0] + fraction * box[2], box[1] + box[3] / 2)


def fetch_png(url: str) -> np.ndarray:
    import cv2

    with urllib.request.urlopen(url, timeout=30) as reply:
        data = np.frombuffer(reply.read(), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def started(proc: subprocess.Popen, pattern: str, timeout: float) -> str:
    """The first stdout line of `proc` containing `pattern`."""
    import select

    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        if proc.poll() is not None:
            break
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            seen.append(line)
            if pattern in line:
                return line
    pytest.fail(f"{proc.args} did not print {pattern!r} in {timeout:.0f} s: {''.join(seen)}")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")
def test_page_in_headless_chromium(run, tmp_path):
    """Start `fex explore`, open it in headless Chromium, move the joy slider: the page's image changes and is
    byte for byte what `fex edit` writes for the spec the page shows; a text file uploaded as a photo gets a
    message and the page goes on editing."""
    import _proc

    pytest.importorskip("gradio", reason="the ui extra is not installed (requirements-ui.lock)")
    pytest.importorskip("websocket", reason="websocket-client is not installed (requirements-ui.lock)")
    photo = write_png(tmp_path / "demo-face.png", canvas_photo())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    server = _proc.start([str(ROOT / ".venv/bin/fex"), "explore", str(run), str(photo), "--device", "cpu",
                          "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    profile = tmp_path / "chromium-profile"
    browser = None
    try:
        url = started(server, "fex explore: http://127.0.0.1:", 180).split()[2]
        browser = _proc.start([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                               "--disable-component-update", "--disable-sync", "--no-first-run",
                               f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1280,1500",
                               url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            assert time.monotonic() < deadline and browser.poll() is None, "chromium did not start"
            time.sleep(0.2)
        devtools = f"http://127.0.0.1:{port_file.read_text().split()[0]}"
        pages = json.load(urllib.request.urlopen(f"{devtools}/json/list", timeout=30))
        page = DevTools(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"])

        before_src = page.wait(RESULT_SRC, timeout=120)   # the photo, shown as it is with every slider at 0
        assert "move a slider" in page.wait(MESSAGE)
        before = fetch_png(before_src)
        assert np.array_equal(before, read_rgb(photo))

        move_slider(page, "joy", 0.5)
        spec = page.wait(SPEC)
        after_src = page.wait(f"{RESULT_SRC} !== {json.dumps(before_src)} && {RESULT_SRC}")
        after = fetch_png(after_src)
        assert not np.array_equal(after, before)
        command = page.js("document.querySelector('#command textarea, #command input').value")
        assert f"--to {shlex.quote(spec)}" in command
        assert np.array_equal(after, edited_by_fex_edit(run, command, tmp_path / "edits"))

        # an upload that is not an image: a message, and the same photo goes on being edited
        bad = tmp_path / "notes.png"
        bad.write_text("not a picture")
        root = page.send("DOM.getDocument")["root"]["nodeId"]
        node = page.send("DOM.querySelector", nodeId=root, selector="#upload input[type=file]")["nodeId"]
        page.send("DOM.setFileInputFiles", nodeId=node, files=[str(bad)])
        assert "not an image" in page.wait(f"{MESSAGE}.includes('not an image') && {MESSAGE}")
        move_slider(page, "surprise", 0.25)
        page.wait(f"({SPEC} || '').includes('surprise')")
        assert page.wait(f"{RESULT_SRC} !== {json.dumps(after_src)} && {RESULT_SRC}")

        page.js("document.querySelector('#make-grid').click()")
        page.wait("(img => img && img.complete && img.naturalWidth > 0)(document.querySelector('#grid img'))")
        shot = base64.b64decode(page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
        (tmp_path / "explore.png").write_bytes(shot)
        if os.environ.get(SCREENSHOT):
            Path(os.environ[SCREENSHOT]).write_bytes(shot)
        page.close()
    finally:
        for proc in (browser, server):
            if proc is not None:
                _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
