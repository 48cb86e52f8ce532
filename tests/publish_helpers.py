"""Local servers for the publishing tests (sinks, webhooks, reminders): real sockets on 127.0.0.1, in threads.

- `RecordingServer`: an `http.server` that records every request it receives and answers from `route()`;
  `script` queues canned answers (429, 5xx, ...) served before the route for matching requests.
- `FakeServiceNow`: the Identification and Reconciliation API and the sys_user Table API, paged with
  sysparm_limit / sysparm_offset, in their documented request and response shapes.
- `FakeSnipeIt`: Snipe-IT API v1 hardware (byserial, create, update), models, users and status labels, paged
  with limit / offset through {"total", "rows"}, answering refusals with HTTP 200 + {"status": "error"}.
- `SmtpServer`: a tiny SMTP server on `socketserver` (EHLO, STARTTLS, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA) that
  keeps the messages it accepts. The stdlib `smtpd` module still exists in 3.11 but is deprecated (removed in
  3.12) and `aiosmtpd` is not installed, hence this one.
"""

from __future__ import annotations

import base64
import email
import json
import socketserver
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Answer = tuple[int, dict[str, str], Any]  # (status, headers, JSON-able body or bytes)


@dataclass
class Call:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle + the client's delayed ACK add 40 ms a call.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        return

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        call = Call(self.command, unquote(parts.path), query, {k.lower(): v for k, v in self.headers.items()}, body)
        owner = self.server.owner
        with owner.lock:
            owner.calls.append(call)
        status, headers, payload = owner.answer(call)
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        headers = {"Content-Type": "application/json", **headers}
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: RecordingServer


class RecordingServer:
    """An HTTP server on 127.0.0.1 that records the calls it receives. Use as a context manager."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        # (method, path prefix) -> canned answers served (and consumed) before route() for matching calls
        self.script: list[tuple[str, str, Answer]] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def answer(self, call: Call) -> Answer:
        with self.lock:
            for i, (method, prefix, ans) in enumerate(self.script):
                if method == call.method and call.path.startswith(prefix):
                    del self.script[i]
                    return ans
        return self.route(call)

    def route(self, call: Call) -> Answer:
        return 200, {}, {"ok": True}

    def calls_to(self, method: str, prefix: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.startswith(prefix)]


class FakeServiceNow(RecordingServer):
    """ServiceNow: POST /api/now/identifyreconcile and GET /api/now/table/sys_user (paged)."""

    def __init__(self, users: list[dict[str, str]] | None = None, user: str = "itam", password: str = "pw") -> None:
        super().__init__()
        self.users = users or []
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.cis: dict[str, dict[str, Any]] = {}  # identity (serial or name) -> {"sys_id", "className", "values"}
        self.refuse: set[str] = set()  # serials whose items get an IRE error
        self.bearer: str | None = None  # if set, accept this bearer token instead of basic auth

    def _authorised(self, call: Call) -> bool:
        got = call.headers.get("authorization", "")
        return got == (f"Bearer {self.bearer}" if self.bearer else self.auth)

    def route(self, call: Call) -> Answer:
        if call.path == "/oauth_token.do" and call.method == "POST":
            return 200, {}, {"access_token": self.bearer, "token_type": "Bearer", "expires_in": 1800}
        if not self._authorised(call):
            return 401, {}, {"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth"}}
        if call.method == "POST" and call.path in ("/api/now/identifyreconcile", "/api/now/v1/identifyreconcile"):
            return 200, {}, {"result": self._reconcile(call.json["items"])}
        if call.method == "GET" and call.path == "/api/now/table/sys_user":
            return self._users(call)
        return 404, {}, {"error": {"message": "Requested URI does not represent any resource"}}

    def _reconcile(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        out = []
        for i, item in enumerate(items):
            values = item["values"]
            ident = values.get("serial_number") or values.get("name")
            base = {"className": item["className"], "inputIndices": [i], "markers": [], "mergedPayloadIds": [],
                    "identificationAttempts": [{"identifierName": "Hardware Rule", "attemptResult": "MATCHED",
                                                "attributes": ["serial_number"], "searchOnTable": "cmdb_ci_hardware",
                                                "hybridEntryCiAttributes": []}]}
            if not ident or ident in self.refuse:
                out.append({**base, "operation": "NO_CHANGE", "sysId": "Unknown", "errorCount": 1,
                            "errors": [{"error": "MISSING_MATCHING_ATTRIBUTES",
                                        "message": "In payload missing minimum set of input values"}]})
                continue
            known = self.cis.get(ident)
            if known is None:
                sys_id = f"{len(self.cis) + 1:032x}"
                self.cis[ident] = {"sys_id": sys_id, "className": item["className"], "values": dict(values)}
                op = "INSERT"
            elif known["values"] == values:
                sys_id, op = known["sys_id"], "NO_CHANGE"
            else:
                known["values"] = dict(values)
                sys_id, op = known["sys_id"], "UPDATE"
            out.append({**base, "operation": op, "sysId": sys_id, "identifierEntrySysId": "556eb250c3400200",
                        "errorCount": 0})
        return {"items": out, "relations": [], "additionalCommittedItems": [], "additionalCommittedRelations": []}

    def _users(self, call: Call) -> Answer:
        query = call.query.get("sysparm_query", "")
        wanted: set[str] = set()
        for clause in query.split("^OR"):
            for field_name in ("email", "user_name", "employee_number"):
                if clause.startswith(field_name + "IN"):
                    wanted |= {v.strip().lower() for v in clause[len(field_name) + 2:].split(",")}
        rows = [u for u in self.users if {str(u.get(k, "")).lower() for k in ("email", "user_name",
                                                                                "employee_number")} & wanted]
        limit, offset = int(call.query.get("sysparm_limit", 10000)), int(call.query.get("sysparm_offset", 0))
        page = rows[offset:offset + limit]
        fields = call.query.get("sysparm_fields", "").split(",")
        result = [{k: u.get(k, "") for k in fields} for u in page] if fields != [""] else page
        return 200, {"X-Total-Count": str(len(rows))}, {"result": result}


class FakeSnipeIt(RecordingServer):
    """Snipe-IT API v1: hardware by serial / create / update, models, users, status labels."""

    def __init__(self, token: str = "snipe-token") -> None:
        super().__init__()
        self.token = token
        self.assets: dict[int, dict[str, Any]] = {}
        self.models: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.statuslabels: dict[int, dict[str, Any]] = {
            i + 1: {"id": i + 1, "name": n, "type": t} for i, (n, t) in enumerate([
                ("Ready to Deploy", "deployable"), ("Pending", "pending"), ("Archived", "archived"),
                ("Out for Diagnostics", "undeployable"), ("Out for Repair", "undeployable"),
                ("Broken - Not Fixable", "undeployable"), ("Lost/Stolen", "undeployable")])}

    # -- fixtures -----------------------------------------------------------------------------------------
    def add_model(self, name: str) -> int:
        mid = len(self.models) + 1
        self.models[mid] = {"id": mid, "name": name, "category": {"id": 2, "name": "Laptops"}}
        return mid

    def add_user(self, email_addr: str, username: str | None = None, employee_num: str = "") -> int:
        uid = len(self.users) + 1
        self.users[uid] = {"id": uid, "name": username or email_addr, "username": username or email_addr,
                           "email": email_addr, "employee_num": employee_num}
        return uid

    def add_asset(self, serial: str, model_id: int, status_id: int = 1, deleted: bool = False,
                  **extra: Any) -> int:
        aid = 100 + len(self.assets) + 1
        self.assets[aid] = {"id": aid, "serial": serial, "name": extra.pop("name", ""), "model_id": model_id,
                            "status_id": status_id, "deleted_at": "2026-01-01 00:00:00" if deleted else None, **extra}
        return aid

    # -- API ----------------------------------------------------------------------------------------------
    def _row(self, a: dict[str, Any]) -> dict[str, Any]:
        """An asset as the AssetsTransformer presents it."""
        model = self.models.get(a["model_id"])
        status = self.statuslabels.get(a["status_id"])
        user = self.users.get(a.get("assigned_user") or 0)
        cost = a.get("purchase_cost")
        return {
            "id": a["id"], "name": a.get("name", ""), "asset_tag": a.get("asset_tag", str(a["id"])),
            "serial": a["serial"],
            "model": {"id": model["id"], "name": model["name"]} if model else None,
            "status_label": {"id": status["id"], "name": status["name"], "status_type": status["type"],
                             "status_meta": status["type"]} if status else None,
            "order_number": a.get("order_number"),
            "purchase_date": {"date": a["purchase_date"], "formatted": a["purchase_date"]}
            if a.get("purchase_date") else None,
            "purchase_cost": f"{float(cost):,.2f}" if cost is not None else None,
            "warranty_months": f"{a['warranty_months']} months" if a.get("warranty_months") else None,
            "assigned_to": {"id": user["id"], "username": user["username"], "name": user["name"],
                            "type": "user"} if user else None,
            "deleted_at": {"datetime": a["deleted_at"]} if a.get("deleted_at") else None,
        }

    @staticmethod
    def _page(rows: list[dict[str, Any]], call: Call) -> Answer:
        limit, offset = int(call.query.get("limit", 50)), int(call.query.get("offset", 0))
        return 200, {}, {"total": len(rows), "rows": rows[offset:offset + limit]}

    def route(self, call: Call) -> Answer:
        if call.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"status": "error", "messages": "Unauthorized", "payload": None}
        p, m = call.path, call.method
        if m == "GET" and p.startswith("/api/v1/hardware/byserial/"):
            serial = p[len("/api/v1/hardware/byserial/"):]
            rows = [self._row(a) for a in self.assets.values() if a["serial"] == serial]
            return 200, {}, {"total": len(rows), "rows": rows}
        if m == "POST" and p == "/api/v1/hardware":
            body = call.json
            for required in ("model_id", "status_id"):
                if not body.get(required):
                    return 200, {}, {"status": "error", "payload": None,
                                     "messages": {required: [f"The {required} field is required."]}}
            if body["model_id"] not in self.models:
                return 200, {}, {"status": "error", "payload": None,
                                 "messages": {"model_id": ["The selected model id is invalid."]}}
            aid = self.add_asset(body["serial"], body["model_id"], body["status_id"],
                                 **{k: v for k, v in body.items() if k not in ("serial", "model_id", "status_id")})
            return 200, {}, {"status": "success", "messages": "Asset created successfully. :)",
                             "payload": {"id": aid, **body}}
        if m == "PATCH" and p.startswith("/api/v1/hardware/"):
            aid = int(p.rsplit("/", 1)[1])
            if aid not in self.assets:
                return 200, {}, {"status": "error", "messages": "Asset does not exist.", "payload": None}
            self.assets[aid].update(call.json)
            return 200, {}, {"status": "success", "messages": "Asset updated successfully.",
                             "payload": {"id": aid}}
        if m == "GET" and p == "/api/v1/statuslabels":
            return self._page(list(self.statuslabels.values()), call)
        if m == "GET" and p == "/api/v1/models":
            term = call.query.get("search", "").lower()
            return self._page([mo for mo in self.models.values() if term in mo["name"].lower()], call)
        if m == "POST" and p == "/api/v1/models":
            body = call.json
            if not body.get("category_id"):
                return 200, {}, {"status": "error", "payload": None,
                                 "messages": {"category_id": ["The category id field is required."]}}
            mid = self.add_model(body["name"])
            return 200, {}, {"status": "success", "messages": "Model created.", "payload": self.models[mid]}
        if m == "GET" and p == "/api/v1/users":
            term = call.query.get("search", "").lower()
            return self._page([u for u in self.users.values()
                               if any(term in str(u.get(k, "")).lower() for k in ("email", "username", "name"))],
                              call)
        return 404, {}, {"status": "error", "messages": "404 endpoint not found", "payload": None}


# -- SMTP ----------------------------------------------------------------------------------------------------
@dataclass
class Received:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_to: list[str]
    data: bytes
    auth_user: str | None
    tls: bool

    @property
    def message(self) -> Message:
        return email.message_from_bytes(self.data)


@dataclass
class _SmtpState:
    messages: list[Received] = field(default_factory=list)
    credentials: tuple[str, str] | None = None  # required (user, password) if set
    tls_context: ssl.SSLContext | None = None  # offers STARTTLS if set
    fail_data: int | None = None  # answer DATA with this code (e.g. 451) instead of accepting


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: _SmtpTcp

    def _send(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())
        self.wfile.flush()

    def handle(self) -> None:
        st = self.server.state
        tls = False
        user: str | None = None
        mail_from, rcpts = "", []
        self._send("220 127.0.0.1 test ESMTP")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\r\n")
            cmd = line.split(" ", 1)[0].upper()
            arg = line[len(cmd):].strip()
            if cmd in ("EHLO", "HELO"):
                ext = ["250-127.0.0.1", "250-8BITMIME"]
                if st.tls_context is not None and not tls:
                    ext.append("250-STARTTLS")
                if st.credentials is not None:
                    ext.append("250-AUTH PLAIN LOGIN")
                ext.append("250 SIZE 10485760")
                for e in ext:
                    self._send(e)
            elif cmd == "STARTTLS" and st.tls_context is not None:
                self._send("220 ready to start TLS")
                conn = st.tls_context.wrap_socket(self.connection, server_side=True)
                self.connection = conn
                self.rfile = conn.makefile("rb")
                self.wfile = conn.makefile("wb")
                tls = True
            elif cmd == "AUTH":
                mech, _, initial = arg.partition(" ")
                if mech.upper() == "PLAIN":
                    if not initial:
                        self._send("334 ")
                        initial = self.rfile.readline().decode().strip()
                    _, u, pw = base64.b64decode(initial).decode().split("\0")
                else:  # LOGIN
                    self._send("334 VXNlcm5hbWU6")
                    u = base64.b64decode(self.rfile.readline().strip()).decode()
                    self._send("334 UGFzc3dvcmQ6")
                    pw = base64.b64decode(self.rfile.readline().strip()).decode()
                if st.credentials == (u, pw):
                    user = u
                    self._send("235 2.7.0 Authentication successful")
                else:
                    self._send("535 5.7.8 Authentication credentials invalid")
            elif cmd == "MAIL":
                if st.credentials is not None and user is None:
                    self._send("530 5.7.0 Authentication required")
                    continue
                mail_from, rcpts = arg.split(":", 1)[1].strip().strip("<>").split(">")[0], []
                self._send("250 OK")
            elif cmd == "RCPT":
                rcpts.append(arg.split(":", 1)[1].strip().strip("<>"))
                self._send("250 OK")
            elif cmd == "DATA":
                if st.fail_data is not None:
                    self._send(f"{st.fail_data} 4.3.0 try again later")
                    continue
                self._send("354 End data with <CR><LF>.<CR><LF>")
                chunks = []
                while True:
                    d = self.rfile.readline()
                    if d in (b".\r\n", b".\n", b""):
                        break
                    chunks.append(d[1:] if d.startswith(b"..") else d)
                st.messages.append(Received(mail_from, rcpts, b"".join(chunks), user, tls))
                self._send("250 OK: queued")
            elif cmd in ("RSET", "NOOP"):
                self._send("250 OK")
            elif cmd == "QUIT":
                self._send("221 Bye")
                return
            else:
                self._send("502 5.5.2 Command not recognised")


class _SmtpTcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _SmtpState


class SmtpServer:
    """A local SMTP server for the reminder tests. `messages` holds what it accepted."""

    def __init__(self, credentials: tuple[str, str] | None = None,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self._srv = _SmtpTcp(("127.0.0.1", 0), _SmtpHandler)
        self._srv.state = _SmtpState(credentials=credentials, tls_context=tls_context)
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._srv.server_address[1])

    @property
    def messages(self) -> list[Received]:
        return self._srv.state.messages

    @property
    def state(self) -> _SmtpState:
        return self._srv.state

    def __enter__(self) -> SmtpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._srv.shutdown()
        self._srv.server_close()


def self_signed_context(tmp_dir: str) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1, and the CA file to trust it."""
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(tmp_dir, "smtp.crt"), os.path.join(tmp_dir, "smtp.key")
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, cert_path


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
