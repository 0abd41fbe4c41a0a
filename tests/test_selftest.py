"""`musicssl --self-test` from the source tree: the same checks the packaged app runs on itself."""

from __future__ import annotations

import os
import re
from pathlib import Path

from musicssl.engine import selftest
from musicssl.engine.cli import main

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _statuses(out: str) -> dict[str, str]:
    """{check name: PASS/FAIL/WARN/SKIP} from the report lines."""
    lines = re.findall(r"^  (PASS|FAIL|WARN|SKIP)\s+(\S+)", out, re.M)
    return {name: status for status, name in lines}


def test_self_test_passes_and_leaves_the_user_data_alone(capsys):
    user_data = Path(os.environ["MUSICSSL_DATA_DIR"])  # the conftest's stand-in for the real one

    code = main(["--self-test"])

    out = capsys.readouterr().out
    assert code == 0, out
    statuses = _statuses(out)
    assert set(statuses) == {check.name for check in selftest.CHECKS}, out
    # Playback depends on this machine's sound card; everything else must work everywhere.
    assert statuses.pop("playback") in ("PASS", "WARN"), out
    assert set(statuses.values()) == {"PASS"}, out
    assert "tone-a copy is nearest to tone-a" in out
    assert out.rstrip().splitlines()[-1].startswith("RESULT: PASS")
    assert not any(user_data.iterdir()), "the self-test wrote into the user's data folder"


def test_a_missing_library_fails_the_run_and_skips_what_needs_it(monkeypatch, capsys):
    # What a bundle that lost a compiled module looks like to the self-test.
    missing = "musicssl_selftest_no_such_native_module"
    monkeypatch.setattr(selftest, "NATIVE_MODULES", (*selftest.NATIVE_MODULES, missing))

    code = selftest.run_self_test()

    out = capsys.readouterr().out
    assert code == 1
    statuses = _statuses(out)
    assert statuses["runtime"] == "FAIL"
    assert missing in out
    needs_runtime = {name for name in statuses if name not in ("runtime", "playback")}
    assert {statuses[name] for name in needs_runtime} == {"SKIP"}, out
    assert out.rstrip().splitlines()[-1] == "RESULT: FAIL (runtime)"
