"""The ground two images share, from the map between them.

A map is a 3 x 3 matrix (a homography; a similarity fit or a placement is a special case) from image a's unit
square to image b's: coordinates are x / width and y / height of each image, so a map means the same whatever
size the images were measured at. The shared region is where a's square, mapped into b, meets b's square; mapped
back, the same region in a. Its area in each unit square is the share of that image that shows ground the other
shows too (`shares`).
"""

import math

import numpy as np

# A rotation within this many degrees of a multiple of 90 is reported as that multiple.
RIGHT_ANGLE_TOLERANCE_DEG = 10.0
# A size ratio within this distance of 1 (in original pixels) is reported as unchanged size.
SAME_SCALE_TOLERANCE = 0.1
# An image at least this share of which shows shared ground lies within the other: `crop` when only one does,
# `shift` when neither does. (Whether a pair is a duplicate is decided elsewhere, from both shares.)
WITHIN_SHARE = 0.9

UNIT_SQUARE = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
IDENTITY = np.eye(3)


def to_unit_map(pixel_map: np.ndarray, size_a: tuple[float, float], size_b: tuple[float, float]) -> np.ndarray:
    """A map (3 x 3, or the 2 x 3 of an affine one) between two pixel frames of sizes (width, height) as a map
    between their unit squares."""
    full = np.vstack([pixel_map, [0.0, 0.0, 1.0]]) if pixel_map.shape == (2, 3) else np.asarray(pixel_map, float)
    return np.diag([1.0 / size_b[0], 1.0 / size_b[1], 1.0]) @ full @ np.diag([size_a[0], size_a[1], 1.0])


def project(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Points (N x 2) through a 3 x 3 map."""
    homogeneous = np.column_stack([points, np.ones(len(points))]) @ np.asarray(matrix, float).T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def _area(polygon: np.ndarray) -> float:
    """Signed area of a polygon (N x 2), positive when its corners turn anticlockwise (y up)."""
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * float(x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0])


def inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 3 x 3 map, written out (the adjugate over the determinant): numpy's calls into OpenBLAS,
    which took milliseconds a call beside busy threads, and OpenCV's would load OpenCV into every process that only
    reads maps (the gate, the report)."""
    (a, b, c), (d, e, f), (g, h, i) = np.asarray(matrix, float)
    adjugate = np.array([[e * i - f * h, c * h - b * i, b * f - c * e],
                         [f * g - d * i, a * i - c * g, c * d - a * f],
                         [d * h - e * g, b * g - a * h, a * e - b * d]])
    return adjugate / (a * adjugate[0, 0] + b * adjugate[1, 0] + c * adjugate[2, 0])


def _clipped(polygon: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The part of a convex polygon inside the unit square (Sutherland-Hodgman, in float64: OpenCV's convex
    intersection loses whole slivers at this scale, its tolerances being absolute). Plain floats: a call costs a
    few microseconds, and verification takes one for every keypoint fit it judges."""
    for axis, bound, sign in ((0, 0.0, 1.0), (0, 1.0, -1.0), (1, 0.0, 1.0), (1, 1.0, -1.0)):
        clipped = []
        previous = polygon[-1] if polygon else None
        for current in polygon:
            current_in, previous_in = sign * (current[axis] - bound) >= 0, sign * (previous[axis] - bound) >= 0
            if current_in != previous_in:  # the edge crosses the bound: keep the crossing
                t = (bound - previous[axis]) / (current[axis] - previous[axis])
                clipped.append((previous[0] + t * (current[0] - previous[0]),
                                previous[1] + t * (current[1] - previous[1])))
            if current_in:
                clipped.append(current)
            previous = current
        polygon = clipped
    return polygon


def stacked(maps) -> np.ndarray:
    """Maps as stored (9 numbers each, in a column of pairs) as an array of 3 x 3 matrices (N x 3 x 3)."""
    return np.array([np.asarray(m, np.float64).reshape(3, 3) for m in maps]).reshape(-1, 3, 3)


def square_boxes(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box (lowest and highest corner, N x 2 each) of the unit square under each of `maps`
    (N x 3 x 3); NaN where part of the square maps beyond the horizon, which no box bounds."""
    corners = np.einsum("nij,cj->nci", maps, np.column_stack([UNIT_SQUARE, np.ones(4)]))
    beyond = (corners[..., 2] <= 0).any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mapped = corners[..., :2] / corners[..., 2:]
    low, high = mapped.min(axis=1), mapped.max(axis=1)
    low[beyond], high[beyond] = np.nan, np.nan
    return low, high


def shared_regions(a_to_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The region of a (in a's unit square) and of b (in b's) that show the ground both show: convex polygons
    (N x 2 each), empty (0 x 2) when the map leaves them nothing in common or folds a's square over the horizon."""
    nothing = np.empty((0, 2))
    matrix = np.asarray(a_to_b, float).reshape(3, 3)
    if np.any(UNIT_SQUARE @ matrix[2, :2] + matrix[2, 2] <= 0):
        return nothing, nothing  # part of a's square maps beyond the horizon: no plausible region
    polygon_b = np.array(_clipped([tuple(corner) for corner in project(UNIT_SQUARE, matrix).tolist()]),
                         float).reshape(-1, 2)
    if abs(_area(polygon_b)) <= 0:
        return nothing, nothing
    return project(polygon_b, inverse(matrix)), polygon_b


def shares(a_to_b: np.ndarray) -> tuple[float, float]:
    """The share of a's area and of b's area that show ground the other shows too (each at most 1)."""
    region_a, region_b = shared_regions(a_to_b)
    return min(1.0, abs(_area(region_a))), min(1.0, abs(_area(region_b)))


def framing(share_a: float, share_b: float) -> list[str]:
    """`crop` when one image lies within the other but not the other within it, `shift` when neither does."""
    within = (share_a >= WITHIN_SHARE) + (share_b >= WITHIN_SHARE)
    return ["crop"] if within == 1 else ["shift"] if within == 0 else []


def describe(linear: np.ndarray, share_a: float, share_b: float) -> str:
    """How b relates to a, '+'-joined from same, hflip, vflip, rotate90/rotate180/rotate270 (clockwise), rotate
    (another angle), rescale, crop and shift: from the linear part (2 x 2) of the map from a to b in the images'
    own pixels, and the shares (`framing`)."""
    determinant = float(linear[0, 0] * linear[1, 1] - linear[0, 1] * linear[1, 0])
    mirrored = determinant < 0
    turn = linear @ np.diag([-1.0, 1.0]) if mirrored else linear  # what follows a left-right flip
    angle = math.degrees(math.atan2(turn[1, 0], turn[0, 0])) % 360.0
    quarter_turns = round(angle / 90.0) % 4
    off_right_angle = abs(angle - 90.0 * round(angle / 90.0)) > RIGHT_ANGLE_TOLERANCE_DEG
    parts: list[str] = []
    if mirrored and quarter_turns == 2 and not off_right_angle:
        parts.append("vflip")  # a left-right flip followed by a half turn is an upside-down flip
    else:
        if mirrored:
            parts.append("hflip")
        if off_right_angle:
            parts.append("rotate")
        elif quarter_turns:
            parts.append(f"rotate{90 * quarter_turns}")
    if abs(math.sqrt(abs(determinant)) - 1.0) > SAME_SCALE_TOLERANCE:
        parts.append("rescale")
    parts += framing(share_a, share_b)
    return "+".join(parts) if parts else "same"
