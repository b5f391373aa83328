"""The demo's instructions describe the breaker policy the demo config really has (issue 15)."""

from __future__ import annotations

from pathlib import Path

from proxy.config import load_config
from proxy.core.breaker import BreakerPolicy
from proxy.demo import banner

ROOT = Path(__file__).resolve().parents[2]


def test_step_two_prints_the_configured_breaker_policy() -> None:
    config = load_config(str(ROOT / "proxy/static/demo.yaml"), {"DEMO_VENDOR_URL": "http://127.0.0.1:9"})
    policy = config.upstreams[0].circuit_breaker
    text = banner("http://p", "http://v", None, policy)
    assert "after 5 failed calls" not in text
    assert f"at least {policy.minimum_calls} calls to the vendor in {policy.window:g}s" in text
    assert f"{policy.failure_rate:.0%} of them failed" in text
    assert f"stays open {policy.open_for:g}s" in text
    assert "circuit_open" not in text and "circuit-open" in text


def test_another_policy_another_text() -> None:
    text = banner("http://p", "http://v", None, BreakerPolicy(failure_rate=0.25, minimum_calls=20))
    assert "at least 20 calls" in text and "25% of them failed" in text


def test_step_five_says_what_the_vendor_request_count_shows() -> None:
    text = banner("http://p", "http://v", None)
    step5 = text[text.index(" 5. ") :]
    assert '"requests": calls that reached the vendor' in step5
    assert "a call the vendor never saw" in step5
