"""The guard against a stale compiled build: a source edited after `RPROXY_USE_MYPYC=1 pip
install -e .` would be shadowed by its old extension module without it (setup.py)."""

from __future__ import annotations

import hashlib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from proxy import stale_builds


def tree(tmp_path: Path) -> Path:
    """A package as an in-place compiled build leaves it: sources, their extensions, the manifest."""
    pkg = tmp_path / "proxy"
    (pkg / "core").mkdir(parents=True)
    lines = []
    for name in ("proxy/driver.py", "proxy/core/keys.py", "proxy/fetch.py"):
        source = tmp_path / name
        source.write_text(f"# {name}\n")
        lines.append(f"{hashlib.sha256(source.read_bytes()).hexdigest()} {name}\n")
        if name != "proxy/fetch.py":  # its extension was removed: the source runs, nothing is stale
            source.with_name(source.stem + EXTENSION_SUFFIXES[0]).write_bytes(b"")
    manifest = pkg / "compiled-sources.txt"
    manifest.write_text("".join(lines))
    return manifest


def test_a_build_of_the_sources_as_they_are_is_not_stale(tmp_path: Path) -> None:
    assert stale_builds(tree(tmp_path)) == []


def test_an_edited_source_with_its_old_extension_is_stale(tmp_path: Path) -> None:
    manifest = tree(tmp_path)
    (tmp_path / "proxy/core/keys.py").write_text("# edited\n")
    (tmp_path / "proxy/fetch.py").write_text("# edited, but no extension shadows it\n")
    assert stale_builds(manifest) == ["proxy/core/keys.py"]
    (tmp_path / "proxy/driver.py").unlink()
    assert stale_builds(manifest) == ["proxy/driver.py", "proxy/core/keys.py"]
