"""The emulated portal as a plain ASGI application, and its Python-side controls.

Request path: leaky bucket (503) -> injected faults before running -> parameters -> method
lookup (404, before auth) -> auth (401) -> scope / operating limit -> method -> injected
faults after running -> PHP-style JSON. Each request runs under one lock, so the SQLite store
sees one request at a time; only the modelled latency is awaited outside it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import anyio

from . import errors
from .auth import Auth, OAuthError
from .batch import batch_handler
from .batch_import import register_batch_import
from .config import EmulatorConfig
from .crm import register_crm
from .crm_activity_app import register_activity_app
from .engine import Caller, Engine, Timeline
from .entities import ENTITIES
from .faults import DroppedConnection, FaultInjector, html_page
from .im import register_im
from .im_dialogs import register_im_dialogs
from .im_people import register_im_people
from .limits import LeakyBucket
from .php import PhpKey, php_encode_json, php_str
from .platform import register_platform
from .query import build_where
from .request import collect_params
from .seed import seed_defaults, seed_entity, seed_users
from .stats import Stats
from .store import Store
from .tasks import register_tasks
from .telephony import register_telephony
from .timeman import register_timeman
from .users import register_users

__all__ = ["Emulator"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_TYPE = b"application/json; charset=utf-8"


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: bytes = _JSON_TYPE
    drop: bool = False
    delay: float = 0.0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class Emulator:
    """One emulated Bitrix24 portal. ``emu.app`` is the ASGI callable."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        cfg = self.config
        self.lock = threading.RLock()
        self.store = Store(cfg.database, self.lock)
        self.stats = Stats()
        self.engine = Engine(cfg, self.store, self.stats, self.lock)
        register_crm(self.engine)
        register_activity_app(self.engine)  # after crm: it builds on the activity methods
        register_users(self.engine)
        register_tasks(self.engine)
        register_platform(self.engine)
        register_im_dialogs(self.engine, register_im(self.engine))
        register_im_people(self.engine)
        register_timeman(self.engine)
        register_telephony(self.engine)
        register_batch_import(self.engine)
        self.engine.register("batch", batch_handler, None)
        self.bucket = LeakyBucket(
            cfg.effective_burst, cfg.effective_drain, cfg.clock, cfg.rate_count_rejected
        )
        self.auth = Auth(cfg, cfg.clock)
        self.faults = FaultInjector(cfg.faults)
        now = cfg.clock()
        seed_defaults(self.store, cfg.tz, now)
        seed_users(self.store, cfg.seed_users, cfg.seed, cfg.tz, now)
        for name, count in (
            ("lead", cfg.seed_leads),
            ("contact", cfg.seed_contacts),
            ("company", cfg.seed_companies),
            ("deal", cfg.seed_deals),
        ):
            seed_entity(self.store, name, count, cfg.seed, cfg.tz, now)

    # -- Python-side controls ---------------------------------------------------------------

    @property
    def app(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """The ASGI application (use with ``httpx.ASGITransport`` or uvicorn).

        It is the emulator itself: servers that sniff the ASGI version see an object whose
        ``__call__`` is a coroutine function, i.e. ASGI 3.
        """
        return self

    def webhook_url(self, base: str = "http://testserver") -> str:
        """The default webhook's base URL, e.g. ``http://testserver/rest/1/<code>/``."""
        cfg = self.config
        return f"{base.rstrip('/')}/rest/{cfg.webhook_user_id}/{cfg.webhook_code}/"

    def oauth_url(self, base: str = "http://testserver") -> str:
        """The OAuth-form base URL (``/rest/``); the token goes in ``auth``."""
        return f"{base.rstrip('/')}/rest/"

    def reset_stats(self) -> None:
        """Zero every counter."""
        with self.lock:
            self.stats.reset()

    def reset_limits(self) -> None:
        """Empty the leaky bucket and forget operating-time charges."""
        with self.lock:
            self.bucket.reset()
            self.engine.limiter.reset()

    def issue_oauth_token(
        self, user_id: int = 1, scopes: frozenset[str] | None = None, base: str = ""
    ) -> dict[str, Any]:
        """A new OAuth access/refresh pair, as the OAuth server's JSON."""
        with self.lock:
            endpoint = f"{base.rstrip('/')}/rest/" if base else ""
            return self.auth.issue(user_id, scopes, endpoint)

    def issue_oauth_code(self, user_id: int = 1, scopes: frozenset[str] | None = None) -> str:
        """A one-time ``authorization_code`` for ``/oauth/token/`` (lives ``oauth_code_ttl``)."""
        with self.lock:
            return self.auth.issue_code(user_id, scopes)

    def expire_access_tokens(self) -> None:
        """Make every current access token answer ``expired_token``."""
        with self.lock:
            self.auth.expire_all()

    def add_webhook(self, code: str, user_id: int = 1, scopes: frozenset[str] | None = None) -> str:
        """Register another webhook; returns its path part ``rest/<user>/<code>/``."""
        with self.lock:
            self.auth.add_webhook(user_id, code, scopes)
        return f"rest/{user_id}/{code}/"

    def seed(self, entity: str, count: int, seed: int | None = None) -> None:
        """Generate ``count`` more records of ``entity`` (lead, contact, company, deal)."""
        with self.lock:
            cfg = self.config
            seed_entity(
                self.store, entity, count, cfg.seed if seed is None else seed, cfg.tz, cfg.clock()
            )

    def count(self, entity: str, filter: dict[str, Any] | None = None) -> int:
        """How many records of ``entity`` match a Bitrix-style filter."""
        table, where, args = self._where(entity, filter)
        return self.store.count(table, where, args)

    def records(self, entity: str, filter: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Stored rows of ``entity`` (raw column values), ordered by ID."""
        table, where, args = self._where(entity, filter)
        return self.store.select(table, where, args)

    def duplicates(self, entity: str, field: str = "TITLE") -> dict[str, int]:
        """Values of ``field`` held by more than one record (value -> count)."""
        if field not in ENTITIES[entity].by_name:
            raise ValueError(f"{entity} has no field {field}")
        sql = (
            f'SELECT "{field}", COUNT(*) FROM {ENTITIES[entity].table} '
            f'WHERE "{field}" IS NOT NULL GROUP BY "{field}" HAVING COUNT(*) > 1'
        )
        with self.lock:
            rows = self.store.db.execute(sql).fetchall()
        return {php_str(r[0]): int(r[1]) for r in rows}

    def _where(self, entity: str, filter: dict[str, Any] | None) -> tuple[str, str, list[Any]]:
        from .crm import _resolver  # the same resolver the list methods use

        definition = ENTITIES[entity]
        where, args = build_where(filter or {}, _resolver(definition))
        return definition.table, where, args

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point (HTTP and lifespan)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        response = self.handle(
            scope["method"],
            scope["path"],
            scope.get("query_string", b""),
            headers,
            b"".join(chunks),
        )
        if response.delay > 0:
            await anyio.sleep(response.delay)
        start: Message = {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                (b"content-type", response.content_type),
                (b"content-length", str(len(response.body)).encode()),
                (b"access-control-allow-origin", b"*"),
                *response.headers,
            ],
        }
        await send(start)
        if response.drop:
            raise DroppedConnection()
        await send({"type": "http.response.body", "body": response.body})

    # -- request handling (synchronous, under the lock) -------------------------------------

    def handle(
        self, http_method: str, path: str, query: bytes, headers: dict[str, str], body: bytes
    ) -> _Response:
        """Answer one HTTP request (everything but the awaited delay)."""
        if path.startswith("/rest/") or path == "/rest":
            with self.lock:
                response = self._rest(http_method, path, query, headers, body)
                if not response.drop:
                    self.stats.statuses[response.status] += 1
            return response
        if path.rstrip("/") == "/oauth/token":
            with self.lock:
                return self._oauth(http_method, query, headers, body)
        if path.rstrip("/") == "/oauth/authorize":
            with self.lock:
                return self._authorize(http_method, query, headers, body)
        if path.startswith("/_emulator/"):
            with self.lock:
                return self._control(http_method, path, query, headers, body)
        return _Response(404, html_page(404), b"text/html")

    def _json(self, status: int, payload: Any) -> _Response:
        text = php_encode_json(payload, self.config.php_json_escapes)
        return _Response(status, text.encode("utf-8"))

    def _error(self, error: errors.RestError) -> _Response:
        return self._json(error.status, error.body())

    def _rest(
        self, http_method: str, path: str, query: bytes, headers: dict[str, str], body: bytes
    ) -> _Response:
        cfg = self.config
        self.stats.requests += 1
        if cfg.rate_limit and not self.bucket.try_acquire():
            self.stats.query_limit_exceeded += 1
            return self._error(errors.query_limit_exceeded())
        parts = [p for p in path[len("/rest") :].split("/") if p]
        method = parts[-1] if parts else ""
        plan = self.faults.draw(_strip_suffix(method))
        delay = cfg.faults.slow_seconds if plan.slow else 0.0
        if plan.slow:
            self.stats.faults["slow"] += 1
        if plan.pre is not None:
            self.stats.faults[plan.pre] += 1
            if plan.pre == "html_5xx":
                return _Response(
                    cfg.faults.html_status,
                    html_page(cfg.faults.html_status),
                    b"text/html",
                    delay=delay,
                )
            if plan.pre == "unavailable_503":
                response = self._error(errors.query_limit_exceeded())
                response.delay = delay
                return response
            return _Response(200, b"", drop=True, delay=delay)
        timeline = Timeline(cfg.clock(), cfg.request_time_limit)
        response = self._dispatch(http_method, parts, query, headers, body, timeline)
        with self.lock:
            self.engine.settle(timeline)
        elapsed = timeline.cursor - timeline.start
        if timeline.timed_out and timeline.limit is not None:
            # What ran before the cap stays done; the client learns nothing of it.
            self.stats.request_timeouts += 1
            response = self._error(errors.internal_server_error())
            elapsed = timeline.limit
        response.delay = delay + elapsed * cfg.time_scale
        if plan.post is not None:
            self.stats.faults[plan.post] += 1
            status = cfg.faults.fail_after_run_status
            if plan.post == "fail_after_run":
                return _Response(status, html_page(status), b"text/html", delay=response.delay)
            response.drop = True
        return response

    def _dispatch(
        self,
        http_method: str,
        parts: list[str],
        query: bytes,
        headers: dict[str, str],
        body: bytes,
        timeline: Timeline,
    ) -> _Response:
        if len(parts) not in (1, 3):
            return self._error(errors.method_not_found())
        method = _strip_suffix(parts[-1])
        params = collect_params(http_method, query, headers, body, self.config.max_input_vars)
        spec = self.engine.lookup(method)
        if spec is None:
            return self._error(errors.method_not_found())
        try:
            caller = self._authenticate(parts, params, headers)
        except errors.RestError as exc:
            return self._error(exc)
        for name in ("auth", "access_token") if caller.kind == "oauth" else ():
            params.pop(name, None)
        outcome = self.engine.call_spec(spec, params, caller, timeline)
        if outcome.error is not None:
            return self._error(outcome.error)
        payload: dict[str, Any] = {"result": outcome.result}
        if outcome.next is not None:
            payload["next"] = outcome.next
        if outcome.total is not None:
            payload["total"] = outcome.total
        payload["time"] = outcome.time
        return self._json(200, payload)

    def _authenticate(
        self, parts: list[str], params: dict[PhpKey, Any], headers: dict[str, str]
    ) -> Caller:
        if len(parts) == 3:
            return self.auth.webhook_caller(parts[0], parts[1])
        token: Any = params.get("auth") or params.get("access_token")
        if not token:
            header = headers.get("authorization", "")
            if header.lower().startswith("bearer "):
                token = header[7:].strip()
        return self.auth.oauth_caller(php_str(token) if isinstance(token, str) else None)

    def _oauth(
        self, http_method: str, query: bytes, headers: dict[str, str], body: bytes
    ) -> _Response:
        params = collect_params(http_method, query, headers, body, self.config.max_input_vars)
        host = headers.get("host", self.config.domain)
        try:
            payload = self.auth.token(params, f"http://{host}/rest/")
        except OAuthError as exc:
            body_out: dict[str, str] = {"error": exc.code}
            if exc.description:
                body_out["error_description"] = exc.description
            return _Response(exc.status, json.dumps(body_out).encode())
        if php_str(params.get("grant_type", "")) == "refresh_token":
            self.stats.oauth_refreshes += 1
        else:
            self.stats.oauth_codes_exchanged += 1
        return self._json(200, payload)

    def _authorize(
        self, http_method: str, query: bytes, headers: dict[str, str], body: bytes
    ) -> _Response:
        """``/oauth/authorize/?client_id=..``: the portal's consent step, already consented.

        Issues a one-time code for user 1; with ``redirect_uri`` it answers 302 to it (the
        emulator itself never follows it), otherwise 200 with the same values as JSON.
        """
        params = collect_params(http_method, query, headers, body, self.config.max_input_vars)
        cfg = self.config
        if php_str(params.get("client_id", "")) != cfg.oauth_client_id:
            # Answered as the token endpoint answers an unknown application.
            return _Response(200, b'{"error":"wrong_client"}', b"application/json")
        redirect = php_str(params.get("redirect_uri", ""))
        if redirect and not _allowed_redirect(redirect, cfg.oauth_redirect_uris):
            # Never a code to an address the application did not register.
            body_text = b'{"error":"invalid_request","error_description":"Wrong redirect_uri"}'
            return _Response(400, body_text, b"application/json")
        scopes = cfg.oauth_scopes
        values = {
            "code": self.auth.issue_code(),
            "state": php_str(params.get("state", "")),
            "domain": headers.get("host", cfg.domain),
            "member_id": self.auth.member_id,
            "scope": ",".join(sorted(scopes)) if scopes is not None else "app",
            "server_domain": "oauth.bitrix.info",
        }
        if redirect:
            parts = urlsplit(redirect)
            query_text = f"{parts.query}&{urlencode(values)}" if parts.query else urlencode(values)
            location = urlunsplit(parts._replace(query=query_text)).encode("ascii")
            return _Response(302, b"", b"text/plain", headers=[(b"location", location)])
        return _Response(200, json.dumps(values).encode(), b"application/json")

    def _control(
        self, http_method: str, path: str, query: bytes, headers: dict[str, str], body: bytes
    ) -> _Response:
        action = path[len("/_emulator/") :].strip("/")
        plain = b"application/json"
        if action == "stats":
            return _Response(200, json.dumps(self.stats.as_dict()).encode(), plain)
        if http_method != "POST":
            return _Response(405, b'{"error":"use POST"}', plain)
        if action == "reset":
            self.stats.reset()
            self.bucket.reset()
            self.engine.limiter.reset()
            return _Response(200, b'{"ok":true}', plain)
        if action == "oauth/issue":
            host = headers.get("host", self.config.domain)
            tokens = self.auth.issue(client_endpoint=f"http://{host}/rest/")
            return _Response(200, json.dumps(tokens).encode(), plain)
        if action == "oauth/code":
            code = self.auth.issue_code()
            return _Response(200, json.dumps({"code": code}).encode(), plain)
        if action == "oauth/expire":
            self.auth.expire_all()
            return _Response(200, b'{"ok":true}', plain)
        return _Response(404, b'{"error":"unknown control"}', plain)


def _strip_suffix(method: str) -> str:
    """``crm.lead.get.json`` -> ``crm.lead.get`` (only an exact ``json``/``xml`` segment)."""
    head, _, suffix = method.rpartition(".")
    return head if head and suffix in ("json", "xml") else method


def _allowed_redirect(uri: str, registered: frozenset[str]) -> bool:
    """Whether ``/oauth/authorize/`` may send a code to `uri`: a registered handler, or
    http(s) to this machine; never text with control characters or non-ASCII (a header)."""
    if not uri.isascii() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in uri):
        return False
    if uri in registered:
        return True
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host in ("127.0.0.1", "::1", "localhost")
