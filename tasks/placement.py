"""Where verified relations place files relative to each other, and which unverified pairs they say overlap.

Tiles cut from one scene are found a few at a time: similarity proposes some neighbours, and the verified pairs
link each tile to some of the others. Their maps (`tasks.geometry`) chain: within a connected set of verified
relations, every file can be placed in the frame of one of them (the maps multiplied along a breadth-first tree),
and two files placed over each other share ground whether or not similarity proposed them. Such pairs are worth
verifying (`predicted_overlaps`); verification still decides, so a map that drifted along a long chain costs a
check, not a wrong relation.
"""

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

from tasks.geometry import shares, square_boxes, stacked
from tasks.schema import PairCol


def _placements(rows: np.ndarray, a: np.ndarray, b: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of `rows`' component (connected by the edges a[i] -> b[i], `maps[i]` from a's unit square to b's), and
    the map from its component's first file's unit square to its own (3 x 3), along a breadth-first tree."""
    count = len(rows)
    undirected = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(count, count)).tocsr()
    undirected = undirected + undirected.T
    _, component = connected_components(undirected, directed=False)
    edge = {(int(source), int(target)): index for index, (source, target) in enumerate(zip(a, b))}
    from_root = np.tile(np.eye(3), (count, 1, 1))
    inverse = np.linalg.inv(maps) if len(maps) else maps
    for root in np.unique(component, return_index=True)[1]:
        order, parent = breadth_first_order(undirected, root, directed=False, return_predecessors=True)
        for node in order[1:]:
            up = int(parent[node])
            forward = edge.get((up, int(node)))  # the relation runs up -> node, or else node -> up
            step = maps[forward] if forward is not None else inverse[edge[(int(node), up)]]
            from_root[node] = step @ from_root[up]
    return component, from_root


def predicted_overlaps(verified: pd.DataFrame, min_share: float) -> pd.DataFrame:
    """Pairs of files (row_a < row_b) that are not in `verified` but that its relations (rows row_a, row_b and maps
    a_to_b) place over each other so that the shared region covers at least `min_share` of either file, with that
    predicted share (`predicted_share`)."""
    none = pd.DataFrame({PairCol.ROW_A: pd.Series(dtype=np.int64), PairCol.ROW_B: pd.Series(dtype=np.int64),
                         "predicted_share": pd.Series(dtype=float)})
    if verified.empty:
        return none
    rows, ends = np.unique(np.concatenate([verified[PairCol.ROW_A], verified[PairCol.ROW_B]]), return_inverse=True)
    a, b = ends[: len(verified)], ends[len(verified):]
    maps = stacked(verified[PairCol.A_TO_B])
    component, from_root = _placements(rows, a, b, maps)
    # Each file's square in its component's frame, as a bounding box: pairs whose boxes meet are measured exactly.
    to_root = np.linalg.inv(from_root)
    low, high = square_boxes(to_root)
    side = float(np.nanmedian(high - low)) or 1.0
    # Grid cells of the typical side: two files can meet only if they share a cell.
    first, last = np.floor(low / side), np.floor(high / side)
    cells = []
    for position in range(len(rows)):
        if not np.isfinite(first[position]).all() or (last[position] - first[position] > 8).any():
            continue  # no box, or a box sprawling over many cells: a map too distorted to place by
        for x in range(int(first[position, 0]), int(last[position, 0]) + 1):
            for y in range(int(first[position, 1]), int(last[position, 1]) + 1):
                cells.append((component[position], x, y, position))
    if not cells:
        return none
    grid = pd.DataFrame(cells, columns=["component", "x", "y", "position"])
    meeting = grid.merge(grid, on=["component", "x", "y"], suffixes=("_a", "_b"))
    meeting = meeting.loc[meeting["position_a"] < meeting["position_b"], ["position_a", "position_b"]].drop_duplicates()
    u, v = meeting["position_a"].to_numpy(), meeting["position_b"].to_numpy()
    boxes_meet = ((low[u] < high[v]) & (low[v] < high[u])).all(axis=1)
    u, v = u[boxes_meet], v[boxes_meet]
    known = pd.DataFrame({"u": np.minimum(a, b), "v": np.maximum(a, b)})
    fresh = pd.DataFrame({"u": u, "v": v}).merge(known, on=["u", "v"], how="left", indicator=True)["_merge"]
    u, v = u[(fresh == "left_only").to_numpy()], v[(fresh == "left_only").to_numpy()]
    predicted = np.array([max(shares(from_root[j] @ to_root[i])) for i, j in zip(u, v)]).reshape(-1)
    enough = predicted >= min_share
    return pd.DataFrame({PairCol.ROW_A: rows[u[enough]], PairCol.ROW_B: rows[v[enough]],
                         "predicted_share": predicted[enough]})
