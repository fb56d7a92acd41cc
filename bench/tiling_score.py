"""Pure scoring of a Curate run on a tiled-scenes dataset (``bench/tiling.py``), against its rectangle truth.

Inputs are plain DataFrames, so the functions are tested on hand-made ones (``tests/test_bench_tiling.py``):

- ``tiles``: one row per tile written: ``path`` (real path), ``split``, ``label``, ``scene``, ``row``, ``col``.
- ``truth``: one row per unordered pair of tiles of one scene whose footprints intersect (positive area): ``a``,
  ``b`` (paths), ``scene``, ``kind`` (``side``: same row or column; ``diagonal``), ``share_a``, ``share_b``
  (intersection area over each tile's area), ``split_a``, ``split_b``.
- ``manifest``: Curate's ``manifest.parquet`` (``path`` made real), ``pairs``: its ``pairs.parquet`` (``path_a``
  and ``path_b`` made real); ``pairs`` may be None (not written), ``leaks_into`` may be missing from the manifest.

Every ratio comes with its numerator and denominator; a ratio over nothing is None.
"""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

DUPLICATE_SHARE = 0.75  # decisions.duplicate_share's default, used when a run does not record its own
MIN_COVERAGE = 0.1  # verification.overlap_min_coverage's default: the verifier does not look for less
EVALUATION_SPLITS = ("test", "val", "valid", "validation")  # decisions.evaluation_splits' default
LIST_LIMIT = 20  # examples listed per kind of error
SHARE_TOLERANCE = 0.05  # a found pair whose recorded share is further off than this is listed


def ratio(num: int, den: int) -> dict:
    """A ratio with its parts; None over nothing."""
    return {"num": int(num), "den": int(den), "ratio": None if den == 0 else num / den}


def pair_key(a: str, b: str) -> frozenset:
    """An unordered pair of paths."""
    return frozenset((a, b))


def true_relation(share_a: float, share_b: float, duplicate_share: float = DUPLICATE_SHARE) -> str:
    """The relation Curate should record for two tiles sharing this much of each: ``duplicate`` when the shared
    ground covers at least ``duplicate_share`` of both, else ``overlap``. (``exact`` needs identical bytes, which
    distinct crops never have.)"""
    return "duplicate" if min(share_a, share_b) >= duplicate_share else "overlap"


def detectable(truth: pd.DataFrame, min_coverage: float = MIN_COVERAGE) -> pd.Series:
    """Whether each true pair is one the verifier looks for: the shared ground covers at least ``min_coverage``
    of the smaller image, i.e. max(share_a, share_b) >= min_coverage."""
    return truth[["share_a", "share_b"]].max(axis=1) >= min_coverage - 1e-12


def is_evaluation(split: pd.Series | str, evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS):
    """Whether a split (or each of a Series of splits) is an evaluation split."""
    if isinstance(split, str):
        return split in evaluation_splits
    return split.isin(evaluation_splits)


def crosses_into_evaluation(truth: pd.DataFrame, evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS
                            ) -> pd.Series:
    """Whether each true pair joins a training tile to an evaluation tile."""
    return is_evaluation(truth["split_a"], evaluation_splits) != is_evaluation(truth["split_b"], evaluation_splits)


def _actions(manifest: pd.DataFrame) -> dict[str, str]:
    return dict(zip(manifest["path"], manifest["action"]))


def keep_scores(manifest: pd.DataFrame, tiles: pd.DataFrame, truth: pd.DataFrame,
                evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS) -> dict:
    """Tiles kept (``action == keep``; a tile missing from the manifest is not kept), overall, and among the tiles
    that should be kept: every evaluation tile, and every training tile sharing no ground with one."""
    action = _actions(manifest)
    kept = tiles["path"].map(lambda p: action.get(p) == "keep")
    eval_paths = set(tiles.loc[is_evaluation(tiles["split"], evaluation_splits), "path"])
    cross = truth[crosses_into_evaluation(truth, evaluation_splits)]
    touching = {p for a, b in zip(cross["a"], cross["b"]) for p in (a, b) if p not in eval_paths}
    should = ~tiles["path"].isin(touching)
    return {"kept": ratio(kept.sum(), len(tiles)),
            "kept_of_should_keep": ratio((kept & should).sum(), should.sum()),
            "should_not_keep": int((~should).sum()),
            "missing_from_manifest": sorted(set(tiles["path"]) - set(action))[:LIST_LIMIT]}


def _recall(found: pd.Series, mask: pd.Series) -> dict:
    return ratio((found & mask).sum(), mask.sum())


def pair_scores(pairs: pd.DataFrame, truth: pd.DataFrame, tiles: pd.DataFrame,
                duplicate_share: float = DUPLICATE_SHARE, min_coverage: float = MIN_COVERAGE,
                evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS) -> dict:
    """Recall of the true pairs in ``pairs`` (unordered), over detectable pairs and over all, per kind of neighbour
    and for pairs crossing into an evaluation split; precision of the recorded pairs; the relation confusion
    (true relation -> recorded one, ``none`` for a pair missing on either side); the mean absolute error of
    share_a/share_b on found pairs, and the found pairs whose share is off by more than ``SHARE_TOLERANCE``."""
    scene = dict(zip(tiles["path"], tiles["scene"]))
    recorded: dict[frozenset, dict] = {}
    for row in pairs.itertuples(index=False):
        if row.path_a != row.path_b:
            recorded.setdefault(pair_key(row.path_a, row.path_b), row._asdict())
    keys = [pair_key(a, b) for a, b in zip(truth["a"], truth["b"])]
    found = pd.Series([k in recorded for k in keys], index=truth.index, dtype=bool)
    seen = detectable(truth, min_coverage)
    cross = crosses_into_evaluation(truth, evaluation_splits)

    recall: dict[str, dict] = {"detectable": _recall(found, seen), "all": _recall(found, pd.Series(True, truth.index))}
    by_kind: dict[str, dict] = {}
    for kind, mask in [*((k, truth["kind"] == k) for k in sorted(truth["kind"].unique())),
                       ("into evaluation", cross)]:
        by_kind[kind] = {"detectable": _recall(found, mask & seen), "all": _recall(found, mask)}

    true_keys = set(keys)
    false_pairs = []
    for key, row in recorded.items():
        if key in true_keys:
            continue
        a, b = row["path_a"], row["path_b"]
        why = ("same scene, no shared ground" if scene.get(a) is not None and scene.get(a) == scene.get(b)
               else "different scenes")
        false_pairs.append({"a": a, "b": b, "why": why, "relation": row["relation"]})
    false_pairs.sort(key=lambda f: (f["a"], f["b"]))

    confusion: Counter = Counter()
    errors, off = [], []
    for key, share_a, share_b, a, b, kind in zip(keys, truth["share_a"], truth["share_b"], truth["a"], truth["b"],
                                                  truth["kind"]):
        want = true_relation(share_a, share_b, duplicate_share)
        got = recorded.get(key)
        confusion[(want, "none" if got is None else str(got["relation"]))] += 1
        if got is not None:
            pa, pb = (got["share_a"], got["share_b"]) if got["path_a"] == a else (got["share_b"], got["share_a"])
            errors += [abs(pa - share_a), abs(pb - share_b)]
            if max(abs(pa - share_a), abs(pb - share_b)) > SHARE_TOLERANCE:
                off.append({"a": a, "b": b, "kind": kind, "true": [share_a, share_b], "recorded": [pa, pb],
                            "relation": str(got["relation"]), "evidence": got.get("evidence")})
    off.sort(key=lambda o: -max(abs(t - r) for t, r in zip(o["true"], o["recorded"])))
    for item in false_pairs:
        confusion[("none", str(item["relation"]))] += 1
    nested: dict[str, dict[str, int]] = {}
    for (want, got), count in sorted(confusion.items()):
        nested.setdefault(want, {})[got] = count

    missed = truth[~found & seen]
    return {
        "recall": recall, "recall_by_kind": by_kind,
        "precision": ratio(len(recorded) - len(false_pairs), len(recorded)),
        "recorded_pairs": len(recorded), "false_pairs_count": len(false_pairs),
        "false_pairs_by_why": dict(Counter(f["why"] for f in false_pairs)),
        "false_pairs": false_pairs[:LIST_LIMIT],
        "missed_detectable": missed[["a", "b", "kind", "share_a", "share_b"]].head(LIST_LIMIT).to_dict("records"),
        "relation_confusion": nested,
        "share_mae": None if not errors else sum(errors) / len(errors),
        "share_max_error": None if not errors else max(errors),
        "shares_off": {"count": len(off), "list": off[:LIST_LIMIT]},
    }


def leak_scores(manifest: pd.DataFrame, tiles: pd.DataFrame, truth: pd.DataFrame,
                min_coverage: float = MIN_COVERAGE, evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS) -> dict:
    """Leaks against the truth.

    - ``kept_cross_pairs``: true pairs joining a training tile and an evaluation tile, both kept (target 0), over
      all such pairs and over the detectable ones.
    - ``leak_flagged``: training tiles whose ``leaks_into`` is set, by action; ``false_leaks``: those that truly
      share no ground with any kept evaluation tile; ``wrong_target``: those whose ``leaks_into`` names a file they
      share no true ground with.
    - ``removed``: training tiles that truly share ground with a kept evaluation tile and are not kept, over all
      such tiles and over those sharing detectable ground.
    """
    action = _actions(manifest)
    kept = {p for p, a in action.items() if a == "keep"}
    split = dict(zip(tiles["path"], tiles["split"]))
    cross = truth[crosses_into_evaluation(truth, evaluation_splits)]
    seen = detectable(cross, min_coverage)

    def train_and_eval(a: str, b: str) -> tuple[str, str]:
        return (b, a) if is_evaluation(split[a], evaluation_splits) else (a, b)

    both_kept = pd.Series([a in kept and b in kept for a, b in zip(cross["a"], cross["b"])], index=cross.index,
                          dtype=bool)
    # training tile -> evaluation tiles it truly shares ground with (all, and detectable)
    partners: dict[str, set[str]] = {}
    partners_seen: dict[str, set[str]] = {}
    for (a, b), visible in zip(zip(cross["a"], cross["b"]), seen):
        train, evaluation = train_and_eval(a, b)
        partners.setdefault(train, set()).add(evaluation)
        if visible:
            partners_seen.setdefault(train, set()).add(evaluation)

    def shares_kept(train: str, table: dict[str, set[str]]) -> bool:
        return bool(table.get(train, set()) & kept)

    kept_pairs = sorted(  # detectable ones first: those are the verifier's misses
        ({"train": train_and_eval(a, b)[0], "evaluation": train_and_eval(a, b)[1], "kind": kind,
          "share": max(sa, sb), "detectable": bool(v)}
         for a, b, kind, sa, sb, v, k in zip(cross["a"], cross["b"], cross["kind"], cross["share_a"],
                                             cross["share_b"], seen, both_kept) if k),
        key=lambda k: (not k["detectable"], k["train"], k["evaluation"]))
    result: dict = {
        "kept_cross_pairs": {"all": ratio(both_kept.sum(), len(cross)),
                             "detectable": ratio((both_kept & seen).sum(), seen.sum())},
        "kept_cross_pair_list": kept_pairs[:LIST_LIMIT],
    }
    must_go = [t for t in partners if shares_kept(t, partners)]
    must_go_seen = [t for t in partners_seen if shares_kept(t, partners_seen)]
    result["removed"] = {"all": ratio(sum(action.get(t) != "keep" for t in must_go), len(must_go)),
                         "detectable": ratio(sum(action.get(t) != "keep" for t in must_go_seen), len(must_go_seen))}

    if "leaks_into" not in manifest.columns:
        result["leak_flagged"] = None
        result["note"] = "the manifest has no leaks_into column"
        return result
    training = manifest[~is_evaluation(manifest["split"], evaluation_splits)]
    flagged = training[training["leaks_into"].notna()]
    false_leaks, wrong_target = [], []
    for path, target, act in zip(flagged["path"], flagged["leaks_into"], flagged["action"]):
        if not shares_kept(path, partners):
            false_leaks.append({"path": path, "leaks_into": target, "action": act})
        if str(target) not in partners.get(path, set()):
            wrong_target.append({"path": path, "leaks_into": target})
    result["leak_flagged"] = {"count": len(flagged), "by_action": dict(Counter(flagged["action"]))}
    result["leak_drops"] = int((flagged["action"] == "drop").sum())
    result["false_leaks"] = {"count": len(false_leaks), "list": false_leaks[:LIST_LIMIT]}
    result["wrong_target"] = {"count": len(wrong_target), "list": wrong_target[:LIST_LIMIT]}
    return result


_PATH = re.compile(r"/[^\s,;()]+")
_NUMBER = re.compile(r"\b\d+\b")


def reason_kind(reason: str) -> str:
    """A manifest reason with its paths and numbers replaced, so reasons can be counted: ``duplicate of
    /d/x.jpg`` -> ``duplicate of <file>``."""
    return _NUMBER.sub("<n>", _PATH.sub("<file>", str(reason)))


def drop_scores(manifest: pd.DataFrame) -> dict:
    """Files not kept, by action and by kind of reason."""
    not_kept = manifest[manifest["action"] != "keep"]
    return {"not_kept": len(not_kept), "by_action": dict(Counter(not_kept["action"])),
            "by_reason": dict(Counter(not_kept["reason"].map(reason_kind)).most_common())}


def score_run(manifest: pd.DataFrame, pairs: pd.DataFrame | None, tiles: pd.DataFrame, truth: pd.DataFrame,
              duplicate_share: float = DUPLICATE_SHARE, min_coverage: float = MIN_COVERAGE,
              evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS) -> dict:
    """Every score of one run; ``pairs`` None (not written) leaves the pair scores out with a note."""
    return {
        "keep": keep_scores(manifest, tiles, truth, evaluation_splits),
        "pairs": (None if pairs is None else
                  pair_scores(pairs, truth, tiles, duplicate_share, min_coverage, evaluation_splits)),
        "leaks": leak_scores(manifest, tiles, truth, min_coverage, evaluation_splits),
        "drops": drop_scores(manifest),
        "duplicate_share": duplicate_share, "min_coverage": min_coverage,
        "evaluation_splits": list(evaluation_splits),
    }
