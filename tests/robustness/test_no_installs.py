"""Tests never change the system: no test installs packages (CI's set-up, .ci/run, does)."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
INSTALLERS = re.compile(r"""["'](apt-get|apt|dnf|yum|brew|npx)["']"""
                        r"""|(pip|playwright)["'],\s*["']install""")


def test_no_test_runs_an_installer():
    offenders = [str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py")
                 if p.name != Path(__file__).name and INSTALLERS.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
