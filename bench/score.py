"""Score a Curate-style run against the benchmark's ground truth. Pure functions over DataFrames.

Inputs:

- ``manifest``: ``path``, ``split``, ``label``, ``dup_group`` (nullable int), ``issues`` (list of strings) and
  ``action``; ``duplicate_of``, ``leaks_into`` and ``reason`` when the system writes them.
- ``pairs``: the related pairs the run recorded (Curate's ``pairs.parquet``): ``path_a``, ``path_b``, ``relation``
  (``exact``, ``duplicate`` or ``overlap``). A system without one (plain fastdup) gets :func:`pairs_from_groups`.
- ``files`` and the truth pairs: :class:`bench.dataset.GroundTruth`'s two tables; :func:`truth_relations` adds each
  true pair's shares and relation. Paths must already be comparable (absolute and resolved the same way).

Facts (detection): the predicted related pairs are the rows of ``pairs`` as unordered path pairs, any relation, plus
every pair within a set of same-bytes files (recorded as a star). A predicted pair is right when both files lie in
one true group (the connected closure of the injected and natural pairs), so relating A with C because A~B and B~C
is not penalised. Recall is measured on the listed true pairs.

Decisions (policy): of each true duplicate set (closure of the true ``exact`` and ``duplicate`` pairs) exactly one
file is kept; both files of a true ``overlap`` within one split are kept; no training file stays kept beside a kept
evaluation file it shares ground with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import combinations

import pandas as pd

Pair = frozenset[str]

RELATIONS = ("exact", "duplicate", "overlap")  # strongest first
DUPLICATE_SHARE = 0.75  # decisions.duplicate_share's default, for a run that records none
BORDERLINE = 0.05  # a relation mistake this close to duplicate_share (true min share) is measurement error
EVALUATION_SPLITS = ("val",)  # the benchmark's evaluation split; train and unlabeled are training splits
WHOLE_COPY_TRANSFORMS = ("jpeg", "downscale", "brightness", "mirror", "rot90")  # all of the ground, both ways

# Issue name in the manifest -> ground-truth file kinds that should carry it.
ISSUE_TRUTH: dict[str, tuple[str, ...]] = {
    "blurry": ("blurry",),
    "dark": ("dark",),
    "bright": ("bright",),
    "corrupt": ("corrupt",),
    "outlier": ("ood",),
}


def _ratio(num: int, den: int) -> float | None:
    """Return num/den, or None when the ratio is undefined (nothing predicted, or nothing to find)."""
    return num / den if den else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None or precision + recall == 0:
        return None
    return 2 * precision * recall / (precision + recall)


def group_ids(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return each path's connected-component representative over ``pairs`` (union-find)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving keeps the trees flat
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def components(pairs: Iterable[tuple[str, str]]) -> list[set[str]]:
    """Return the connected components of ``pairs`` as sets of paths, in a stable order."""
    members: dict[str, set[str]] = {}
    for path, root in group_ids(pairs).items():
        members.setdefault(root, set()).add(path)
    return [members[root] for root in sorted(members)]


# --- Facts: which pairs were found, and with which relation ------------------------------------------------------


def pairs_from_groups(manifest: pd.DataFrame) -> pd.DataFrame:
    """Return the related pairs of a system that records only groups (plain fastdup): every unordered pair of rows
    sharing a non-null ``dup_group``, each with relation ``duplicate``."""
    grouped = manifest.dropna(subset=["dup_group"]).groupby("dup_group")["path"]
    rows = [pair for _, paths in grouped for pair in combinations(sorted(set(paths)), 2)]
    return pd.DataFrame({"path_a": [a for a, _ in rows], "path_b": [b for _, b in rows],
                         "relation": "duplicate"}, columns=["path_a", "path_b", "relation"])


def predicted_relations(pairs: pd.DataFrame) -> dict[Pair, str]:
    """Return each predicted unordered pair with its recorded relation: the rows of ``pairs`` plus every pair within
    a same-bytes set (the closure of the ``exact`` stars, as ``exact``). A pair recorded twice keeps its strongest
    relation."""
    rank = {relation: k for k, relation in enumerate(RELATIONS)}
    ordered = sorted(zip(pairs["path_a"], pairs["path_b"], pairs["relation"]),
                     key=lambda row: rank.get(row[2], len(rank)))
    out: dict[Pair, str] = {}
    exact = [(a, b) for a, b, relation in ordered if relation == "exact"]
    for members in components(exact):
        for pair in combinations(sorted(members), 2):
            out[frozenset(pair)] = "exact"
    for a, b, relation in ordered:
        if a != b:
            out.setdefault(frozenset((a, b)), relation)
    return out


def _by_transform(transform: pd.Series, values: pd.DataFrame) -> pd.DataFrame:
    """``values`` (one row per true pair) repeated under ``natural`` for every ``natural:<kind>`` row and under
    ``injected`` for every other, so each can be aggregated per transform, per natural kind and per family."""
    frame = values.assign(transform=transform.to_numpy())
    is_natural = frame["transform"].str.startswith("natural:")
    return pd.concat([frame, frame[is_natural].assign(transform="natural"),
                      frame[~is_natural].assign(transform="injected")])


def detection_scores(pairs: pd.DataFrame, truth_pairs: pd.DataFrame) -> dict:
    """Return the detection of related pairs: precision (a predicted pair is right when both files lie in one true
    group), recall over the true pairs overall and per transform (natural kinds included), F1, the relations
    recorded for the found pairs per transform, and the wrong and the missed pairs themselves, for reading."""
    predicted = predicted_relations(pairs)
    group = group_ids(zip(truth_pairs["a"], truth_pairs["b"]))
    false_pairs = sorted(sorted(p) for p in predicted
                         if not all(x in group for x in p) or len({group[x] for x in p}) > 1)
    correct = len(predicted) - len(false_pairs)
    relation = [predicted.get(frozenset((a, b))) for a, b in zip(truth_pairs["a"], truth_pairs["b"])]
    found = [r is not None for r in relation]
    missed = truth_pairs.loc[[not f for f in found], ["a", "b", "transform"]]
    precision, recall = _ratio(correct, len(predicted)), _ratio(sum(found), len(found))
    by = _by_transform(truth_pairs["transform"], pd.DataFrame({"found": found, "relation": relation}))
    per_transform = by.groupby("transform")["found"].agg(["sum", "count"])
    relations = by.dropna(subset=["relation"]).groupby("transform")["relation"].value_counts()
    return {
        "predicted_pairs": len(predicted), "correct_pairs": correct, "true_pairs": len(found),
        "found_pairs": sum(found), "precision": precision, "recall": recall, "f1": _f1(precision, recall),
        "recall_by_transform": {t: {"found": int(r["sum"]), "total": int(r["count"]),
                                    "recall": _ratio(int(r["sum"]), int(r["count"]))}
                                for t, r in per_transform.iterrows()},
        "relations_by_transform": {t: {name: int(relations.get((t, name), 0)) for name in RELATIONS}
                                   for t in per_transform.index},
        "false_pairs": false_pairs,
        "missed_pairs": missed.values.tolist(),
    }


# --- The truth's relations ---------------------------------------------------------------------------------------


def true_relation(share_a: float, share_b: float, duplicate_share: float = DUPLICATE_SHARE) -> str:
    """``duplicate`` when the shared ground covers at least ``duplicate_share`` of both images, else ``overlap``."""
    return "duplicate" if min(share_a, share_b) >= duplicate_share else "overlap"


def true_shares(transform: str, params: dict, shared: float | None) -> tuple[float, float] | None:
    """Return (share of a, share of b) for one true pair, or None for a transform whose shares are unknown.

    Injected pairs are (copy, original): a whole-picture transform shows all of the ground both ways; a crop keeps
    ``area`` of the original, all of it ground the original shows. Natural pairs (``shared``: footprint intersection
    over the smaller footprint): ``shifted`` and ``overlap`` tiles have one scale and size, so both shares are
    ``shared``; in ``zoom2x`` b is the 2x zoom, whose footprint is a quarter of a's.
    """
    if transform == "exact" or transform in WHOLE_COPY_TRANSFORMS:
        return 1.0, 1.0
    if transform == "crop":
        return None if params.get("area") is None else (1.0, float(params["area"]))
    if shared is None or pd.isna(shared):
        return None
    if transform in ("natural:shifted", "natural:overlap"):
        return float(shared), float(shared)
    if transform == "natural:zoom2x":
        return float(shared) / 4, float(shared)
    return None


def truth_relations(files: pd.DataFrame, truth_pairs: pd.DataFrame, overlaps: pd.DataFrame,
                    duplicate_share: float = DUPLICATE_SHARE) -> pd.DataFrame:
    """Return the truth pairs with their true ``share_a``, ``share_b``, ``min_share`` and ``relation`` (``exact``,
    ``duplicate``, ``overlap``; None where unknown) under ``duplicate_share``, and both files' ``split_a``,
    ``split_b``.

    Crop areas come from the copies' recorded ``params`` (``files``); natural shares from ``overlaps`` (the
    ``rsscn7_overlaps.csv`` table: ``a``, ``b`` named relative to RSSCN7, ``shared``), matched through the originals'
    ``source``.
    """
    params = {path: json.loads(p) if isinstance(p, str) and p else {}
              for path, p in zip(files["path"], files.get("params", pd.Series([None] * len(files))))}
    source = dict(zip(files["path"], files.get("source", pd.Series([None] * len(files)))))
    shared = {(a, b): s for a, b, s in
              zip(overlaps["a"], overlaps["b"], overlaps.get("shared", pd.Series([None] * len(overlaps))))}
    shares = [true_shares(t, params.get(a, {}), shared.get((source.get(a), source.get(b))))
              for a, b, t in zip(truth_pairs["a"], truth_pairs["b"], truth_pairs["transform"])]
    out = truth_pairs.copy()
    out["share_a"] = [s[0] if s else float("nan") for s in shares]
    out["share_b"] = [s[1] if s else float("nan") for s in shares]
    out["min_share"] = out[["share_a", "share_b"]].min(axis=1, skipna=False)
    out["relation"] = [None if s is None else "exact" if t == "exact" else true_relation(*s, duplicate_share)
                       for s, t in zip(shares, truth_pairs["transform"])]
    split = dict(zip(files["path"], files["split"]))
    out["split_a"], out["split_b"] = out["a"].map(split), out["b"].map(split)
    return out


def relation_scores(pairs: pd.DataFrame, truth: pd.DataFrame, duplicate_share: float = DUPLICATE_SHARE,
                    margin: float = BORDERLINE) -> dict:
    """Return how well the recorded relation of each found true pair matches its true relation: the confusion
    (true relation -> recorded relation, ``missed`` for pairs not found), the accuracy over the found pairs, and
    the mistakes, counting apart the borderline ones whose true min share lies within ``margin`` of
    ``duplicate_share`` (measurement error rather than a wrong call). Truth pairs of unknown relation are skipped."""
    predicted = predicted_relations(pairs)
    known = truth[truth["relation"].notna()]
    recorded = [predicted.get(frozenset((a, b))) for a, b in zip(known["a"], known["b"])]
    confusion = {t: dict.fromkeys((*RELATIONS, "missed"), 0) for t in RELATIONS}
    mistakes = []
    for (a, b, transform, true, share), got in zip(
            known[["a", "b", "transform", "relation", "min_share"]].itertuples(index=False), recorded):
        confusion[true][got or "missed"] += 1
        if got is not None and got != true:
            near = abs(share - duplicate_share) <= margin + 1e-9  # 0.70 is within 0.05 of 0.75
            mistakes.append([a, b, transform, true, got, share, bool(near)])
    found = sum(got is not None for got in recorded)
    borderline = sum(m[-1] for m in mistakes)
    return {"duplicate_share": duplicate_share, "margin": margin, "confusion": confusion, "found": found,
            "correct": found - len(mistakes), "accuracy": _ratio(found - len(mistakes), found),
            "mistakes": len(mistakes), "borderline": borderline, "clear_mistakes": len(mistakes) - borderline,
            "unknown": len(truth) - len(known), "mistaken_pairs": mistakes}


# --- Decisions: what was kept ------------------------------------------------------------------------------------


def _issue_list(issues: object) -> list[str]:
    """A manifest's ``issues`` cell as a list (Parquet gives arrays back; a missing list means no issue)."""
    return [] if issues is None or isinstance(issues, float) else list(issues)


def _kept(manifest: pd.DataFrame) -> set[str]:
    """The paths whose ``action`` is ``keep`` (a file missing from the manifest is not kept)."""
    return set(manifest.loc[manifest["action"] == "keep", "path"])


def _column(manifest: pd.DataFrame, name: str) -> dict[str, str]:
    """``path`` -> non-null value of an optional column (empty when the manifest has no such column)."""
    if name not in manifest.columns:
        return {}
    present = manifest[manifest[name].notna()]
    return dict(zip(present["path"], present[name].astype(str)))


def not_kept_reasons(manifest: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Return, for each file not kept, why: (``leak``, ``issue``, ``duplicate`` or ``other``; a short text). A leak
    (``leaks_into`` set) comes first, then a quality issue of :data:`ISSUE_TRUTH`, then ``duplicate_of``."""
    leaks, copies, reasons = (_column(manifest, c) for c in ("leaks_into", "duplicate_of", "reason"))
    out = {}
    for path, action, issues in zip(manifest["path"], manifest["action"], manifest["issues"]):
        if action == "keep":
            continue
        quality = [i for i in _issue_list(issues) if i in ISSUE_TRUTH]
        if path in leaks:
            out[path] = ("leak", f"{action}: leaks into {leaks[path]}")
        elif quality:
            out[path] = ("issue", f"{action}: {', '.join(quality)}")
        elif path in copies:
            out[path] = ("duplicate", f"{action}: duplicate of {copies[path]}")
        else:
            out[path] = ("other", f"{action}: {reasons.get(path, '')}".rstrip(": "))
    return out


def _training_and_evaluation(truth: pd.DataFrame, evaluation_splits: tuple[str, ...]) -> pd.DataFrame:
    """The true pairs joining a training file to an evaluation file, as columns ``train``, ``evaluation``."""
    a_eval, b_eval = truth["split_a"].isin(evaluation_splits), truth["split_b"].isin(evaluation_splits)
    cross = truth[(a_eval != b_eval) & truth["split_a"].notna() & truth["split_b"].notna()]
    a_is_eval = a_eval[cross.index]
    return pd.DataFrame({"train": cross["b"].where(a_is_eval, cross["a"]),
                         "evaluation": cross["a"].where(a_is_eval, cross["b"]),
                         "transform": cross["transform"], "relation": cross["relation"]})


def _true_leakers(truth: pd.DataFrame, evaluation_splits: tuple[str, ...]) -> set[str]:
    """The training files that truly share ground with an evaluation file: directly (a true pair), or as a training
    member of a true duplicate set holding such a file (a copy of it)."""
    direct = set(_training_and_evaluation(truth, evaluation_splits)["train"])
    split = {**dict(zip(truth["a"], truth["split_a"])), **dict(zip(truth["b"], truth["split_b"]))}
    duplicates = truth[truth["relation"].isin(("exact", "duplicate"))]
    through_copies = {p for members in components(zip(duplicates["a"], duplicates["b"])) if members & direct
                      for p in members if pd.notna(split.get(p)) and split.get(p) not in evaluation_splits}
    return direct | through_copies


def duplicate_set_scores(manifest: pd.DataFrame, truth: pd.DataFrame,
                         evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS) -> dict:
    """Return how many files of each true duplicate set (closure of the true ``exact`` and ``duplicate`` pairs) are
    kept, or sent to review (a label conflict's kept copy goes to a person): sets with exactly one, none or several
    such files, and how many of the sets with one keep it in review. A set keeping none is ``explained`` when each
    member is set
    aside for a quality issue or a leak, as the manifest records it or as the truth has it (a training file that
    truly shares ground with an evaluation file, itself or through a copy); every set keeping none is listed with
    its members' reasons, and every set keeping several with its kept files."""
    kept, why = set(manifest.loc[manifest["action"] != "drop", "path"]), not_kept_reasons(manifest)
    reviewed = set(manifest.loc[manifest["action"] == "review", "path"])
    leakers = _true_leakers(truth, evaluation_splits)
    duplicates = truth[truth["relation"].isin(("exact", "duplicate"))]
    sets = components(zip(duplicates["a"], duplicates["b"]))
    several, none, in_review = [], [], 0
    for members in sets:
        count = len(members & kept)
        in_review += count == 1 and bool(members & reviewed)
        if count > 1:
            several.append(sorted(members & kept))
        elif count == 0:
            reasons = {p: why.get(p, ("missing", "not in the manifest")) for p in sorted(members)}
            none.append({"explained": all(kind in ("leak", "issue") or p in leakers
                                          for p, (kind, _) in reasons.items()),
                         "members": {p: text + (" (truly leaks)" if p in leakers else "")
                                     for p, (_, text) in reasons.items()}})
    one = len(sets) - len(several) - len(none)
    explained = sum(s["explained"] for s in none)
    return {"sets": len(sets), "one_kept": one, "share_one_kept": _ratio(one, len(sets)), "one_in_review": in_review,
            "none_kept": len(none), "none_kept_explained": explained, "several_kept": len(several),
            "several_kept_sets": several, "none_kept_sets": none}


def overlap_keep_scores(manifest: pd.DataFrame, truth: pd.DataFrame,
                        evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS) -> dict:
    """Return the share of true ``overlap`` pairs within one split whose two files are both kept (target: all).

    A pair not both kept is ``explained`` when each file not kept has another true reason to go: it belongs to a
    true duplicate set (another copy may be the one kept) or it truly shares ground with an evaluation file (itself
    or through a copy). Those pairs are listed with each file's action."""
    kept = _kept(manifest)
    action = dict(zip(manifest["path"], manifest["action"]))
    duplicates = truth[truth["relation"].isin(("exact", "duplicate"))]
    excused = set(duplicates["a"]) | set(duplicates["b"]) | _true_leakers(truth, evaluation_splits)
    same = truth[(truth["relation"] == "overlap") & (truth["split_a"] == truth["split_b"])]
    lost = [(a, b, t) for a, b, t in zip(same["a"], same["b"], same["transform"]) if not {a, b} <= kept]
    explained = sum(all(p in excused for p in (a, b) if p not in kept) for a, b, _ in lost)
    both = len(same) - len(lost)
    return {"pairs": len(same), "both_kept": both, "share_both_kept": _ratio(both, len(same)),
            "not_both_kept_explained": explained,
            "not_both_kept": [[a, b, t, action.get(a, "missing"), action.get(b, "missing")] for a, b, t in lost]}


def leak_decision_scores(manifest: pd.DataFrame, truth: pd.DataFrame,
                         evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS) -> dict:
    """Return the decisions on true pairs (any relation) joining a training file to an evaluation file: how many
    keep both files (target 0), and of those whose training file is not kept, how many name an evaluation file in
    its ``leaks_into`` (or ``duplicate_of``) and how many name this very pair's evaluation file."""
    kept = _kept(manifest)
    split = dict(zip(manifest["path"], manifest["split"]))
    leaks, copies = _column(manifest, "leaks_into"), _column(manifest, "duplicate_of")
    cross = _training_and_evaluation(truth, evaluation_splits)
    both, unnamed, dropped, named, named_this = [], [], 0, 0, 0
    for train, evaluation, transform in zip(cross["train"], cross["evaluation"], cross["transform"]):
        if train in kept:
            if evaluation in kept:
                both.append([train, evaluation, transform])
            continue
        dropped += 1
        target = leaks.get(train) or copies.get(train)
        named += split.get(target) in evaluation_splits
        named_this += target == evaluation
        if split.get(target) not in evaluation_splits:
            unnamed.append([train, evaluation, transform, target])
    return {"pairs": len(cross), "both_kept": len(both), "training_not_kept": dropped,
            "names_evaluation_file": named, "names_this_file": named_this,
            "share_named": _ratio(named, dropped), "both_kept_pairs": both, "unnamed": unnamed}


# --- Issues and flags ---------------------------------------------------------------------------------------------


def _flagged(manifest: pd.DataFrame, issue: str) -> set[str]:
    """Return the paths whose ``issues`` list contains ``issue`` (a missing list means no issue)."""
    return {path for path, issues in zip(manifest["path"], manifest["issues"]) if issue in _issue_list(issues)}


def _precision_recall(flagged: set[str], truth: set[str], correct: set[str] | None = None) -> dict:
    """Score a flagged set; ``correct`` (default ``truth``) is what may be flagged without being a false alarm."""
    correct = truth if correct is None else correct
    tp_precision, tp_recall = len(flagged & correct), len(flagged & truth)
    return {"flagged": len(flagged), "true": len(truth), "found": tp_recall,
            "precision": _ratio(tp_precision, len(flagged)), "recall": _ratio(tp_recall, len(truth))}


def issue_scores(manifest: pd.DataFrame, files: pd.DataFrame) -> dict[str, dict]:
    """Return precision and recall of each issue in :data:`ISSUE_TRUTH` against the files' true kinds."""
    return {issue: _precision_recall(_flagged(manifest, issue), set(files.loc[files["kind"].isin(kinds), "path"]))
            for issue, kinds in ISSUE_TRUTH.items()}


def _spanning_groups(files: pd.DataFrame, truth_pairs: pd.DataFrame, column: str) -> set[str]:
    """Return the paths in true groups whose members take two or more distinct non-null ``column`` values."""
    values = files.set_index("path")[column]
    return {p for paths in components(zip(truth_pairs["a"], truth_pairs["b"]))
            if values.reindex(list(paths)).dropna().nunique() > 1 for p in paths}


def leak_flag_scores(manifest: pd.DataFrame, files: pd.DataFrame, truth: pd.DataFrame) -> dict[str, dict]:
    """Return recall (and precision) of the ``split_leak`` and ``label_conflict`` flags.

    ``split_leak`` is about any true pair: every file of a true pair that crosses splits should be flagged, and a
    flag is right when the file's true group (closure included) spans several splits. ``label_conflict`` is about
    duplicates only: the same over the true ``exact`` and ``duplicate`` pairs that carry two labels.
    """
    duplicates = truth[truth["relation"].isin(("exact", "duplicate"))]
    out = {}
    for issue, pairs, pair_column, file_column in (("split_leak", truth, "cross_split", "split"),
                                                   ("label_conflict", duplicates, "label_conflict", "label")):
        hits = pairs[pairs[pair_column].astype(bool)]
        out[issue] = _precision_recall(_flagged(manifest, issue), set(hits["a"]) | set(hits["b"]),
                                       correct=_spanning_groups(files, pairs, file_column))
    return out


def clean_keep_share(manifest: pd.DataFrame, files: pd.DataFrame, truth_pairs: pd.DataFrame) -> dict:
    """Return the share of clean, unique originals (no injected relative, no natural overlap) kept.

    A clean file missing from the manifest counts as not kept.
    """
    related = set(truth_pairs["a"]) | set(truth_pairs["b"])
    clean = set(files.loc[files["kind"] == "original", "path"]) - related
    kept = _kept(manifest) & clean
    return {"clean": len(clean), "kept": len(kept), "share": _ratio(len(kept), len(clean))}


def score_manifest(manifest: pd.DataFrame, pairs: pd.DataFrame, files: pd.DataFrame, truth: pd.DataFrame,
                   duplicate_share: float = DUPLICATE_SHARE,
                   evaluation_splits: tuple[str, ...] = EVALUATION_SPLITS) -> dict:
    """Return every benchmark score of one run (its manifest and its related pairs) as a JSON-ready dict; ``truth``
    is :func:`truth_relations`' frame for the same ``duplicate_share``."""
    return {
        "rows": len(manifest),
        "duplicate_share": duplicate_share,
        "detection": detection_scores(pairs, truth),
        "relations": relation_scores(pairs, truth, duplicate_share),
        "duplicate_sets": duplicate_set_scores(manifest, truth, evaluation_splits),
        "overlaps": overlap_keep_scores(manifest, truth, evaluation_splits),
        "leaks": leak_decision_scores(manifest, truth, evaluation_splits),
        "issues": issue_scores(manifest, files),
        "flags": leak_flag_scores(manifest, files, truth),
        "clean_keep": clean_keep_share(manifest, files, truth),
    }
