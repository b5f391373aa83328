"""resilient-proxy: a caching reverse proxy that keeps websites working when their APIs fail."""
