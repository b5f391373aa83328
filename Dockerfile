# resilient-proxy: one instance per container; scale with replicas (see compose.yaml).
# Build: docker build -t resilient-proxy .   Run: docker run -p 8080:8080 resilient-proxy
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PROXY_LISTEN=0.0.0.0:8080 \
    PROXY_SNAPSHOT=/var/lib/resilient-proxy/lkg.msgpack

# A fixed numeric uid/gid so orchestrators can verify runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 proxy \
 && useradd --system --uid 10001 --gid proxy --no-create-home --shell /usr/sbin/nologin proxy \
 && mkdir -p /var/lib/resilient-proxy /etc/resilient-proxy \
 && chown proxy:proxy /var/lib/resilient-proxy

WORKDIR /src
COPY pyproject.toml README.md setup.py ./
COPY build_backend ./build_backend
COPY proxy ./proxy
# The request path compiled by mypyc (setup.py): less than half the instructions per miss. The
# compiler is needed only to build, and removed in the same layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && RPROXY_USE_MYPYC=1 pip install . \
 && apt-get purge -y --auto-remove gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* /src

# The example config runs as is; mount your own over it (compose.yaml mounts config/docker.yaml).
# PROXY_LISTEN above makes it listen on all interfaces inside the container.
COPY config/example.yaml /etc/resilient-proxy/proxy.yaml

USER 10001:10001
WORKDIR /var/lib/resilient-proxy
EXPOSE 8080

# The HEALTHCHECK asks admin /health on loopback (example.yaml keeps admin there; docker.yaml
# listens on the container's interfaces, with a token, for Prometheus); slim images have no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9901/health', timeout=2).status == 200 else 1)"]

# SIGTERM drains in-flight requests within server.shutdown_grace, then exits 0.
STOPSIGNAL SIGTERM
CMD ["resilient-proxy", "run", "--config", "/etc/resilient-proxy/proxy.yaml"]
