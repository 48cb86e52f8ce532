"""The web UI in a real headless Chromium (Debian's `chromium` package) against the real server (uvicorn on
a free port on 127.0.0.1) over the demo store: the asset list, an asset page and a report, each read from
the DOM Chromium rendered and photographed into the test's temp folder.

The browser signs in the way a person following a shared link would: the URL carries ?token=, the server
swaps it for a session cookie and redirects to the page without it.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.responses import HTMLResponse, Response

from itam_sync.web import create_app

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="/usr/bin/chromium is not installed (.ci/run installs it: apt-get install -y chromium)"),
]
TOKEN = "tok-51c0ffee-browser"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # Console messages (and uncaught script errors) go to stderr, where the tests look for them.
         "--enable-logging=stderr", "--v=0"]


# Test-only pages: a page of the UI in a same-origin frame, driven by a script file (the server's
# Content-Security-Policy allows no inline script, on these pages too), which reports what it saw in #out.
HARNESS = """<!doctype html><html><body>
<iframe id="f" src="/assets?token=TOKEN" width="1200" height="800"></iframe><pre id="out">waiting</pre>
<script src="/__harness/NAME.js"></script></body></html>""".replace("TOKEN", TOKEN)
# The live search: types into the list's search box (as a person would: an `input` event, no form submit)
# and reports what the frame's results table shows then.
LIVE_SEARCH_JS = """
var f = document.getElementById("f");
f.addEventListener("load", function once() {
  f.removeEventListener("load", once);
  var d = f.contentDocument, box = d.querySelector("input[data-live-search]");
  box.value = "lt-bob";
  box.dispatchEvent(new Event("input", {bubbles: true}));
  var tries = 0;
  (function poll() {
    var rows = d.querySelectorAll("#results tbody tr");
    if (rows.length === 1 || tries++ > 200) {
      document.getElementById("out").textContent = JSON.stringify({rows: rows.length,
        search: f.contentWindow.location.search, text: rows[0] ? rows[0].textContent.replace(/\\s+/g, " ") : ""});
    } else { setTimeout(poll, 50); }
  })();
});
"""
# Signing out: presses the header's "Sign out" button (a form POST), then asks for a page with the same
# browser (its cookie jar) and reports where the frame landed and what the page answered.
SIGN_OUT_JS = """
var f = document.getElementById("f"), out = document.getElementById("out");
f.addEventListener("load", function first() {
  f.removeEventListener("load", first);
  var before = f.contentWindow.location.pathname, button = f.contentDocument.querySelector("form.signout button");
  f.addEventListener("load", function () {
    fetch("/assets", {credentials: "same-origin"}).then(function (r) {
      out.textContent = JSON.stringify({before: before, after: f.contentWindow.location.pathname,
                                        status: r.status});
    });
  });
  button.click();
});
"""


@pytest.fixture
def server(demo, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The demo, synced, served by uvicorn on a free local port; yields the base URL."""
    import uvicorn

    assert demo.cli("run", "--full", "-q").exit_code == 0
    store = demo.store()
    app = create_app(demo.settings(), tokens=[TOKEN], store=store)
    for name, script in (("live_search", LIVE_SEARCH_JS), ("sign_out", SIGN_OUT_JS)):
        app.add_api_route(f"/__harness/{name}", lambda n=name: HTMLResponse(HARNESS.replace("NAME", n)),
                          methods=["GET"])
        app.add_api_route(f"/__harness/{name}.js", lambda js=script: Response(js, media_type="text/javascript"),
                          methods=["GET"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(20)
        sock.close()
        store.close()


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    result = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    # No script on the page may fail (the progressive-enhancement JS runs in the browser), and nothing on it may
    # break the server's Content-Security-Policy (an inline script or handler would).
    console = [ln for ln in result.stderr.splitlines() if "CONSOLE" in ln]
    assert "Uncaught" not in result.stderr, console
    assert "Content Security Policy" not in result.stderr, console
    return result


def dump_dom(tmp: Path, url: str) -> str:
    return _chromium(tmp, "--dump-dom", url).stdout


def screenshot(tmp: Path, url: str, name: str) -> Path:
    out = tmp / f"{name}.png"
    _chromium(tmp, f"--screenshot={out}", "--window-size=1280,900", url)
    return out


def assert_real_png(path: Path) -> None:
    """A 1280x900 PNG whose pixels are not all one colour (a blank or error page would be)."""
    assert path.exists(), f"no screenshot at {path}"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 900)
    assert len(data) > 20_000, f"screenshot only {len(data)} bytes"
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    pixels = zlib.decompress(idat)
    assert len(set(pixels[::97])) > 20, "the screenshot is nearly uniform"


def _text(fragment: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)).strip()


def test_asset_list_in_chromium(server: str, tmp_path: Path) -> None:
    dom = dump_dom(tmp_path, f"{server}/assets?token={TOKEN}")
    assert "<h1>Assets</h1>" in dom
    body = dom.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = [_text(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]
    assert len(rows) == 10
    serials = [r.split()[1] for r in rows]
    assert {"C02FK1ABQ6L4", "5CG1234XYZ", "PF3ABCDE", "PF3ZZZZZ", "F17ZK3LMN0D8"} <= set(serials)
    assert "10 assets" in _text(dom)
    assert TOKEN not in dom  # the sign-in link's token is gone from the page and its links
    assert 'data-autosubmit' in dom and 'src="/static/itam.js"' in dom
    shot = screenshot(tmp_path, f"{server}/assets?token={TOKEN}", "assets")
    assert_real_png(shot)


def test_asset_page_in_chromium(server: str, tmp_path: Path) -> None:
    # A bare serial in the URL lands on the asset's page.
    dom = dump_dom(tmp_path, f"{server}/assets/C02FK1ABQ6L4?token={TOKEN}")
    assert "Laptop C02FK1ABQ6L4" in dom
    row = re.search(r'<tr id="field-assigned_to".*?</tr>', dom, re.S)
    assert row is not None
    text = _text(row.group(0))
    assert text.startswith("assigned_to bob.li@example.com mdm")
    assert "freshness:90d" in text and "procurement ana.souza@example.com" in text and "older than 90d" in text
    model = _text(re.search(r'<tr id="field-model".*?</tr>', dom, re.S).group(0))  # type: ignore[union-attr]
    assert model.startswith("model MacBook Pro 14 (2021) procurement") and "mdm MacBookPro18,3" in model
    assert "Merge history" in dom and "Source records" in dom
    assert_real_png(screenshot(tmp_path, f"{server}/assets/C02FK1ABQ6L4?token={TOKEN}", "asset"))


def test_report_page_in_chromium(server: str, tmp_path: Path) -> None:
    dom = dump_dom(tmp_path, f"{server}/reports/coverage-gaps?token={TOKEN}")
    assert "Coverage gaps" in dom
    svg = re.search(r'<svg class="chart".*?</svg>', dom, re.S)
    assert svg is not None
    bars = dict(re.findall(r"<title>([a-z-]+): (\d+)</title>", svg.group(0)))
    # Carla's laptop (Ana's iPhone is not expected to run an EDR agent: issue #15 item 10).
    assert bars.get("mdm-without-edr") == "1" and bars.get("procured-never-seen") == "2"
    table = dom.split('id="report-table"', 1)[1]
    assert "FVFXC2ABJ1WK" in table and "PF9NEW001" in table
    assert_real_png(screenshot(tmp_path, f"{server}/reports/coverage-gaps?token={TOKEN}", "report"))


def test_live_search_updates_the_list_in_chromium(server: str, tmp_path: Path) -> None:
    """static/itam.js: typing in the list's search box swaps in the matching rows without a page load."""
    import html
    import json

    dom = _chromium(tmp_path, "--virtual-time-budget=15000", "--dump-dom",
                    f"{server}/__harness/live_search").stdout
    out = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert out is not None
    seen = json.loads(html.unescape(out.group(1)))
    assert seen["rows"] == 1 and seen["search"] == "?q=lt-bob"
    assert "5CG1234XYZ" in seen["text"] and "lt-bob-w11" in seen["text"]


def test_without_a_token_chromium_gets_the_sign_in_form(server: str, tmp_path: Path) -> None:
    dom = dump_dom(tmp_path, f"{server}/assets")
    assert '<form class="login"' in dom and "C02FK1ABQ6L4" not in dom


def test_sign_out_is_a_form_post_that_ends_the_session_in_chromium(server: str, tmp_path: Path) -> None:
    import html
    import json

    dom = _chromium(tmp_path, "--virtual-time-budget=15000", "--dump-dom", f"{server}/__harness/sign_out").stdout
    out = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert out is not None
    seen = json.loads(html.unescape(out.group(1)))
    assert seen == {"before": "/assets", "after": "/login", "status": 401}
