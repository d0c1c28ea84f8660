"""``hub findings``: the inbox's steps on the command line against the session's real PostgreSQL — the same
lifecycle as the workbench, refused steps as one clear line and exit code 1, history with the operator's name."""

from __future__ import annotations

import json
import subprocess

import pytest

from hub.exports import os_user
from warehouse.findings import DECEASED_ACTIVE, Finding, refresh_findings


def _hub(*args):
    """Run ``hub`` in this process with typer's runner (the real commands)."""
    from typer.testing import CliRunner

    from hub.cli import app

    result = CliRunner().invoke(app, list(args), prog_name="hub")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["hub", *args], result.exit_code, result.stdout, result.stderr)


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    from hub.cli_common import console, err

    monkeypatch.setattr(console, "width", 250)
    monkeypatch.setattr(err, "width", 250)


def test_findings_move_through_their_lifecycle_on_the_command_line(clean_warehouse):
    found = Finding(DECEASED_ACTIVE, "social_security", "M000000001", (("rs_yanglao", "RS1"),),
                    "已登记死亡仍在 rs_yanglao 享受待遇 · deceased but still active in rs_yanglao",
                    ({"role": "active_record", "source": "rs_yanglao", "source_record_id": "RS1"},))
    with clean_warehouse.begin() as conn:
        refresh_findings(conn, 1, [found], ["social_security"])
    fid = found.finding_id

    listed = _hub("findings", "list", "--department", "social_security")
    assert listed.returncode == 0 and fid in listed.stdout and "open" in listed.stdout
    refused = _hub("findings", "resolve", fid, "--reason", "fixed_at_source")
    assert refused.returncode == 1 and "cannot be resolved" in refused.stderr and "acknowledge" in refused.stderr
    assert _hub("findings", "acknowledge", fid, "-m", "查看中 looking").returncode == 0
    bad = _hub("findings", "assign", fid, "--to", "nobody")
    assert bad.returncode == 1 and "assign to one of the departments" in bad.stderr
    assert _hub("findings", "assign", fid, "--to", "social_security").returncode == 0
    done = _hub("findings", "resolve", fid, "--reason", "payment_stopped")
    assert done.returncode == 0 and "resolved → social_security (payment_stopped)" in done.stdout
    assert _hub("findings", "list").stdout.strip() == "no findings match"  # closed: not in the active inbox
    assert _hub("findings", "list", "--status", "nonsense").returncode == 1

    shown = json.loads(_hub("findings", "show", fid, "--json").stdout)
    assert [(e["action"], e["actor"]) for e in shown["history"]] == [
        ("opened", "hub"), ("acknowledged", os_user()), ("assigned", os_user()), ("resolved", os_user())]
    assert shown["history"][1]["comment"] == "查看中 looking"
    assert "北京时间" in _hub("findings", "show", fid).stdout
    assert _hub("findings", "show", "Fnothing").returncode == 1
