"""Property tests of the classification: invariants that must hold for any files and any verified pairs."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.config import CurateConfig
from tasks.schema import Col, Issue, PairCol, issue_flags
from tests.test_classify import (
    DUPLICATE, MAPS, OVERLAP, classify_with_pairs, make_files, make_matches, make_similarity,
)

SPLITS = ["train", "val", "unlabeled"]


@st.composite
def datasets(draw):
    n = draw(st.integers(min_value=2, max_value=14))
    rows = []
    for i in range(n):
        split = draw(st.sampled_from(SPLITS))
        rows.append({
            Col.PATH: f"/d/{split}/{i:02d}.jpg",
            Col.SPLIT: split,
            Col.LABEL: None if split == "unlabeled" else draw(st.sampled_from(["a", "b"])),
            Col.SHA256: draw(st.sampled_from([f"h{i}", "shared"])),
            Col.WIDTH: draw(st.sampled_from([50, 100])),
            Col.VALID: draw(st.booleans()) or i < 2,
        })
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1),
                                    st.sampled_from([DUPLICATE, OVERLAP])), max_size=2 * n))
    # Verification gives one verdict a pair: the first drawn for it.
    matches = sorted({(min(a, b), max(a, b)): relation for a, b, relation in reversed(edges) if a != b}.items())
    matches = [(a, b, relation) for (a, b), relation in matches]
    return rows, matches


def run_with_pairs(rows, matches) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = make_files(rows)
    readable = set(files.loc[files[Col.VALID], Col.ROW])
    matches = [(a, b, *rest) for a, b, *rest in matches if a in readable and b in readable]
    pairs = [(a, b, 0.95) for a, b, *_ in matches]
    manifest, related = classify_with_pairs(files, make_similarity(pairs), make_matches(matches), CurateConfig())
    return manifest.set_index(Col.PATH), related


def run(rows, matches) -> pd.DataFrame:
    return run_with_pairs(rows, matches)[0]


def groups_as_sets(manifest: pd.DataFrame) -> set[frozenset[str]]:
    grouped = manifest[manifest[Col.DUP_GROUP].notna()].groupby(Col.DUP_GROUP).groups
    return {frozenset(paths) for paths in grouped.values()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_each_group_keeps_exactly_one_file_and_drops_point_to_it(data):
    manifest = run(*data)
    for _, members in manifest[manifest[Col.DUP_GROUP].notna()].groupby(Col.DUP_GROUP):
        survivors = members[members[Col.ACTION] != "drop"]
        kept_copies = members[members[Col.DUPLICATE_OF].isna()]
        assert len(kept_copies) == 1, "exactly one member is the group's kept copy"
        assert len(survivors) <= 1
        keeper = kept_copies.index[0]
        assert (members.drop(index=keeper)[Col.DUPLICATE_OF] == keeper).all()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.randoms(use_true_random=False))
def test_groups_and_decisions_do_not_depend_on_input_order(data, random):
    rows, matches = data
    shuffled_rows = rows[:]
    random.shuffle(shuffled_rows)
    position = {row[Col.PATH]: i for i, row in enumerate(shuffled_rows)}
    old_path = [row[Col.PATH] for row in rows]
    remapped = [(position[old_path[a]], position[old_path[b]], r) for a, b, r in matches]
    # Pairs in another order, each from its lower row: a pair seen the other way round has the inverse map.
    remapped = [(a, b, r, MAPS[r]) if a < b else (b, a, r, np.linalg.inv(MAPS[r]))
                for a, b, r in reversed(remapped)]
    first, second = run(rows, matches), run(shuffled_rows, remapped)
    assert groups_as_sets(first) == groups_as_sets(second)
    second = second.loc[first.index]
    assert first[Col.ACTION].tolist() == second[Col.ACTION].tolist()
    assert first[Col.DUPLICATE_OF].fillna("").tolist() == second[Col.DUPLICATE_OF].fillna("").tolist()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_a_pair_means_the_same_from_either_side(data):
    rows, matches = data
    swapped = [(b, a, r, np.linalg.inv(MAPS[r])) for a, b, r in matches]  # row_a > row_b: all the same
    assert groups_as_sets(run(rows, matches)) == groups_as_sets(run(rows, swapped))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_no_leak_survives_and_only_a_leak_or_a_copy_drops_a_related_file(data):
    """No kept file of a training split is related to a kept val file, and a file is dropped only for being
    corrupt, a copy, a dropped issue, or (a training file) a leak into a val file: an overlap alone never is."""
    manifest, pairs = run_with_pairs(*data)
    kept = manifest[Col.ACTION] == "keep"
    for path_a, path_b in zip(pairs[PairCol.PATH_A], pairs[PairCol.PATH_B]):
        if kept[path_a] and kept[path_b]:
            assert (manifest.loc[path_a, Col.SPLIT] == "val") == (manifest.loc[path_b, Col.SPLIT] == "val")
    for path, row in manifest[manifest[Col.ACTION] == "drop"].iterrows():
        reason = row[Col.REASON]
        assert reason.startswith(("corrupt: ", "duplicate of ", "drop: ", "split leak: ")), reason
        if reason.startswith("split leak: "):
            assert row[Col.SPLIT] != "val" and manifest.loc[row[Col.LEAKS_INTO], Col.SPLIT] == "val"
            assert kept[row[Col.LEAKS_INTO]] or manifest.loc[row[Col.LEAKS_INTO], Col.ACTION] == "review"


ISSUE_NAMES = [issue.value for issue in Issue]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(ISSUE_NAMES + ["not_an_issue"]), unique=True, max_size=5), max_size=30),
       st.booleans())
def test_issue_flags_are_membership_of_each_rows_list(lists, as_arrays):
    """The vectorised flags equal a plain `in` test per row and issue, for lists and for the arrays Parquet
    gives back."""

    values = [np.array(items, dtype=object) for items in lists] if as_arrays else lists
    issues = pd.Series(values, index=range(100, 100 + len(lists)), dtype=object)
    flags = issue_flags(issues)
    assert list(flags.columns) == ISSUE_NAMES and flags.index.equals(issues.index)
    for name in ISSUE_NAMES:
        assert flags[name].tolist() == [name in list(items) for items in lists]
