"""A local stand-in for the vendor APIs the connectors call, for demos, load tests and fault tests.

    from itam_sync import sandbox
    with sandbox.start(devices=500, faults="429:0.05,5xx:0.02") as sb:
        os.environ.update(sb.env())        # ITAM_SANDBOX_URL, ITAM_SANDBOX_TLS_URL, REQUESTS_CA_BUNDLE, ...
        ...run itam-sync with config/sandbox.yaml...
        sb.advance()                       # ~2% of the records change, a few appear and disappear
        sb.set_faults("reset:0.1")

One HTTP listener on 127.0.0.1 serves every vendor on its own path prefix (`vendors.PREFIXES`), and one
HTTPS listener serves the same routes for clients that insist on TLS (msal: the Microsoft login). Both
read one seeded `Population`, so every vendor describes the same people and machines. `process=True`
runs the servers in a child process (a separate interpreter, so a load test measures the client side
without sharing its GIL); the handle's methods work the same either way, over the `/_sandbox/` admin API.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from itam_sync.sandbox.faults import FaultSpec, FaultSpecError
from itam_sync.sandbox.population import Population
from itam_sync.sandbox.routes import PREFIXES, build_router
from itam_sync.sandbox.server import Request, Response, Router, Sandbox, SandboxServer, json_response
from itam_sync.sandbox.tls import make_tls_files

log = logging.getLogger(__name__)
SECRET_ENV = "ITAM_SANDBOX_SECRET"
SANDBOX_SECRET = "sandbox-not-a-secret"

__all__ = ["FaultSpec", "FaultSpecError", "SandboxHandle", "start"]


@dataclass
class SandboxHandle:
    """A running sandbox: its URLs, the CA file clients must trust, and controls (faults, versions)."""

    url: str
    tls_url: str
    ca_file: Path
    workdir: Path
    devices: int
    people: int
    seed: int
    _servers: list[SandboxServer] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _process: subprocess.Popen[str] | None = None
    _own_workdir: bool = False
    _session: requests.Session = field(default_factory=requests.Session)

    @property
    def pid(self) -> int:
        """The process serving the sandbox (this one unless started with process=True)."""
        return self._process.pid if self._process is not None else os.getpid()

    def urls(self) -> dict[str, str]:
        """Base URL per vendor family, as the connectors' settings want them."""
        out = {name: self.url + prefix for name, prefix in PREFIXES.items()}
        out["login"] = self.tls_url + PREFIXES["login"]
        return out

    def env(self) -> dict[str, str]:
        """Environment for a process that runs connectors against this sandbox (config/sandbox.yaml)."""
        return {"ITAM_SANDBOX_URL": self.url, "ITAM_SANDBOX_TLS_URL": self.tls_url,
                "REQUESTS_CA_BUNDLE": str(self.ca_file), SECRET_ENV: SANDBOX_SECRET}

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._session.request(method, f"{self.url}/_sandbox/{path}", json=body, timeout=60)
        data: dict[str, Any] = response.json()
        if response.status_code != 200:
            raise ValueError(data.get("error", f"sandbox admin call {path} failed ({response.status_code})"))
        return data

    def status(self) -> dict[str, Any]:
        """Population version and size, active fault spec, requests and records served, faults injected."""
        return self._admin("GET", "status")

    def set_faults(self, spec: str) -> None:
        """Switch faults (see `itam_sync.sandbox.faults`); '' turns them off. Resets the fault history."""
        self._admin("POST", "faults", {"spec": spec})

    def advance(self, content_only: bool = False) -> int:
        """Move the population to its next version; returns the version."""
        return int(self._admin("POST", "advance", {"content_only": content_only})["version"])

    def set_version(self, version: int, forget_history: bool = False) -> None:
        """Rebuild the population as it was (or will be) at `version`; `forget_history` forgets which past
        advances were content-only (see `Population.set_version`)."""
        self._admin("POST", "version", {"version": version, "forget_history": forget_history})

    def reset_stats(self) -> None:
        """Zero the request, record and fault counters."""
        self._admin("POST", "reset")

    def stop(self) -> None:
        """Shut the listeners (or the child process) down and remove a temporary work directory."""
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._session.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _admin_routes(router: Router) -> None:
    def status(req: Request, sb: Sandbox) -> Response:
        return json_response(sb.status())

    def faults(req: Request, sb: Sandbox) -> Response:
        body = req.json() or {}
        try:
            sb.injector.configure(FaultSpec.parse(str(body.get("spec") or "")))
        except FaultSpecError as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(sb.status())

    def advance(req: Request, sb: Sandbox) -> Response:
        body = req.json() or {}
        return json_response({"version": sb.population.advance(bool(body.get("content_only")))})

    def version(req: Request, sb: Sandbox) -> Response:
        body = req.json() or {}
        sb.population.set_version(int(body.get("version", 0)), bool(body.get("forget_history")))
        return json_response({"version": sb.population.version})

    def reset(req: Request, sb: Sandbox) -> Response:
        sb.requests.clear()
        sb.records.clear()
        sb.injector.injected.clear()
        return json_response({"ok": True})

    router.add("GET", "/_sandbox/status", "admin", status, faults=False)
    router.add("POST", "/_sandbox/faults", "admin", faults, faults=False)
    router.add("POST", "/_sandbox/advance", "admin", advance, faults=False)
    router.add("POST", "/_sandbox/version", "admin", version, faults=False)
    router.add("POST", "/_sandbox/reset", "admin", reset, faults=False)


def start(devices: int = 1000, people: int | None = None, seed: int = 1, faults: str = "", port: int = 0,
          tls_port: int | None = None, workdir: str | Path | None = None, max_page: int | None = None,
          process: bool = False, identity_mess: bool = False) -> SandboxHandle:
    """Start a sandbox on 127.0.0.1 and return its handle (a context manager; `stop()` ends it).

    `port` 0 picks free ports; otherwise HTTP listens on `port` and HTTPS on `tls_port` (default port + 1).
    `max_page` caps every page size (more pages from a small population: what fault tests want).
    `process=True` serves from a child process instead of threads of this one. `identity_mess=True` serves
    the population with the extra identity cases (`Population.identity_mess`).
    """
    spec = FaultSpec.parse(faults)  # fail here, with the item named, rather than in the child
    if process:
        return _start_process(devices, people, seed, faults, port, tls_port, workdir, max_page, identity_mess)
    own = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="itam-sandbox-")) if workdir is None else Path(workdir)
    tls_files = make_tls_files(wd)
    population = Population(seed=seed, n_devices=devices, n_people=people or 0, identity_mess=identity_mess)
    router = build_router()
    _admin_routes(router)
    sandbox = Sandbox(population, router, spec, max_page)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls_files.cert_file, tls_files.key_file)
    http = SandboxServer(("127.0.0.1", port), sandbox)
    https = SandboxServer(("127.0.0.1", tls_port if tls_port is not None else (port + 1 if port else 0)), sandbox,
                          tls=ctx)
    handle = SandboxHandle(url=f"http://127.0.0.1:{http.server_address[1]}",
                           tls_url=f"https://127.0.0.1:{https.server_address[1]}", ca_file=tls_files.ca_file,
                           workdir=wd, devices=devices, people=population.n_people, seed=seed,
                           _servers=[http, https], _own_workdir=own)
    handle._threads = [http.serve_in_thread(), https.serve_in_thread()]
    log.info("sandbox: %d devices, %d people (seed %d) on %s and %s", devices, population.n_people, seed,
             handle.url, handle.tls_url)
    return handle


def _start_process(devices: int, people: int | None, seed: int, faults: str, port: int, tls_port: int | None,
                   workdir: str | Path | None, max_page: int | None, identity_mess: bool = False) -> SandboxHandle:
    own = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="itam-sandbox-")) if workdir is None else Path(workdir)
    cmd = [sys.executable, "-m", "itam_sync", "sandbox", "--devices", str(devices), "--seed", str(seed),
           "--port-base", str(port), "--workdir", str(wd), "--json"]
    if people:
        cmd += ["--people", str(people)]
    if faults:
        cmd += ["--faults", faults]
    if max_page:
        cmd += ["--max-page", str(max_page)]
    if tls_port is not None:
        cmd += ["--tls-port", str(tls_port)]
    if identity_mess:
        cmd += ["--identity-mess"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise RuntimeError(f"the sandbox process exited ({proc.returncode}) before it was ready")
    info = json.loads(line)
    return SandboxHandle(url=info["url"], tls_url=info["tls_url"], ca_file=Path(info["ca_file"]), workdir=wd,
                         devices=devices, people=int(info["people"]), seed=seed, _process=proc, _own_workdir=own)
