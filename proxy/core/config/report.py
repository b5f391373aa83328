"""Human-readable summaries of a loaded config, for `check` and the logs at start.

Owns: the text tables `check` prints. Must not: print secrets (header values are never shown).
"""

from __future__ import annotations

from proxy.core.config.model import Config


def _fmt(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:g}s"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe(config: Config) -> str:
    ups = [["upstream", "url", "owner", "timeout", "breaker", "health"]]
    for up in config.upstreams:
        cb = up.circuit_breaker
        ups.append(
            [
                up.name,
                up.url,
                up.owner or "-",
                _fmt(up.timeout.total),
                f"{cb.failure_rate:.0%} of {cb.minimum_calls}/{_fmt(cb.window)}",
                up.health_check.path if up.health_check else "-",
            ]
        )
    routes = [["route", "match", "methods", "upstream", "ttl", "swr", "sie", "slow", "guards"]]
    for r in config.routes:
        c = r.cache
        routes.append(
            [
                r.name,
                r.match.text,
                "*" if r.any_method else ",".join(sorted(r.methods)),
                r.upstream,
                _fmt(c.ttl) if c else "off",
                _fmt(c.stale_while_revalidate) if c else "-",
                _fmt(c.stale_if_error) if c else "-",
                _fmt(c.stale_if_slow) if c else "-",  # the latency budget (issue 16)
                str(len(r.guards)) or "-",
            ]
        )
    out = [
        f"{config.path}: OK",
        "",
        table(ups),
        "",
        table(routes),
        "",
        f"listen {config.server.listen}  admin {config.admin.listen if config.admin.enabled else 'off'}"
        f"  cache {config.cache.backend} {config.cache.max_bytes // (1024 * 1024)}MB",
    ]
    out += [f"note: {n}" for n in config.notices]
    return "\n".join(out)
