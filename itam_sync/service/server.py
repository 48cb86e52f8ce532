"""`itam-sync serve`: the scheduler, the per-connector queue, leases, and a small HTTP app on one port.

    scheduler (APScheduler) --+
    vendor events (/hooks/X) -+--> Dispatcher (one run per connector here, max_parallel in all)
    operators (POST /runs) ---+        |
                                       v
    take the connector's lease (skip if another worker holds it; events and operators wait for it)
    skip a scheduled run some worker already ran since it was due
    run_connector(merge=False) under the lease, renewed in the background
    merge_pending() under the `merge` lease

HTTP: GET /healthz, GET /metrics (Prometheus), POST /runs (Bearer token from `service.api_tokens`; with
none configured only from 127.0.0.1), GET|POST /hooks/<connector> (Okta, Jamf Pro, Microsoft Graph).

SIGTERM / SIGINT: no new runs; a running sync gets `service.grace_period_s` to finish, then it is told to stop
at its next record; its single transaction rolls back (no partial state) and it is recorded `interrupted`.
"""

from __future__ import annotations

import hmac
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError

from itam_sync import clock
from itam_sync.engine.registry import Registry
from itam_sync.engine.runner import RunInterrupted, SyncFailed, merge_pending, run_connector
from itam_sync.http_guard import API_HEADERS, RequestGuard, SecurityHeaders, is_loopback_host
from itam_sync.insight.reports import keep_kpi_snapshot
from itam_sync.service.metrics import CONTENT_TYPE, Metrics
from itam_sync.service.scheduler import REMINDERS, SINK_PREFIX, Dispatcher, ServiceScheduler
from itam_sync.service.scheduler import Request as RunRequest
from itam_sync.service.webhooks import HookAuth, authenticated, build_hooks, count_events, okta_verification
from itam_sync.settings import ConfigError, LoadedConfig, Settings, resolve_secrets
from itam_sync.store import Store
from itam_sync.store.leases import Lease, LeaseBusy, connector_lease, new_holder_id

log = logging.getLogger(__name__)
ABORT_WAIT_S = (2.0, 15.0)  # after the grace period, a told-to-stop run gets grace clamped to this to notice
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


class ServiceError(Exception):
    """`serve` cannot start as configured (port taken, ...); the message says what to change."""


@dataclass
class ActiveRun:
    """A run this worker is doing now."""

    connector: str
    mode: str
    reason: str
    started: str


class RunBody(BaseModel):
    """POST /runs: which connector (all enabled ones when omitted) and whether to resync in full."""

    connector: str | None = None
    full: bool = False


class Service:
    """One `serve` worker: build it, `start()` it, `shutdown()` it (or `serve_forever()` for both)."""

    def __init__(self, settings: Settings, *, host: str | None = None, port: int | None = None,
                 registry: Registry | None = None) -> None:
        svc = settings.service
        self.settings = settings
        self.registry = registry or Registry()
        self.host = host or svc.host
        self.port = svc.port if port is None else port
        self.worker = new_holder_id().rsplit(":", 1)[0]  # host:pid, for people
        self.hooks: dict[str, HookAuth] = build_hooks(settings)
        self.tokens = [resolve_secrets(t, "service.api_tokens") for t in svc.api_tokens]
        self.enabled = [c.name for c in settings.connectors if c.enabled]
        self._preflight()
        self.store = Store.open(settings.store.url)
        # SQLite has one writer, and a run writes for as long as it pulls: a second run would only wait on the
        # lock (and time out on a long one). PostgreSQL pulls in parallel and writes one run at a time.
        self.max_parallel = 1 if self.store.is_sqlite else svc.max_parallel
        self.metrics = Metrics()
        self.stopping = threading.Event()  # no new work
        self.cancel = threading.Event()  # running syncs: stop at the next record
        self.dispatcher = Dispatcher(self._execute, self.max_parallel)
        self.scheduler = ServiceScheduler(settings, self.dispatcher)
        self.active: dict[str, ActiveRun] = {}
        self._active_lock = threading.Lock()
        self._leases: set[Lease] = set()
        self._server: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self.app = build_app(self)
        self.clean_exit = True

    def _preflight(self) -> None:
        """Fail at start, not at 3 a.m.: the whole config must pass what `validate` checks (every connector's
        type, settings and mapping, the precedence sources, the sinks) before anything is scheduled."""
        from itam_sync.engine.preflight import check
        from itam_sync.publish.sinks.registry import sink_config_problems

        path = self.settings.source_path or "config"
        check(self.settings, self.registry, extra=sink_config_problems(path, LoadedConfig(settings=self.settings)))

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self, http: bool = True) -> None:
        """Start listening, scheduling, and catching up on runs missed while no worker was up."""
        with self.store.begin() as repo:
            self.metrics.seed_last_success(repo.runs.last_runs())
            self.metrics.seed_contracts(repo.runs.latest_contracts())
        if http:
            self._start_http()
        self.scheduler.start()
        caught = self.scheduler.catch_up(self._served)
        log.info("serving %d connectors (%d runs at once) as %s on http://%s:%d; store %s",
                 len(self.scheduler.schedules), self.max_parallel, self.worker, self.host, self.port,
                 self.store.engine.url.render_as_string(hide_password=True),
                 extra={"worker": self.worker, "port": self.port})
        if caught:
            log.info("catching up: %s", ", ".join(f"{r.connector} ({'full' if r.full else 'incremental'})"
                                                 for r in caught))

    def _start_http(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ServiceError(f"cannot listen on {self.host}:{self.port}: {exc.strerror} (another process uses "
                               "the port? set service.port or --port)") from exc
        sock.listen(128)
        self.port = sock.getsockname()[1]
        # log_config=None: keep our logging (plain or JSON lines) instead of uvicorn's.
        config = uvicorn.Config(self.app, log_config=None, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._http_thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, name="http",
                                             daemon=True)
        self._http_thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline and self._http_thread.is_alive():
            time.sleep(0.02)

    def serve_forever(self) -> bool:
        """Run until SIGTERM or SIGINT; then shut down gracefully. True if every run ended cleanly."""
        def on_signal(signum: int, _frame: Any) -> None:
            if self.stopping.is_set():
                log.warning("second signal: stopping running syncs now")
                self.cancel.set()
            self.stopping.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        self.start()
        while not self.stopping.wait(0.5):
            pass
        self.shutdown()
        return self.clean_exit

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop taking work; let running syncs finish within the grace period, else stop them cleanly."""
        grace = self.settings.service.grace_period_s if grace_s is None else grace_s
        self.stopping.set()
        self.scheduler.shutdown()
        self.dispatcher.close()
        running = self.dispatcher.running()
        if running:
            log.info("stopping: no new runs; waiting up to %.0f s for %s", grace, ", ".join(running))
        if not self.dispatcher.wait_idle(grace):
            log.warning("grace period over: stopping %s at the next record (their transactions roll back)",
                        ", ".join(self.dispatcher.running()))
            self.cancel.set()
            if not self.dispatcher.wait_idle(min(max(grace, ABORT_WAIT_S[0]), ABORT_WAIT_S[1])):
                self._abandon(self.dispatcher.running())
        self._stop_http()
        self.dispatcher.shutdown()
        log.info("stopped")

    def _abandon(self, stuck: list[str]) -> None:
        """Runs stuck in I/O past the grace period: the process exits under them. Their transactions roll back
        when the connection goes; record them interrupted where the store lets us write, free their leases."""
        self.clean_exit = False
        log.error("still running after the grace period: %s (stuck waiting on the source); exiting anyway -- "
                  "nothing they read is kept and the next run records them interrupted", ", ".join(stuck))
        if self.store.is_sqlite:
            # The stuck run holds SQLite's write lock: writing would wait for it. The next run on this host
            # takes over its lease (the process is gone) and records it interrupted.
            return
        try:
            with self.store.begin() as repo:
                for name in stuck:
                    for run_id, _, pid, host in repo.runs.running_runs(name):
                        if pid == os.getpid() and host == socket.gethostname():
                            repo.runs.finish_run(run_id, "interrupted", _now(), 0.0, {},
                                            "the worker shut down before the run finished; nothing was kept")
        except Exception:  # noqa: BLE001 - best effort on the way out
            log.exception("could not record the abandoned runs")
        for lease in list(self._leases):
            lease.release()

    def _stop_http(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)

    # -- running ----------------------------------------------------------------------------------------
    def _served(self, req: RunRequest) -> bool:
        """Did a run of this connector (on any worker) start since the request was due?"""
        if req.due is None:
            return False
        name, modes = req.connector, ["full"] if req.full else ["full", "incremental"]
        if name.startswith(SINK_PREFIX):  # sink pushes are recorded under the sink's name
            name, modes = name.removeprefix(SINK_PREFIX), ["push"]
        elif name == REMINDERS:
            name, modes = "(reminders)", ["remind"]
        with self.store.begin() as repo:
            return repo.runs.run_started_since(name, req.due.strftime("%Y-%m-%dT%H:%M:%SZ"), modes) is not None

    def _execute_task(self, req: RunRequest) -> None:
        """A sink's push or the reminder digest, on its schedule: one worker at a time (lease), once per
        occurrence. Their own modules keep their positions and history; this only decides when."""
        lease = Lease(self.store, req.connector, self.settings.service.lease_ttl_s)
        try:
            lease.acquire(wait=None if req.wait else 0, stop=self.stopping)
        except LeaseBusy as exc:
            log.info("%s: not started: %s", req.connector, exc)
            self.metrics.skipped.labels(req.connector, "lease_held").inc()
            return
        self._leases.add(lease)
        lease.start_renewal()
        t0 = time.perf_counter()
        mode = "push" if req.connector != REMINDERS else "remind"
        try:
            if self._served(req):
                self.metrics.skipped.labels(req.connector, "already_run").inc()
                return
            if req.connector == REMINDERS:
                from itam_sync.publish.reminders import run_reminders

                run_reminders(self.settings, store=self.store)
                status = "success"
            else:
                from itam_sync.publish.sinks.push import push_sink

                status = push_sink(self.settings, req.connector.removeprefix(SINK_PREFIX), store=self.store).status
            self.metrics.observe_run(req.connector, mode, status, time.perf_counter() - t0, {}, time.time())
        except Exception as exc:  # noqa: BLE001 - they record their own failures; the service goes on
            self.metrics.observe_run(req.connector, mode, "failed", time.perf_counter() - t0, {})
            log.error("%s: %s", req.connector, exc)
        finally:
            lease.release()
            self._leases.discard(lease)

    def _execute(self, req: RunRequest) -> None:
        """One request: lease, dedupe, run, merge. Called on a dispatcher thread, one at a time per connector."""
        if self.stopping.is_set():
            return
        if req.connector.startswith(SINK_PREFIX) or req.connector == REMINDERS:
            self._execute_task(req)
            return
        name, mode = req.connector, "full" if req.full else "incremental"
        lease = Lease(self.store, connector_lease(name), self.settings.service.lease_ttl_s)
        try:
            lease.acquire(wait=None if req.wait else 0, stop=self.stopping)
        except LeaseBusy as exc:
            log.info("%s: %s run not started: %s", name, req.reason, exc)
            self.metrics.skipped.labels(name, "lease_held").inc()
            return
        self._leases.add(lease)
        lease.start_renewal()
        ran = False
        try:
            if self._served(req):
                log.info("%s: %s run skipped: another run started since it was due", name, req.reason)
                self.metrics.skipped.labels(name, "already_run").inc()
                return
            ran = self._run(req, lease, mode)
        finally:
            lease.release()
            self._leases.discard(lease)
        if ran:
            self._merge()

    def _run(self, req: RunRequest, lease: Lease, mode: str) -> bool:
        name = req.connector
        with self._active_lock:
            self.active[name] = ActiveRun(name, mode, req.reason, _now())
        self.metrics.in_progress.labels(name).set(1)
        t0 = time.perf_counter()
        log.debug("%s: starting a %s run (%s)", name, mode, req.reason)
        try:
            result = run_connector(self.settings, name, full=req.full, store=self.store, registry=self.registry,
                                   merge=False, lease=lease, cancel=self.cancel, on_http=self.metrics.observe_http,
                                   actor=f"serve ({req.reason})")
            self.metrics.observe_run(name, mode, result.status, result.duration_s, result.counts, time.time())
            return True
        except RunInterrupted:
            self.metrics.observe_run(name, mode, "interrupted", time.perf_counter() - t0, {})
        except SyncFailed:
            self.metrics.observe_run(name, mode, "failed", time.perf_counter() - t0, {})  # the runner logged it
        except ConfigError as exc:
            self.metrics.observe_run(name, mode, "failed", time.perf_counter() - t0, {})
            log.error("%s: %s", name, exc)
        except Exception:  # noqa: BLE001 - a bug in one connector must not stop the service
            self.metrics.observe_run(name, mode, "failed", time.perf_counter() - t0, {})
            log.exception("%s: run failed unexpectedly", name)
        finally:
            self.metrics.in_progress.labels(name).set(0)
            with self._active_lock:
                self.active.pop(name, None)
        return False

    def _merge(self) -> None:
        t0 = time.perf_counter()
        try:
            stats = merge_pending(self.settings, self.store, actor="serve", stop=self.cancel)
        except SyncFailed as exc:
            log.warning("merge postponed: %s (the queue is kept)", exc)
            return
        except Exception:  # noqa: BLE001 - the queue is durable: the next run merges it
            log.exception("merge failed; the queued entities are kept and merged after the next run")
            return
        if stats.entities:
            self.metrics.merges.inc()
            self.metrics.merged_entities.inc(stats.entities)
            self.metrics.merge_duration.observe(time.perf_counter() - t0)
            log.info("merged %d entities: %d changed, %d merge-log rows", stats.entities, stats.changed_entities,
                     stats.log_rows)
        if stats.changed_entities:
            keep_kpi_snapshot(self.store, self.settings)  # one point of the dashboard's trend per changing merge

    # -- requests from outside --------------------------------------------------------------------------
    def request_run(self, connector: str, full: bool, reason: str = "api") -> bool:
        """Queue a run now (operators). False when shutting down."""
        return self.dispatcher.submit(RunRequest(connector, full=full, reason=reason, wait=True))

    def on_event(self, connector: str, source: str) -> str:
        """A valid vendor event: an incremental run after the debounce window. Returns queued | debounced."""
        req = RunRequest(connector, full=False, reason="event", wait=True)
        started = self.dispatcher.submit_debounced(req, self.settings.service.debounce_s)
        result = "queued" if started else "debounced"
        self.metrics.events.labels(connector, source, result).inc()
        return result

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for GET /healthz."""
        body: dict[str, Any] = {"status": "ok", "worker": self.worker,
                                "running": {n: vars(a) for n, a in dict(self.active).items()},
                                "queued": sorted(self.dispatcher.pending())}
        try:
            with self.store.begin() as repo:
                repo.leases.lease_list()
            body["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the health check
            body["store"] = f"error: {type(exc).__name__}"
            body["status"] = "degraded"
        if self.stopping.is_set():
            body["status"] = "stopping"
        return (200 if body["status"] == "ok" else 503), body

    def authorized(self, request: Request) -> tuple[bool, int, str]:
        """May this request ask for runs? (ok, status if not, why)."""
        if self.tokens:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and any(hmac.compare_digest(token.strip().encode(), t.encode())
                                                  for t in self.tokens):
                return True, 200, ""
            return False, 401, "a valid API token is required (Authorization: Bearer <token>; service.api_tokens)"
        host = request.client.host if request.client else ""
        # The Host header too: a web page's script reaching 127.0.0.1 under its own name (DNS rebinding)
        # comes from this machine but names another host.
        if host in LOOPBACK and is_loopback_host(request.headers.get("host", "")):
            return True, 200, ""
        return False, 403, ("no service.api_tokens are configured, so runs are only accepted from 127.0.0.1 "
                            "addressed to 127.0.0.1 or localhost")


def _now() -> str:
    return clock.now_iso()


def build_app(svc: Service) -> FastAPI:
    """The HTTP side of a worker: health, metrics, operator runs, vendor events."""
    app = FastAPI(title="itam-sync serve", docs_url=None, redoc_url=None, openapi_url=None)
    limits = svc.settings.http
    app.add_middleware(RequestGuard, max_bytes=limits.max_body_bytes, max_json_depth=limits.max_json_depth,
                       headers=API_HEADERS)
    app.add_middleware(SecurityHeaders, headers=API_HEADERS)  # outermost: on the guard's refusals too

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        status, body = svc.health()
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/runs")
    async def runs(request: Request) -> JSONResponse:
        ok, status, why = svc.authorized(request)  # before the body is even parsed
        if not ok:
            # Not the connector asked for: an unauthenticated caller must not mint metric series.
            svc.metrics.events.labels("(unauthenticated)", "api", "rejected").inc()
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return JSONResponse({"error": why}, status_code=status, headers=headers)
        try:  # parsed here, not by FastAPI, whose 422 for a non-UTF-8 body is itself a 500
            body = RunBody.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            return JSONResponse({"error": f"not a run request ({problems}); send JSON such as "
                                          '{"connector": "mdm", "full": false}'}, status_code=400)
        if body.connector is not None and body.connector not in svc.settings.connector_types():
            return JSONResponse({"error": f"no connector named {body.connector!r}"}, status_code=404)
        if body.connector is not None and body.connector not in svc.enabled:
            return JSONResponse({"error": f"connector {body.connector!r} is disabled"}, status_code=409)
        names = [body.connector] if body.connector else list(svc.enabled)
        queued = [n for n in names if svc.request_run(n, body.full)]
        if not queued:
            return JSONResponse({"error": "shutting down"}, status_code=503)
        for n in queued:
            svc.metrics.events.labels(n, "api", "queued").inc()
        log.info("operator asked for a %s run of %s", "full" if body.full else "incremental", ", ".join(queued))
        return JSONResponse({"queued": queued, "mode": "full" if body.full else "incremental"}, status_code=202)

    @app.get("/hooks/{connector}")
    def hook_verify(connector: str, request: Request) -> JSONResponse:
        hook = svc.hooks.get(connector)
        answer = okta_verification(request.headers) if hook is not None and hook.kind == "okta" else None
        if answer is None:
            return JSONResponse({"error": "no event hook verification here"}, status_code=404)
        svc.metrics.events.labels(connector, "okta", "verification").inc()
        return JSONResponse(answer)

    @app.post("/hooks/{connector}")
    async def hook_event(connector: str, request: Request) -> Response:
        hook = svc.hooks.get(connector)
        if hook is None:
            return JSONResponse({"error": f"no webhook configured for {connector!r}"}, status_code=404)
        token = request.query_params.get("validationToken")
        if hook.kind == "graph" and token is not None:
            # Graph's subscription handshake: echo the token as text within 10 s; it carries no clientState.
            svc.metrics.events.labels(connector, "graph", "verification").inc()
            return PlainTextResponse(token)
        if not authenticated(hook, request.headers):
            svc.metrics.events.labels(connector, hook.kind, "rejected").inc()
            log.warning("%s: rejected a %s event: bad or missing secret", connector, hook.kind)
            return JSONResponse({"error": "not authenticated"}, status_code=401)
        try:
            events = count_events(hook, await request.json())
        except ValueError as exc:  # also bad JSON (JSONDecodeError is a ValueError)
            svc.metrics.events.labels(connector, hook.kind, "rejected").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        if hook.kind == "graph" and events == 0:
            svc.metrics.events.labels(connector, hook.kind, "rejected").inc()
            return JSONResponse({"error": "no notification carried the expected clientState"}, status_code=403)
        if connector not in svc.enabled:
            return JSONResponse({"error": f"connector {connector!r} is disabled"}, status_code=409)
        result = svc.on_event(connector, hook.kind) if events else "empty"
        return JSONResponse({"accepted": events, "run": result}, status_code=202 if hook.kind == "graph" else 200)

    return app
