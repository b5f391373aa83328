"""The fake vendor: a stand-in for somebody else's HTTP API, as a real aiohttp server.

One vendor for the demo, the tests and the benchmarks (issue 13); each takes the parts it needs
from one app factory, `build_vendor_app`:
- `resilient-proxy demo` (proxy/demo.py): the shop API (prices, catalogue, bookings, health) and
  the failure modes switched at runtime (`POST /__vendor/mode`); tests/e2e drive it so.
- the benchmarks (benchmarks/origin.py, a CLI over it in its own process): fixed-size JSON items,
  the same switch and counters, kept as light as a plain aiohttp app.
- the tests (tests/origin.py, fixture `origin`): replies scripted per path (`always`, `then`,
  `respond`), every request recorded (`seen`) and counted, waits by event (`reached`).

Modules: `script` (a reply and a request as the vendor saw them; writing a reply), `state` (the
`Vendor`: script, mode, counters, bookings), `items` and `shop` (the built-in endpoints), `app`
(the factory, the control endpoints, and the order every request goes through).

Must not: be imported by the proxy's request path or anything it serves (tests/architecture.py
enforces it: only `proxy.demo` may import it). It is somebody else's server, on loopback only.
"""

from proxy.vendor.app import build_vendor_app
from proxy.vendor.items import Items, make_body
from proxy.vendor.script import Reply, Seen
from proxy.vendor.state import MODES, Vendor

__all__ = ["MODES", "Items", "Reply", "Seen", "Vendor", "build_vendor_app", "make_body"]
