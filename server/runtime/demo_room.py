"""The demo's sample video: a small synthetic room, rendered with numpy alone (deterministic, well under a second).

A box room (tiled floor, three wall colours, a door and a window) with four chairs (a seat and a back, each an
axis-aligned box in its own colour) and a table, seen from a camera walking along one wall while it pans across
the room. Rays are cast per pixel against the room's inside and every box (slab test); faces are shaded by a
fixed light. It is a room in the geometric sense VGGT and space-aware sampling care about (depth, parallax, a
camera path), so "How many chairs are in this room?" has an answer: four.
"""

from __future__ import annotations

import numpy as np

ROOM = np.array([6.0, 2.6, 5.0])  # x (across), y (up), z (depth) in metres; the room spans 0..ROOM
FLOOR, CEILING = (0.55, 0.42, 0.30), (0.93, 0.93, 0.91)
WALLS = {0: (0.80, 0.76, 0.66), 2: (0.70, 0.78, 0.84)}  # by axis: side walls, back/front walls
LIGHT = np.array([0.35, 0.8, -0.45]) / np.linalg.norm([0.35, 0.8, -0.45])


def _chair(x: float, z: float, colour: tuple[float, float, float], back_at: str) -> list[tuple]:
    """A seat (0.45 m square at 0.45 m) and a back on one of its sides, as (low corner, high corner, colour)."""
    seat = ((x - 0.22, 0.0, z - 0.22), (x + 0.22, 0.47, z + 0.22), colour)
    dx, dz = {"+z": (0, 1), "-z": (0, -1), "+x": (1, 0), "-x": (-1, 0)}[back_at]
    cx, cz = x + 0.2 * dx, z + 0.2 * dz
    half_x, half_z = (0.03, 0.22) if dx else (0.22, 0.03)
    back = ((cx - half_x, 0.47, cz - half_z), (cx + half_x, 0.95, cz + half_z), tuple(0.8 * c for c in colour))
    return [seat, back]


BOXES = [
    ((2.3, 0.0, 2.6), (3.7, 0.74, 3.5), (0.45, 0.30, 0.20)),  # table
    *_chair(2.0, 3.05, (0.85, 0.20, 0.18), "-x"),
    *_chair(4.0, 3.05, (0.18, 0.45, 0.85), "+x"),
    *_chair(3.0, 2.2, (0.20, 0.65, 0.30), "-z"),
    *_chair(3.0, 3.9, (0.95, 0.75, 0.15), "+z"),
    ((0.0, 0.0, 3.8), (0.03, 2.05, 4.7), (0.45, 0.33, 0.25)),  # door on the left wall
    ((5.97, 1.0, 1.6), (6.0, 1.9, 3.2), (0.62, 0.80, 0.95)),  # window on the right wall
]


def _camera(t: float) -> tuple[np.ndarray, np.ndarray]:
    """Position and rotation (columns: right, up, forward) at ``t`` in [0, 1]: a walk along the front wall while
    panning from the left of the room to its right, looking slightly down."""
    position = np.array([1.0 + 4.0 * t, 1.85, 0.5 + 0.3 * np.sin(np.pi * t)])
    yaw, pitch = np.radians(-30.0 + 60.0 * t), np.radians(-24.0)
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    return position, np.stack([right, np.cross(forward, right), forward], axis=1)


def _shade(colour: np.ndarray, normal_axis: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Lambert shading of axis-aligned faces (the normal faces the camera), plus an ambient term."""
    facing = -np.sign(np.take_along_axis(direction, normal_axis[..., None], axis=-1))[..., 0]
    cosine = np.abs(LIGHT[normal_axis] * facing)
    return colour * (0.45 + 0.55 * cosine)[..., None]


def render_frame(t: float, height: int, width: int, fov_deg: float = 75.0) -> np.ndarray:
    """One uint8 [H, W, 3] frame of the room at camera time ``t`` in [0, 1]."""
    position, rotation = _camera(t)
    focal = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u + 0.5 - width / 2) / focal, -(v + 0.5 - height / 2) / focal, np.ones_like(u)], axis=-1)
    direction = rays @ rotation.T
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    safe = np.where(np.abs(direction) < 1e-9, 1e-9, direction)

    # the room's inside: the nearest wall along each axis, the first of the three hit
    exits = (np.where(safe > 0, ROOM, 0.0) - position) / safe
    axis = np.argmin(exits, axis=-1)
    depth = np.take_along_axis(exits, axis[..., None], axis=-1)[..., 0]
    hit = position + depth[..., None] * direction
    colour = np.empty((height, width, 3))
    colour[:] = WALLS[2]
    colour[axis == 0] = WALLS[0]
    floor, ceiling = (axis == 1) & (direction[..., 1] < 0), (axis == 1) & (direction[..., 1] > 0)
    tiles = (np.floor(hit[..., 0] / 0.5) + np.floor(hit[..., 2] / 0.5)) % 2
    colour[floor] = np.array(FLOOR) * (0.85 + 0.15 * tiles[floor, None])
    colour[ceiling] = CEILING

    for low, high, box_colour in BOXES:  # slab test: entry distance and the axis it entered through
        t1, t2 = (np.array(low) - position) / safe, (np.array(high) - position) / safe
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        entry = near.max(axis=-1)
        closer = (entry <= far.min(axis=-1)) & (entry > 0) & (entry < depth)
        depth = np.where(closer, entry, depth)
        axis = np.where(closer, near.argmax(axis=-1), axis)
        colour[closer] = box_colour

    shaded = _shade(colour, axis, direction) * (1.0 - 0.04 * np.clip(depth - 2.0, 0.0, 6.0))[..., None]
    return (np.clip(shaded, 0.0, 1.0) * 255).round().astype(np.uint8)


def render_room_video(frames: int, height: int, width: int) -> np.ndarray:
    """uint8 [T, H, W, 3]: the camera's walk in ``frames`` steps."""
    times = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    return np.stack([render_frame(float(t), height, width) for t in times])
