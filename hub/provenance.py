"""What a master-index run ran with: the matching model, the rules files, the code and the Airflow run.

Every matching run (``mpi.link_run``), gate run (``audit.validation_run``), publish attempt
(``audit.publish_attempt``) and release (``publish.release``) keeps this as ``ran_with``, so that an
auditor can tell which model and rules produced a release, and a data engineer can find the Airflow
run that made it. Only versions and checksums: no personal data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from hub import settings

#: The package this code is installed as (pyproject.toml).
PACKAGE = "resident-hub"

#: Airflow puts the context of a task into its process's environment.
_AIRFLOW_CONTEXT = {"dag_id": "AIRFLOW_CTX_DAG_ID", "run_id": "AIRFLOW_CTX_DAG_RUN_ID",
                    "task_id": "AIRFLOW_CTX_TASK_ID", "try_number": "AIRFLOW_CTX_TRY_NUMBER"}


def sha256_file(path: str | Path) -> str | None:
    """The SHA-256 of a file's bytes (None when it cannot be read)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def rules_files() -> dict[str, Path]:
    """The rules files a master-index run reads, by name."""
    from expectations.sources import DEFAULT_RULES_PATH
    from mpi.survivorship import DEFAULT_RULES
    from warehouse.purposes import PURPOSES_FILE
    from warehouse.sharing import SHARING_FILE

    return {"survivorship": Path(DEFAULT_RULES), "gate_rules": Path(DEFAULT_RULES_PATH),
            "sharing": Path(SHARING_FILE), "purposes": Path(PURPOSES_FILE)}


def model_info(model_path: str | Path | None = None) -> dict:
    """The matching model: its declared version (``hub_model_version`` in the file) and its SHA-256."""
    from mpi.model import DEFAULT_MODEL

    path = Path(model_path or DEFAULT_MODEL)
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("hub_model_version")
    except (OSError, ValueError, AttributeError):
        version = None
    return {"version": version, "sha256": sha256_file(path), "file": path.name}


def _git_dir(root: Path) -> Path | None:
    dot_git = root / ".git"
    if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            target = Path(text.split(":", 1)[1].strip())
            return target if target.is_absolute() else (root / target).resolve()
        return None
    return dot_git if dot_git.is_dir() else None


def git_commit(root: str | Path | None = None) -> str | None:
    """The commit checked out at ``root`` (default: the hub's source tree), read from the ``.git`` folder
    without running git; None where there is no repository (an installed package, a Docker image)."""
    git = _git_dir(Path(root or settings.PROJECT_ROOT))
    if git is None:
        return None
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head or None  # a detached head holds the commit itself
        ref = head.split(":", 1)[1].strip()
        common = git
        if (git / "commondir").is_file():  # a worktree keeps its refs in the main repository
            common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        return None
    return None


@functools.cache
def code_version() -> dict:
    """The hub's package version and, when known, the git commit (``HUB_CODE_COMMIT`` when set, e.g. by an
    image build that has no ``.git``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version(PACKAGE)
    except PackageNotFoundError:
        package = None
    return {"version": package, "commit": os.environ.get("HUB_CODE_COMMIT") or git_commit()}


def airflow_run() -> dict | None:
    """The Airflow DAG run, task and try this process runs for (None outside Airflow)."""
    context = {key: os.environ.get(env) for key, env in _AIRFLOW_CONTEXT.items()}
    return context if context["run_id"] else None


def ran_with(model_path: str | Path | None = None) -> dict:
    """What a step of a master-index run runs with, as JSON-ready values (checksums and versions only)."""
    return {"model": model_info(model_path),
            "rules": {name: sha256_file(path) for name, path in rules_files().items()},
            "code": code_version(), "airflow": airflow_run()}
