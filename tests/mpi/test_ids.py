"""Master-id assignment on hand-built clusterings: merges, splits, moves, removals and causes."""

from __future__ import annotations

import pandas as pd

from mpi.ids import Causes, assign_master_ids


def clusters(groups: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(r, c) for c, rs in groups.items() for r in rs], columns=["record_key", "cluster_key"])


def previous(ids: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(r, m) for m, rs in ids.items() for r in rs], columns=["record_key", "master_id"])


def minter():
    counter = iter(range(100, 1000))
    return lambda n: [f"M{next(counter)}" for _ in range(n)]


def by_record(result) -> dict[str, str]:
    return dict(zip(result.crosswalk["record_key"], result.crosswalk["master_id"]))


def test_unchanged_clusters_keep_their_ids_and_make_no_events():
    prev = previous({"M1": ["a/1", "b/1"], "M2": ["a/2"]})
    result = assign_master_ids(clusters({"a/1": ["a/1", "b/1"], "a/2": ["a/2"]}), prev, mint=minter())
    assert by_record(result) == {"a/1": "M1", "b/1": "M1", "a/2": "M2"}
    assert result.events.empty and result.retired.empty


def test_a_merge_keeps_the_id_with_more_records_and_redirects_the_other():
    prev = previous({"M1": ["a/1"], "M2": ["a/2", "b/2"]})
    result = assign_master_ids(clusters({"a/1": ["a/1", "a/2", "b/2"]}), prev, mint=minter(),
                               causes=Causes(changed={"a/1"}))
    assert set(by_record(result).values()) == {"M2"}
    assert result.retired.to_dict("records") == [{"master_id": "M1", "retired_into": "M2"}]
    merged = result.events[result.events["event"] == "merged"].iloc[0]
    assert (merged["master_id"], merged["other_master_id"], merged["cause"]) == ("M1", "M2", "source_correction")


def test_a_merge_of_equal_parts_keeps_the_older_id():
    prev = previous({"M7": ["a/1"], "M3": ["a/2"]})
    result = assign_master_ids(clusters({"a/1": ["a/1", "a/2"]}), prev, mint=minter(),
                               age=lambda m: int(m[1:]))
    assert set(by_record(result).values()) == {"M3"}


def test_a_split_keeps_the_id_with_the_larger_part_and_explains_the_moves():
    prev = previous({"M1": ["a/1", "b/1", "c/1"]})
    result = assign_master_ids(clusters({"a/1": ["a/1", "b/1"], "c/1": ["c/1"]}), prev, mint=minter(),
                               causes=Causes(steward={"c/1", "a/1"}))
    ids = by_record(result)
    assert ids["a/1"] == ids["b/1"] == "M1" and ids["c/1"] == "M100"
    ev = result.events.set_index("event")
    assert ev.loc["split", "master_id"] == "M1" and ev.loc["split", "other_master_id"] == "M100"
    assert ev.loc["record_moved", "record_key"] == "c/1" and ev.loc["record_moved", "cause"] == "steward_decision"
    assert ev.loc["created", "master_id"] == "M100"


def test_new_records_join_or_create_and_deleted_records_are_removed():
    prev = previous({"M1": ["a/1", "b/1"], "M2": ["a/2"]})
    result = assign_master_ids(clusters({"a/1": ["a/1", "n/1"], "n/2": ["n/2"]}), prev, mint=minter(),
                               causes=Causes(new={"n/1", "n/2"}, deleted={"b/1", "a/2"}))
    ids = by_record(result)
    assert ids == {"a/1": "M1", "n/1": "M1", "n/2": "M100"}
    events = set(map(tuple, result.events[["master_id", "event", "cause"]].to_numpy()))
    assert ("M1", "record_added", "new_data") in events
    assert ("M1", "record_removed", "source_deletion") in events
    assert ("M2", "retired", "source_deletion") in events
    assert ("M100", "created", "new_data") in events
    assert result.retired.set_index("master_id").loc["M2", "retired_into"] is None


def test_no_data_change_means_a_model_or_rule_change():
    prev = previous({"M1": ["a/1", "a/2"]})
    result = assign_master_ids(clusters({"a/1": ["a/1"], "a/2": ["a/2"]}), prev, mint=minter(),
                               causes=Causes(model_changed=True))
    assert set(result.events["cause"]) == {"model_change"}
    result = assign_master_ids(clusters({"a/1": ["a/1"], "a/2": ["a/2"]}), prev, mint=minter())
    assert set(result.events["cause"]) == {"rule_change"}


def test_the_result_does_not_depend_on_input_order():
    prev = previous({"M1": ["a/1", "b/1"], "M2": ["c/1", "d/1"]})
    groups = {"a/1": ["a/1", "c/1"], "b/1": ["b/1"], "d/1": ["d/1"]}
    one = assign_master_ids(clusters(groups), prev, mint=minter())
    shuffled = clusters(groups).sample(frac=1.0, random_state=3)
    two = assign_master_ids(shuffled, prev.sample(frac=1.0, random_state=4), mint=minter())
    assert by_record(one) == by_record(two)
