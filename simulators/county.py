"""The simulated county over time: its population, the rolls of every subsystem, and the truth.

``SimulatedCounty.create`` builds day 0; ``next_day`` returns the following day with births,
deaths, moves, corrections and record deletions applied. Record ids stay stable from day to day,
and every change stamps the record's update time, so incremental extraction can be tested.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulators.errors import format_dates
from simulators.population import CountySpec, generate_county
from simulators.subsystems import SNAPSHOT_TIME, SUBSYSTEMS, build_roll, served

# the birth-date error kinds (simulators.errors.mess_birth_dates)
DOB_ERRORS = r"dob_(?:lunar|registration|year_only|swap|digit|near|archive_year)"


@dataclass(frozen=True)
class DeltaSpec:
    """How much changes from one day to the next (shares of persons or records)."""

    births: float = 0.0003
    deaths: float = 0.0002
    moves: float = 0.0005         # households moving within the county
    move_lag: float = 0.5         # of subsystems holding a mover: keep the old address
    corrections: float = 0.1      # of records with an ID-number error: corrected today
    deletions: float = 0.0005     # of records: deleted by the source


@dataclass
class SimulatedCounty:
    spec: CountySpec
    day: int
    population: pd.DataFrame
    rolls: dict[str, pd.DataFrame]
    changes: dict[str, int]

    @classmethod
    def create(cls, spec: CountySpec | None = None) -> SimulatedCounty:
        spec = spec or CountySpec()
        population = generate_county(spec)
        rolls = {name: build_roll(sub, population, spec.seed) for name, sub in SUBSYSTEMS.items()}
        return cls(spec, 0, population, rolls, {})

    @property
    def as_of(self) -> dt.datetime:
        return SNAPSHOT_TIME + dt.timedelta(days=self.day)

    def served(self, name: str, *, include_deleted: bool = True) -> pd.DataFrame:
        """Records of subsystem ``name`` in its own dialect (as its platform serves them)."""
        roll = self.rolls[name]
        if not include_deleted:
            roll = roll[~roll["_deleted"]]
        return served(SUBSYSTEMS[name], roll)

    def truth(self) -> pd.DataFrame:
        """source, source_record_id, person_id, errors, deleted — for tests and benchmarks only."""
        return pd.concat([
            pd.DataFrame({"source": name, "source_record_id": r["record_id"], "person_id": r["_person_id"],
                          "errors": r["_errors"], "deleted": r["_deleted"]})
            for name, r in self.rolls.items()], ignore_index=True)

    def planted_inconsistencies(self) -> pd.DataFrame:
        """The cross-department inconsistencies the rolls contain, by kind, person and records."""
        pop = self.population.set_index("person_id")
        # a death counts once civil affairs has registered it (停发 on the 高龄 roll): a death that no
        # served roll records is invisible to every department, and so no inconsistency between them
        gl = self.rolls["mz_gaoling"]
        registered = set(gl.loc[(gl["status"] == "停发") & ~gl["_deleted"], "_person_id"])
        rows = []
        for name, roll in self.rolls.items():
            live = roll[~roll["_deleted"]]
            dead = live["_person_id"].map(pop["deceased_on"]).notna() & live["_person_id"].isin(registered)
            active = {"mz_dibao": live["status"] == "在保",
                      "rs_yanglao": live.get("pension", pd.Series("0", index=live.index)) == "1"}.get(name)
            if active is not None:
                for rid, pid in live.loc[dead & active, ["record_id", "_person_id"]].itertuples(index=False):
                    rows.append(("deceased_active", pid, name, rid))
            errors = live["_errors"]
            # a birth date a generation off its own ID number's reads as a parent's or child's number:
            # the hub keeps the records apart and flags the number as shared
            generation = errors.str.contains("dob_generation") & ~errors.str.contains(r"id_(?:typo|transposition|placeholder)")
            planted = {"sex_conflict": errors.str.contains("wrong_sex"),
                       "shared_id_number": errors.str.contains("id_family_member") | generation,
                       "birth_date_conflict": errors.str.contains(DOB_ERRORS) & ~generation}
            for kind, hit in planted.items():
                for rid, pid in live.loc[hit, ["record_id", "_person_id"]].itertuples(index=False):
                    rows.append((kind, pid, name, rid))
        yiliao = self.rolls["rs_yiliao"]
        yiliao = yiliao[~yiliao["_deleted"]]
        both = yiliao.groupby("_person_id")["scheme"].nunique()
        for pid in both[both > 1].index:
            for rid in yiliao.loc[yiliao["_person_id"] == pid, "record_id"]:
                rows.append(("exclusive_programs", pid, "rs_yiliao", rid))
        return pd.DataFrame(rows, columns=["kind", "person_id", "source", "source_record_id"])

    def write_truth(self, folder: Path) -> dict[str, Path]:
        """Write the ground truth apart from anything served; the hub's pipeline never reads it."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"records": folder / f"records_day{self.day}.csv",
                 "inconsistencies": folder / f"inconsistencies_day{self.day}.csv",
                 "persons": folder / f"persons_day{self.day}.csv"}
        self.truth().to_csv(paths["records"], index=False)
        self.planted_inconsistencies().to_csv(paths["inconsistencies"], index=False)
        self.population.to_csv(paths["persons"], index=False)
        return paths

    def next_day(self, delta: DeltaSpec = DeltaSpec()) -> SimulatedCounty:
        """The county one day later."""
        rng = np.random.default_rng([self.spec.seed, self.day + 1, 7])
        when = self.as_of + dt.timedelta(days=1)
        pop = self.population.copy()
        rolls = {k: v.copy() for k, v in self.rolls.items()}
        changes: dict[str, int] = {}
        n = len(pop)

        # deaths: the death registration (高龄津贴) records them; other rolls follow with a lag
        alive = pop["deceased_on"].isna().to_numpy()
        old = alive & (pop["birth_date"] < (when.date() - dt.timedelta(days=365 * 75)))
        dying = old & (rng.random(n) < delta.deaths * 20)
        pop.loc[dying, "deceased_on"] = when.date()
        died = set(pop.loc[dying, "person_id"])
        gl = rolls["mz_gaoling"]
        hit = gl["_person_id"].isin(died)
        gl.loc[hit, ["status", "status_date", "_updated"]] = ["停发", when.strftime("%Y-%m-%d"), when]
        changes["deaths"] = int(dying.sum())

        # births: new children in existing households, registered by the hospital (出生登记)
        mothers = pop[(pop["sex"] == 2) & pop["relation"].isin(["head", "spouse"]) & pop["deceased_on"].isna()]
        k = max(0, int(round(n * delta.births)))
        moms = mothers.sample(n=min(k, len(mothers)), random_state=int(rng.integers(1 << 31)))
        if len(moms):
            babies = pd.DataFrame({
                "person_id": [f"P{n + i:07d}" for i in range(len(moms))],
                "household_id": moms["household_id"].to_numpy(), "relation": "child",
                "name": moms["name"].str.slice(0, 1).to_numpy() + rng.choice(list("子一梓欣宇"), len(moms)),
                "sex": rng.integers(1, 3, len(moms)), "birth_date": when.date(), "id_number": None,
                "region_code": moms["region_code"].to_numpy(), "address": moms["address"].to_numpy(),
                "phone": moms["phone"].to_numpy(), "mobile": None, "migrant": moms["migrant"].to_numpy(),
                "minority": False, "dibao_household": moms["dibao_household"].to_numpy(), "disabled": False,
                "disability_level": 0, "deceased_on": None, "mother_id": moms["person_id"].to_numpy(), "twin_of": None})
            pop = pd.concat([pop, babies], ignore_index=True)
            cs = rolls["wj_chusheng"]
            start = len(cs) + 1
            births, _ = format_dates(babies["birth_date"], SUBSYSTEMS["wj_chusheng"].date_format,
                                     SUBSYSTEMS["wj_chusheng"].errors, rng)
            new = pd.DataFrame({
                "record_id": [f"CS{start + i:07d}" for i in range(len(babies))],
                "name": babies["name"].to_numpy(), "id_number": None,
                "sex": babies["sex"].map(SUBSYSTEMS["wj_chusheng"].sex_codes).to_numpy(),
                "birth_date": births.to_numpy(), "phone": babies["phone"].to_numpy(),
                "address": babies["address"].to_numpy(), "status": "已登记", "status_date": births.to_numpy(),
                "mother_name": moms["name"].to_numpy(), "mother_id_number": moms["id_number"].to_numpy(),
                "_person_id": babies["person_id"].to_numpy(), "_errors": "", "_updated": when, "_deleted": False})
            rolls["wj_chusheng"] = pd.concat([cs, new], ignore_index=True)
        changes["births"] = len(moms)

        # moves: a household moves; some subsystems update the address, others keep the old one
        houses = pop["household_id"].unique()
        movers = rng.choice(houses, max(0, int(round(len(houses) * delta.moves))), replace=False)
        new_address = {h: f"城关镇新城社区{rng.integers(1, 20)}组{rng.integers(1, 300)}号" for h in movers}
        moving = pop["household_id"].isin(movers)
        pop.loc[moving, "address"] = pop.loc[moving, "household_id"].map(new_address)
        moved_person = pop.loc[moving].set_index("person_id")["address"]
        for roll in rolls.values():
            hit = roll["_person_id"].isin(moved_person.index) & (rng.random(len(roll)) >= delta.move_lag)
            roll.loc[hit, "address"] = roll.loc[hit, "_person_id"].map(moved_person)
            roll.loc[hit, "_updated"] = when
        changes["moved_households"] = len(movers)

        # corrections: some wrong ID numbers are fixed at the source
        truth_id = pop.set_index("person_id")["id_number"]
        fixed = 0
        for roll in rolls.values():
            wrong = roll["_errors"].str.contains("id_typo|id_transposition|id_placeholder") & ~roll["_deleted"]
            fix = wrong & (rng.random(len(roll)) < delta.corrections) & roll["_person_id"].map(truth_id).notna()
            roll.loc[fix, "id_number"] = roll.loc[fix, "_person_id"].map(truth_id)
            roll.loc[fix, "_errors"] = roll.loc[fix, "_errors"].str.replace(
                r"(id_typo|id_transposition|id_placeholder);?", "", regex=True).str.rstrip(";")
            roll.loc[fix, "_updated"] = when
            fixed += int(fix.sum())
        changes["corrections"] = fixed

        # deletions: records withdrawn at the source (logical deletion, visible as a tombstone)
        deleted = 0
        for roll in rolls.values():
            gone = ~roll["_deleted"] & (rng.random(len(roll)) < delta.deletions)
            roll.loc[gone, ["_deleted", "_updated"]] = [True, when]
            deleted += int(gone.sum())
        changes["deletions"] = deleted
        return SimulatedCounty(self.spec, self.day + 1, pop, rolls, changes)


def county_with_days(spec: CountySpec, days: int = 0) -> SimulatedCounty:
    """The county after ``days`` days of change."""
    county = SimulatedCounty.create(spec)
    for _ in range(days):
        county = county.next_day()
    return county

