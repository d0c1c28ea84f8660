"""Everything the county's departments serve, started together on loopback.

REST platforms (civil affairs, health, social security), the nightly file-drop folder and the
legacy SQL database; the ground truth goes to a folder of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from simulators.drops import write_drops
from simulators.legacy_sql import write_legacy_db
from simulators.rest_server import FaultPlan, RunningServer, serve_platform
from simulators.subsystems import SUBSYSTEMS


@dataclass
class Platforms:
    county: object
    workdir: Path
    rest: dict[str, RunningServer] = field(default_factory=dict)
    drops: Path | None = None
    sql_url: str | None = None
    truth: dict[str, Path] = field(default_factory=dict)

    def where(self) -> list[tuple[str, str, str, str]]:
        """(subsystem, department, protocol, location) for every subsystem."""
        out = []
        for name, sub in SUBSYSTEMS.items():
            if sub.protocol == "rest":
                loc = self.rest[sub.platform].url + sub.resource
            elif sub.protocol == "sql":
                loc = f"{self.sql_url} table {sub.resource}"
            else:
                loc = str(self.drops / name)
            out.append((name, sub.department, sub.protocol, loc))
        return out

    def advance(self, county) -> None:
        """Move every platform to ``county`` (e.g. the next day)."""
        self.county = county
        for server in self.rest.values():
            server.state.county = county
        write_drops(county, self.drops)
        self.sql_url = write_legacy_db(county, self.workdir / "legacy" / "birth_registration.db")
        self.truth = county.write_truth(self.workdir / "truth")

    def set_faults(self, faults: FaultPlan | None) -> None:
        for server in self.rest.values():
            server.state.faults = faults

    def stop(self) -> None:
        for server in self.rest.values():
            server.stop()


def start_platforms(county, workdir: Path, *, faults: FaultPlan | None = None, password: str | None = None) -> Platforms:
    """Serve every subsystem of ``county``; files and the SQL database go under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    platforms = Platforms(county, workdir, drops=workdir / "drops")
    for platform in sorted({s.platform for s in SUBSYSTEMS.values() if s.protocol == "rest"}):
        platforms.rest[platform] = serve_platform(platform, county, faults=faults, password=password)
    platforms.advance(county)
    return platforms
