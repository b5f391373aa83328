"""The declaration of every configuration key: path, type, default, unit and one line of meaning.

Owns: the one table the reader (`document`, `upstreams`, `routes`) takes its allowed keys from
(so an undeclared key is "unknown key" in `check`), and that docs/configuration.md and
docs/config.schema.json are generated from (`reference`). Adding a key is one `Key(...)` line here
plus reading it; the reference, the schema and the unknown-key check follow.
Must not: read YAML or know how a value is parsed (`reader` does units; `document`, `upstreams`
and `routes` the meaning).

Paths: `section.key`; `upstreams.*` is any upstream name; `routes[]` any route; a key of type
`mapping` or `list` with children declares its members under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Value types, as the reference names them and the schema checks them.
TYPES: Final = (
    "string",
    "integer",
    "number",
    "boolean",
    "duration",
    "size",
    "percent",
    "host:port",
    "url",
    "enum",
    "mapping",
    "list",
    "headers",
    "any",
)


@dataclass(frozen=True, slots=True)
class Key:
    path: str
    type: str
    default: str  # as written in YAML; "-" when there is none (unset or required)
    doc: str
    unit: str = ""
    choices: tuple[str, ...] = ()  # for enum, and for values a section also accepts ("off")
    required: bool = False

    @property
    def parent(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]


_D: Final = "duration"
K: Final = Key
KEYS: tuple[Key, ...] = (
    # -- server ----------------------------------------------------------------------------
    K("server", "mapping", "-", "The public listener and its worker processes."),
    K("server.listen", "host:port", "127.0.0.1:8080", "Address and port of the public listener."),
    K(
        "server.workers",
        "integer",
        "1",
        "Serving processes sharing the port; `auto`: one per core.",
        "",
        ("auto",),
    ),
    K("server.tls", "mapping", "-", "Serve HTTPS on the public listener (both files needed)."),
    K("server.tls.cert_file", "string", "-", "PEM certificate chain file."),
    K("server.tls.key_file", "string", "-", "PEM private key file."),
    K("server.shutdown_grace", _D, "10s", "On SIGTERM, how long in-flight requests may finish.", "s"),
    K("server.max_body", "size", "1MB", "Largest request body accepted (per route: max_body).", "bytes"),
    K("server.limits", "mapping", "-", "Connection limits on the public listener."),
    K("server.limits.per_client", "integer", "1024", "Open connections per client address."),
    K("server.limits.total", "integer", "10000", "Open connections in total."),
    K("server.limits.header_timeout", _D, "10s", "Time a client has to send the request head.", "s"),
    K("server.limits.body_timeout", _D, "30s", "Time a client has to send the request body.", "s"),
    K(
        "server.limits.send_timeout",
        _D,
        "60s",
        "Time a client has to take some bytes of the answers waiting for it; then it is cut.",
        "s",
    ),
    # -- admin -----------------------------------------------------------------------------
    K(
        "admin",
        "mapping",
        "-",
        "The admin listener (health, metrics, status, purge...); `off`.",
        "",
        ("off",),
    ),
    K("admin.listen", "host:port", "127.0.0.1:9901", "Admin address; off loopback it needs a token."),
    K("admin.token", "string", '""', "Bearer token for mutating calls and GET /config."),
    # -- cache -----------------------------------------------------------------------------
    K("cache", "mapping", "-", "Where answers are stored."),
    K(
        "cache.backend",
        "enum",
        "memory",
        "`memory`, or `redis`: memory (L1) in front of Redis (L2).",
        "",
        ("memory", "redis"),
    ),
    K("cache.max_bytes", "size", "256MB", "Memory tier size; least recently used entries go first.", "bytes"),
    K("cache.snapshot", "string", "-", "File of last-known-good entries, loaded before ready."),
    K("cache.snapshot_interval", _D, "60s", "How often the snapshot file is written.", "s"),
    K(
        "cache.targeted_fields",
        "list",
        "[Resilient-Proxy-Cache-Control, CDN-Cache-Control]",
        "Fields obeyed instead of Cache-Control and Expires, first valid wins (RFC 9213); `[]`: none.",
    ),
    K("cache.redis", "mapping", "-", "The shared tier (cache.backend: redis)."),
    K("cache.redis.url", "url", "redis://127.0.0.1:6379/0", "Redis URL; a password goes in userinfo."),
    K("cache.redis.namespace", "string", "rproxy", "Prefix of every key in Redis."),
    K("cache.redis.timeout", _D, "100ms", "Per Redis call; slower counts as down.", "s"),
    # -- log -------------------------------------------------------------------------------
    K("log", "mapping", "-", "Logs: JSON event lines on stderr, JSON access lines."),
    K("log.level", "enum", "info", "Event log level.", "", ("debug", "info", "warning", "error")),
    K("log.access", "string", "stdout", "Access log: `stdout`, `stderr`, a file path, or `off`."),
    K("log.redact_params", "list", "[]", "Extra query parameter names to redact (patterns always apply)."),
    # -- alerts ----------------------------------------------------------------------------
    K("alerts", "mapping", "-", "Where breaker and data alerts are posted."),
    K("alerts.webhook", "url", "-", "Webhook URL (JSON POST); shown redacted in GET /config."),
    # -- upstreams -------------------------------------------------------------------------
    K("upstreams", "mapping", "-", "The APIs behind the proxy, by name.", required=True),
    K("upstreams.*", "mapping", "-", "One upstream; its name is what routes refer to."),
    K("upstreams.*.url", "url", "-", "Base URL; its path (`/v2`) prefixes every call.", required=True),
    K("upstreams.*.owner", "string", '""', "Whom to call when it breaks (doctor, inventory, alerts)."),
    K("upstreams.*.docs", "url", '""', "The vendor's API documentation."),
    K("upstreams.*.tls", "mapping", "-", "TLS toward the upstream."),
    K("upstreams.*.tls.verify", "boolean", "true", "Verify the upstream's certificate."),
    K("upstreams.*.tls.ca_file", "string", "-", "CA bundle to verify it with."),
    K("upstreams.*.headers", "headers", "{}", "Headers sent on every call (credentials: use ${VAR:?})."),
    K(
        "upstreams.*.forward_headers",
        "list",
        "[]",
        "Unkeyed client headers forwarded on cached routes (keyed and Vary ones always are).",
    ),
    K("upstreams.*.timeout", "mapping", "-", "Timeouts of one try."),
    K("upstreams.*.timeout.connect", _D, "1s", "TCP (and TLS) connect.", "s"),
    K("upstreams.*.timeout.total", _D, "5s", "The whole try, connect to last byte.", "s"),
    K("upstreams.*.retries", "mapping", "-", "Retries of safe methods; `off`.", "", ("off",)),
    K(
        "upstreams.*.retries.attempts",
        "integer",
        "2",
        "Retries after the first try (GET/HEAD, or Idempotency-Key).",
    ),
    K("upstreams.*.retries.backoff", _D, "100ms", "Base of the exponential backoff.", "s"),
    K("upstreams.*.retries.max_backoff", _D, "2s", "Cap of the backoff, before jitter.", "s"),
    K("upstreams.*.max_connections", "integer", "100", "Concurrent calls (bulkhead)."),
    K(
        "upstreams.*.max_queue",
        "integer",
        "10000",
        "Calls waiting for a connection, each at most its total timeout; beyond: 503.",
    ),
    K("upstreams.*.rate_limit", "mapping", "-", "Token bucket toward the upstream."),
    K(
        "upstreams.*.rate_limit.per_second",
        "number",
        "-",
        "Sustained calls per second.",
        "1/s",
        required=True,
    ),
    K("upstreams.*.rate_limit.burst", "integer", "per_second", "Bucket size."),
    K("upstreams.*.circuit_breaker", "mapping", "-", "When to stop calling a failing upstream."),
    K(
        "upstreams.*.circuit_breaker.failure_rate",
        "percent",
        "50%",
        "Opens at this share of failed calls.",
        "%",
    ),
    K(
        "upstreams.*.circuit_breaker.minimum_calls",
        "integer",
        "10",
        "Never opens on fewer calls in the window.",
    ),
    K("upstreams.*.circuit_breaker.window", _D, "30s", "Sliding window of outcomes.", "s"),
    K("upstreams.*.circuit_breaker.slow_call", _D, "-", "A call at least this slow counts as failed.", "s"),
    K("upstreams.*.circuit_breaker.open_for", _D, "15s", "Open this long, then half-open.", "s"),
    K("upstreams.*.circuit_breaker.half_open_probes", "integer", "1", "Trial calls at once when half-open."),
    K("upstreams.*.health_check", "mapping", "-", "Active health checks (GET url + path)."),
    K("upstreams.*.health_check.path", "string", "/", "Path below the upstream URL."),
    K("upstreams.*.health_check.interval", _D, "10s", "Time between checks.", "s"),
    K("upstreams.*.health_check.timeout", _D, "2s", "A slower answer is a failed check.", "s"),
    K(
        "upstreams.*.health_check.unhealthy_after",
        "integer",
        "3",
        "Failed checks in a row to mark unhealthy.",
    ),
    K("upstreams.*.health_check.healthy_after", "integer", "2", "Passed checks in a row to mark healthy."),
    K("upstreams.*.version_header", "string", "-", "Header naming the API version (inventory)."),
    # -- routes ----------------------------------------------------------------------------
    K("routes", "list", "-", "Request patterns, first match wins.", required=True),
    K("routes[].name", "string", "-", "Unique name (metrics, logs, purge).", required=True),
    K(
        "routes[].match",
        "string",
        "-",
        "Path pattern: `/api/prices/{sku}`, `/api/catalogue/*`.",
        required=True,
    ),
    K("routes[].methods", "list", "*", "Methods allowed, others get 405; `*`: all, extension ones too."),
    K("routes[].upstream", "string", "-", "Name of the upstream to call.", required=True),
    K("routes[].rewrite", "string", "-", "Upstream path, with the match's `{params}` and `*`."),
    K("routes[].sample", "string", "-", "A request path `doctor` probes for this route."),
    K("routes[].cache", "mapping", "off", "Caching of GET/HEAD answers; `off`.", "", ("off",)),
    K("routes[].cache.ttl", _D, "0s", "Freshness when the upstream sends none.", "s"),
    K("routes[].cache.force_ttl", "boolean", "false", "Use ttl even when the upstream says otherwise."),
    K("routes[].cache.stale_while_revalidate", _D, "0s", "Serve stale while one refresh runs.", "s"),
    K("routes[].cache.stale_if_error", _D, "0s", "Serve stale when the upstream fails.", "s"),
    K(
        "routes[].cache.stale_if_slow",
        _D,
        "off",
        "Answer with a stale-if-error/last-known-good copy after this long without a vendor answer.",
        "s",
        ("off",),
    ),
    K("routes[].cache.key", "mapping", "-", "What the cache key is made of."),
    K("routes[].cache.key.query", "any", "all", "`all`, `none`, or a list of parameter names."),
    K("routes[].cache.key.headers", "list", "[]", "Request headers that are part of the key."),
    K("routes[].cache.share_authorized", "boolean", "false", "Store answers to requests with Authorization."),
    K("routes[].cache.store_set_cookie", "boolean", "false", "Store answers that set cookies."),
    K("routes[].cache.lkg_max_age", _D, "7d", "How long a last-known-good copy is kept.", "s"),
    K("routes[].cache.lock_timeout", _D, "5s", "Longest wait on a coalesced fetch.", "s"),
    K("routes[].cache.targeted_fields", "list", "cache.targeted_fields", "RFC 9213 target list."),
    K(
        "routes[].cache.heuristic",
        "mapping",
        "-",
        "Freshness guessed from Last-Modified when none is given (RFC 9111 4.2.2); `on`, `off`.",
        "",
        ("on", "off"),
    ),
    K("routes[].cache.heuristic.fraction", "percent", "10%", "Of the time since Last-Modified.", "%"),
    K("routes[].cache.heuristic.max", _D, "1d", "Cap of a guessed lifetime.", "s"),
    K(
        "routes[].guards",
        "list",
        "[]",
        "Data checks on 2xx JSON: `{path: $.price, gt: 0}`, `{required: [...]}`.",
    ),
    K("routes[].confirm_after", "integer", "3", "Identical refusals before a relative guard accepts."),
    K("routes[].guards_trip_breaker", "boolean", "false", "Count refused data as breaker failures."),
    K(
        "routes[].guards_oversize",
        "enum",
        "reject",
        "A 2xx body over max_object_size on a guarded route: refused, or passed unchecked.",
        "",
        ("reject", "pass"),
    ),
    K(
        "routes[].upstream_errors",
        "enum",
        "replace",
        "A vendor 5xx/429 with no usable copy: replaced by our JSON 502, or passed on as sent.",
        "",
        ("replace", "pass"),
    ),
    K(
        "routes[].fallback",
        "mapping",
        "-",
        "Answer to a failed read with nothing usable cached (X-Cache: FALLBACK); never to a write.",
    ),
    K("routes[].fallback.status", "integer", "503", "Its HTTP status (503 and 429 carry Retry-After)."),
    K("routes[].fallback.json", "any", "-", "A JSON body (or `body` + `content_type`)."),
    K("routes[].fallback.body", "string", "-", "A text body."),
    K("routes[].fallback.content_type", "string", "text/plain", "Content-Type of `body`."),
    K("routes[].max_object_size", "size", "8MB", "Largest answer stored.", "bytes"),
    K("routes[].max_body", "size", "server.max_body", "Largest request body on this route.", "bytes"),
    K("routes[].timeout", "mapping", "-", "Timeouts of one try on this route (as the upstream's)."),
    K("routes[].timeout.connect", _D, "upstream's", "TCP (and TLS) connect.", "s"),
    K("routes[].timeout.total", _D, "upstream's", "The whole try.", "s"),
)
BY_PATH: Final = {k.path: k for k in KEYS}


def children(path: str) -> tuple[str, ...]:
    """The declared key names directly under `path` ("" is the top level), in table order."""
    if not path:
        return tuple(k.path for k in KEYS if "." not in k.path and "[" not in k.path)
    prefix = path + "."
    names = (k.path[len(prefix) :] for k in KEYS if k.path.startswith(prefix))
    return tuple(n for n in names if "." not in n and n != "*")
