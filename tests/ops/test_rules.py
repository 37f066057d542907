"""The Prometheus rules: ``promtool check rules`` accepts them, their unit tests (``promtool test rules``)
pass, and the same tests fail against copies with one rule broken: the tests can catch a regression."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.ops.support import RULES, RULES_TEST, peer_binaries

# (what is broken, text in rules.yml, its replacement)
BREAKAGES = [
    ("fast burn threshold", "ratio_rate1h > (14.4 * 0.01)", "ratio_rate1h > (44.4 * 0.01)"),
    ("slow burn short window", "ratio_rate30m > (6 * 0.01)", "ratio_rate30m > (60 * 0.01)"),
    ("missed share", '{result="missed"}[1h]', '{result="met"}[1h]'),
    ("drift budget", "(varigate_accuracy_drift_ratio) > 0.01", "(varigate_accuracy_drift_ratio) > 0.9"),
    ("demotion", "(varigate_variant_demoted) == 1", "(varigate_variant_demoted) == 2"),
    ("gateway down", 'up{job="varigate"} == 0', 'up{job="gateway"} == 0'),
]  # fmt: skip


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [str(peer_binaries()[0]), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alert_unit_tests_pass() -> None:
    done = _promtool("test", "rules", RULES_TEST)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("what", "good", "bad"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_the_alert_unit_tests_fail_on_a_broken_rule(what: str, good: str, bad: str, tmp_path: Path) -> None:
    text = RULES.read_text()
    assert good in text, what
    (tmp_path / RULES.name).write_text(text.replace(good, bad, 1))
    (tmp_path / RULES_TEST.name).write_text(RULES_TEST.read_text())
    assert _promtool("check", "rules", tmp_path / RULES.name).returncode == 0  # still valid, just wrong
    done = _promtool("test", "rules", tmp_path / RULES_TEST.name)
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr, what
