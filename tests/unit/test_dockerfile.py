"""The Dockerfile and compose example, checked without a Docker engine.

What can be tested here: the command the image runs is the real CLI and accepts the config the
image ships, the user is not root, the healthcheck's exit status follows /health, every file the
build copies exists and is not excluded by .dockerignore, and the compose replicas get a valid
redis-backed config that points at the compose Redis.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from proxy.__main__ import main
from proxy.config import ConfigError, load_config
from tests.origin import Origin, Reply, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
CONFIG_IN_IMAGE = "/etc/resilient-proxy/proxy.yaml"
HEALTH_URL = "http://127.0.0.1:9901/health"


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def args_of(name: str) -> list[str]:
    return [rest for word, rest in instructions() if word == name]


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in args_of("ENV"):
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY that reads the build context."""
    out = []
    for rest in args_of("COPY"):
        words = shlex.split(rest)
        if any(w.startswith("--from") for w in words):
            continue  # from another stage, not the build context
        parts = [w for w in words if not w.startswith("--")]
        out.append((parts[:-1], parts[-1]))
    return out


def copied_config_source() -> Path:
    sources = [src for srcs, dest in copies() if dest == CONFIG_IN_IMAGE for src in srcs]
    assert len(sources) == 1, f"exactly one COPY must provide {CONFIG_IN_IMAGE}"
    return ROOT / sources[0]


def test_base_image_is_a_slim_python() -> None:
    (base,) = args_of("FROM")
    assert re.fullmatch(r"python:3\.1[1-9]-slim", base)


def test_runs_as_a_non_root_user_before_the_command() -> None:
    order = [word for word, _ in instructions()]
    users = args_of("USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert max(i for i, w in enumerate(order) if w == "USER") < order.index("CMD")
    uid = re.search(r"useradd\b.*--uid (\d+)", " ".join(args_of("RUN")))
    assert uid is not None and uid.group(1) == user


def test_cmd_is_the_real_cli_with_the_image_config(monkeypatch: pytest.MonkeyPatch) -> None:
    (cmd,) = args_of("CMD")
    argv = exec_form(cmd)
    assert argv == ["resilient-proxy", "run", "--config", CONFIG_IN_IMAGE]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[argv[0]] == "proxy.__main__:main"
    # `check` takes the same arguments as `run` and exits 0 only for a config that would run.
    for key, value in dockerfile_env().items():
        monkeypatch.setenv(key, value)
    assert main(["check", *argv[2:-1], str(copied_config_source())]) == 0


def test_the_shipped_config_listens_where_the_image_says() -> None:
    config = load_config(str(copied_config_source()), env=dockerfile_env())
    (exposed,) = args_of("EXPOSE")
    assert config.server.listen.host == "0.0.0.0"
    assert str(config.server.listen.port) == exposed
    health = urlsplit(HEALTH_URL)
    assert (config.admin.listen.host, config.admin.listen.port) == (health.hostname, health.port)


def healthcheck_argv() -> list[str]:
    (rest,) = args_of("HEALTHCHECK")
    _, _, command = rest.partition("CMD ")
    return exec_form(command)


def test_healthcheck_asks_admin_health_without_curl() -> None:
    argv = healthcheck_argv()
    assert argv[:2] == ["python", "-c"]
    assert HEALTH_URL in argv[2]
    compile(argv[2], "<healthcheck>", "exec")


@pytest.fixture
def health_stub(request: pytest.FixtureRequest) -> Iterator[str]:
    origin = Origin()
    origin.always("/health", Reply(request.param))
    with serve_in_thread(origin.app()) as url:
        yield f"{url}/health"


@pytest.mark.parametrize(("health_stub", "healthy"), [(200, True), (503, False)], indirect=["health_stub"])
def test_healthcheck_exit_status_follows_health(health_stub: str, healthy: bool) -> None:
    code = healthcheck_argv()[2].replace(HEALTH_URL, health_stub)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert copied_config_source() == ROOT / "config" / "example.yaml"
    for sources, _ in copies():
        for src in sources:
            assert (ROOT / src).exists(), src
            assert not any(
                fnmatch.fnmatch(src, pat) or src.startswith(pat.rstrip("/") + "/") for pat in ignored
            ), f"{src} is excluded by .dockerignore"


def compose_doc() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def compose() -> dict[str, dict[str, Any]]:
    services = compose_doc()["services"]
    assert isinstance(services, dict)
    return services


def test_compose_runs_two_replicas_against_one_redis() -> None:
    services = compose()
    proxies = {name: s for name, s in services.items() if s.get("build") == "."}
    assert len(proxies) == 2 and "redis" in services
    env = {"PRICING_TOKEN": "t-123456", "PROXY_ADMIN_TOKEN": "a-123456"}
    snapshots = set()
    for service in proxies.values():
        volumes = service.get("volumes")
        assert isinstance(volumes, list)
        mounts = [str(v).split(":") for v in volumes]
        (source,) = [m[0] for m in mounts if m[1] == CONFIG_IN_IMAGE]
        config = load_config(str(ROOT / source), env=env)
        assert config.cache.backend == "redis"
        assert urlsplit(config.cache.redis.url).hostname in services
        assert (config.server.listen.host, config.server.listen.port) == ("0.0.0.0", 8080)
        # Admin beyond loopback for Prometheus on the compose network, so the token is required.
        assert (config.admin.listen.host, config.admin.listen.port) == ("0.0.0.0", 9901)
        assert config.admin.token == "a-123456"
        # The last-good snapshot lives on a named volume, one per replica.
        assert config.cache.snapshot is not None
        (volume,) = [m[0] for m in mounts if m[1] == str(Path(config.cache.snapshot).parent)]
        assert volume in compose_doc()["volumes"]
        snapshots.add(volume)
    assert len(snapshots) == 2


def test_compose_documents_a_prometheus_scrape_of_admin() -> None:
    services = compose()
    prometheus = services["prometheus"]
    (mount,) = prometheus["volumes"]
    scrape = yaml.safe_load((ROOT / str(mount).split(":")[0]).read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    proxies = [name for name, s in services.items() if s.get("build") == "."]
    assert sorted(targets) == sorted(f"{name}:9901" for name in proxies)


def test_docker_config_refuses_to_run_without_its_secrets() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(ROOT / "config" / "docker.yaml"), env={})
    messages = str(caught.value)
    assert "PROXY_ADMIN_TOKEN is not set" in messages and "PRICING_TOKEN is not set" in messages
