"""Route blocks most test configs share, as YAML text to concatenate into a `routes:` list."""

from __future__ import annotations

# The cached price lookup; a test appends its own `cache:` (and guards, timeouts...) lines.
PRICES = """\
  - name: prices
    match: /api/prices/{sku}
    methods: [GET, HEAD]
    upstream: vendor
    rewrite: /prices/{sku}
"""

# Writes to the same URLs, never cached; a test may append `max_body:` and the like.
WRITES = """\
  - name: writes
    match: /api/prices/{sku}
    methods: [POST, PUT, PATCH, DELETE]
    upstream: vendor
    rewrite: /prices/{sku}
    cache: off
"""

# A catalogue lookup (a list of items); a test appends its own `cache:` and `guards:` lines.
CATALOGUE = """\
  - name: catalogue
    match: /api/catalogue/{name}
    methods: [GET, HEAD]
    upstream: vendor
    rewrite: /catalogue/{name}
"""
