"""Seeded synthetic corridor clips with labels, for tests, tuning checks and the demo's looping door.

A fixed camera faces a front door across a corridor. Each scenario draws the wall, floor, a poster and
the door (frame, leaf with mouldings and knob), then adds what the scenario needs: the leaf turning
toward the camera about its hinge, corridor lights with start-up flicker, daylight drift, a moving
shadow, people passing at various depths, a bag left at the door, night infrared, shake, a covered
lens, defocus, a knocked camera, a person leaving. Geometry, colours, light, noise and timing come
from the seed; resolution, frame rate and length from the caller. Labels use the shared clips' format,
plus `moved_s` per opening: the first frame the leaf moves.

A `Variant` widens a clip toward what real doors showed: slow or fast swings (door closers),
frosted-glass leaves, leaves that swing away into the flat or toward a close camera (perspective: the
leaf grows and spills past the door frame), the ROI drawn loosely, auto-exposure and white balance
reacting to a bright room, and low-bitrate H.264. No H.264 encoder ships with OpenCV's wheels here, so
the codec is simulated: 16x16 macroblocks that barely changed are skipped (stale), the others coded as
8x8 DCT residuals with a coarse quantiser, and a finer-quantised keyframe every two seconds (the
keyframe pulse); the mp4v writer then stores the result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SCENARIOS = (
    "full_open",
    "brief_partial",
    "cycles",
    "lights_only",
    "lights_and_open",
    "passers_only",
    "passer_and_open",
    "bag_left",
    "night_open",
    "night_passers",
    "drift_shadow",
    "shake_only",
    "covered",
    "defocus",
    "bumped",
    "exit",
)
# Kinds outside the original issue-3 set: the held-out issue-3 test and the demo cycle through
# SCENARIOS only, so adding here changes none of their clips.
EXTRA_SCENARIOS = ("doorway_stand",)
ALL_SCENARIOS = SCENARIOS + EXTRA_SCENARIOS

_GAP_VISIBLE_DEG = 10.0  # the label's opening starts when the leaf has turned this far (a gap shows)


@dataclass(frozen=True)
class Variant:
    """How a clip departs from the plain corridor; ranges are drawn per seed."""

    swing_s: tuple[float, float] | None = None  # seconds to swing open (and to close), else 0.4-1.3
    leaf: str = "solid"  # "solid" or "glass" (frosted, translucent, low contrast against a pale wall)
    inward: bool = False  # the leaf swings away from the camera into the flat
    camera_distance: tuple[float, float] | None = None  # in door widths: small is a camera close to the door
    exposure_pump: float = 0.0  # 0-1: how hard auto-exposure and white balance react to a bright room
    lowbit: bool = False  # simulated low-bitrate H.264 (skipped macroblocks, coarse DCT, keyframe pulses)
    roi_margin: tuple[float, float] = (0.0, 0.0)  # ROI drawn loosely: share of the door width each side
    door_seed: int | None = None  # the same door (layout) under another seed's events: teach, then detect

    def __post_init__(self) -> None:
        if self.leaf not in ("solid", "glass"):
            raise SceneError(f"leaf must be solid or glass, not {self.leaf!r}")


PLAIN = Variant()


class SceneError(ValueError):
    """An unknown scenario or impossible clip parameters."""


@dataclass
class Person:
    start_s: float
    speed: float  # frame widths per second, signed
    depth: float  # 0 = against the wall, 1 = close to the camera
    colour: tuple[int, int, int]
    legs: tuple[int, int, int]
    stop: tuple[float, float] | None = None  # (x where it pauses as a fraction of width, seconds)
    path: Callable[[float], tuple[float, float, float] | None] | None = None  # t -> (x, depth, phase) override


@dataclass
class Plan:
    """Everything that happens in a clip, as functions of time; built from the seed."""

    angle: Callable[[float], float] = lambda t: 0.0  # leaf angle in degrees
    gain: Callable[[float], float] = lambda t: 1.0
    shadow: Callable[[float], float | None] = lambda t: None  # x centre of a moving shadow band, fraction of width
    people: list[Person] = field(default_factory=list)
    bag_from: float | None = None
    night: bool = False
    shake: tuple[float, float] | None = None
    covered: tuple[float, float] | None = None
    defocus: tuple[float, float] | None = None
    moved_from: float | None = None
    door_open: list[dict[str, float | None]] = field(default_factory=list)
    tamper: list[dict[str, Any]] = field(default_factory=list)
    exits: list[float] = field(default_factory=list)
    exposure_pump: float = 0.0  # auto-exposure's reaction to the bright room behind the open door


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    door: tuple[int, int, int, int]  # x, y, w, h of the door opening (frame inner edge)
    hinge_left: bool
    floor_y: int
    wall: np.ndarray
    leaf: np.ndarray  # leaf texture, door-sized, BGR
    interior: tuple[int, int, int]
    frame_colour: tuple[int, int, int]
    tilt: np.ndarray  # homography for the camera angle
    leaf_alpha: np.ndarray | None = None  # per-pixel opacity of a glass leaf (None: solid)
    inward: bool = False
    camera_distance: float | None = None  # in door widths; None: the plain mild perspective
    roi_margin: float = 0.0


def _rgb(values: Iterable[float]) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in values)
    return r, g, b


def _colour(rng: np.random.Generator, low: int = 30, high: int = 230) -> tuple[int, int, int]:
    return _rgb(rng.integers(low, high, 3))


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cells: int, amplitude: float) -> np.ndarray:
    coarse = rng.normal(0, amplitude, (max(2, h * cells // w), cells)).astype(np.float32)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _layout(rng: np.random.Generator, width: int, height: int, night: bool, variant: Variant = PLAIN,
            vrng: np.random.Generator | None = None) -> Layout:
    door_h = int(height * rng.uniform(0.55, 0.85))
    door_w = int(door_h * rng.uniform(0.42, 0.55))
    floor_y = int(height * rng.uniform(0.82, 0.95))
    x = int(rng.uniform(0.12, 0.88) * width - door_w / 2)
    x = int(np.clip(x, width * 0.05, width * 0.95 - door_w))
    y = max(int(height * 0.02), floor_y - door_h)
    door_h = floor_y - y
    wall_colour = np.array(_colour(rng, 90, 230), np.float32)
    wall = np.empty((height, width, 3), np.float32)
    wall[:] = wall_colour
    wall *= 1 + _smooth_noise(rng, width, height, 12, 0.08)[..., None]
    wall[floor_y:] = np.array(_colour(rng, 40, 140), np.float32)
    wall[floor_y:] *= 1 + _smooth_noise(rng, width, height - floor_y, 30, 0.05)[..., None]
    for _ in range(rng.integers(1, 3)):  # posters, a notice board
        pw, ph = int(width * rng.uniform(0.04, 0.1)), int(height * rng.uniform(0.06, 0.16))
        px = int(rng.uniform(0, width - pw))
        if abs(px + pw / 2 - (x + door_w / 2)) < door_w:
            px = (px + door_w * 2) % max(1, width - pw)
        py = int(rng.uniform(0.05, 0.4) * height)
        wall[py : py + ph, px : px + pw] = _colour(rng)
    frame_colour = _colour(rng, 20, 200)
    border = max(2, door_w // 30)
    cv2.rectangle(wall, (x - border, y - border), (x + door_w + border, floor_y), frame_colour, -1)
    lamp_w = max(4, door_w // 6)
    cv2.rectangle(wall, (x + door_w // 2 - lamp_w, y - 3 * border - lamp_w // 2), (x + door_w // 2 + lamp_w, y - 3 * border), (235, 235, 235), -1)

    leaf_colour = np.array(_colour(rng, 25, 210), np.float32)
    leaf = np.empty((door_h, door_w, 3), np.float32)
    leaf[:] = leaf_colour
    shade = leaf_colour * 0.75
    m = max(2, door_w // 8)
    for top, bottom in ((m, door_h // 2 - m // 2), (door_h // 2 + m // 2, door_h - m)):
        cv2.rectangle(leaf, (m, top), (door_w - m, bottom), shade.tolist(), max(1, door_w // 60))
    hinge_left = bool(rng.integers(0, 2))
    knob_x = door_w - m // 2 - 2 if hinge_left else m // 2 + 2
    cv2.circle(leaf, (knob_x, int(door_h * 0.52)), max(2, door_w // 25), (200, 200, 200), -1)
    # The flat behind an open door is usually darker than the lit corridor; sometimes a hall light is
    # on. At night the camera's infrared lamp lights the corridor, not the flat.
    if rng.uniform() < 0.75 or night:
        interior = _rgb(c * rng.uniform(0.1, 0.5) for c in leaf_colour)
    else:
        interior = _colour(rng, 60, 230)

    # A camera angle: a mild keystone, so doors are not always seen square-on.
    k = rng.uniform(-0.06, 0.06)
    s = rng.uniform(-0.04, 0.04)
    src = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    dst = np.array([[width * max(0, k), height * max(0, s)], [width * (1 - max(0, -k)), height * max(0, -s)],
                    [width * (1 - max(0, k)), height * (1 - max(0, -s))], [width * max(0, -k), height * (1 - max(0, s))]],
                   np.float32)
    tilt = cv2.getPerspectiveTransform(src, dst)
    layout = Layout(width, height, (x, y, door_w, door_h), hinge_left, floor_y, wall, leaf, interior, frame_colour, tilt)
    return layout if variant == PLAIN else _vary_layout(layout, variant, vrng or rng)


def _vary_layout(layout: Layout, variant: Variant, rng: np.random.Generator) -> Layout:
    """The variant's door: a frosted-glass leaf, a swing direction, a camera distance, a loose ROI."""
    _, _, door_w, door_h = layout.door
    leaf, alpha, interior = layout.leaf, None, layout.interior
    if variant.leaf == "glass":
        # Frosted glass in a pale frame, in a corridor of nearly the same colour; the room behind is lit.
        x, y = layout.door[:2]
        wall = layout.wall[y + door_h // 2, max(0, x - door_w // 4)].astype(np.float32)
        pane = np.clip(wall * rng.uniform(1.0, 1.15) + rng.uniform(-8, 8, 3), 0, 255)
        stile = np.clip(wall * rng.uniform(0.8, 0.95), 0, 255)
        leaf = np.empty((door_h, door_w, 3), np.float32)
        leaf[:] = pane
        alpha = np.full((door_h, door_w), rng.uniform(0.7, 0.85), np.float32)
        b = max(2, door_w // 14)
        for box in ((0, 0, b, door_h), (door_w - b, 0, door_w, door_h), (0, 0, door_w, b), (0, door_h - b, door_w, door_h)):
            leaf[box[1] : box[3], box[0] : box[2]] = stile
            alpha[box[1] : box[3], box[0] : box[2]] = 1.0
        bar_x = door_w - 3 * b if layout.hinge_left else 2 * b
        leaf[int(door_h * 0.45) : int(door_h * 0.6), bar_x : bar_x + b] = (190, 190, 190)
        alpha[int(door_h * 0.45) : int(door_h * 0.6), bar_x : bar_x + b] = 1.0
        interior = _rgb(np.clip(wall * rng.uniform(0.75, 1.1), 0, 255))
    distance = None if variant.camera_distance is None else float(rng.uniform(*variant.camera_distance))
    margin = float(rng.uniform(*variant.roi_margin))
    return Layout(layout.width, layout.height, layout.door, layout.hinge_left, layout.floor_y, layout.wall, leaf,
                  interior, layout.frame_colour, layout.tilt, alpha, variant.inward, distance, margin)


def _roi(layout: Layout) -> list[int]:
    """The door's bounding box after the camera angle, as an installer would draw it."""
    x, y, w, h = layout.door
    corners = np.array([[[x, y], [x + w, y], [x + w, y + h], [x, y + h]]], np.float32)
    warped = cv2.perspectiveTransform(corners, layout.tilt)[0]
    x0, y0 = np.floor(warped.min(axis=0)).astype(int)
    x1, y1 = np.ceil(warped.max(axis=0)).astype(int)
    pad_x, pad_y = int(layout.roi_margin * w), int(layout.roi_margin * w * 0.5)
    x0, y0, x1, y1 = x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y
    x0, y0 = max(0, x0), max(0, y0)
    return [int(x0), int(y0), int(min(layout.width, x1) - x0), int(min(layout.height, y1) - y0)]


def _free_edge(layout: Layout, theta: float) -> tuple[float, float, float]:
    """The free edge's x and its top and bottom y in the picture, at leaf angle `theta` (radians)."""
    x, y, w, h = layout.door
    hx = x if layout.hinge_left else x + w
    side = 1 if layout.hinge_left else -1
    if layout.camera_distance is None and not layout.inward:
        reach = w * math.cos(theta)  # the free edge's horizontal distance from the hinge
        grow = 1 + 0.15 * math.sin(theta)  # the free edge comes toward the camera, so it looks taller
        cy = y + h * 0.55
        return hx + side * reach, cy - (cy - y) * grow, cy + (y + h - cy) * grow
    # A pinhole camera `distance` door widths in front of the door plane, looking at the frame centre:
    # a point `depth` toward it is scaled about the centre by distance / (distance - depth).
    distance = (layout.camera_distance or 7.0) * w
    depth = w * math.sin(theta) * (-1 if layout.inward else 1)
    scale = distance / max(distance - depth, 0.2 * distance)
    cx, cy = layout.width / 2, layout.height / 2
    fx = cx + (hx + side * w * math.cos(theta) - cx) * scale
    return fx, cy + (y - cy) * scale, cy + (y + h - cy) * scale


def _draw_leaf(canvas: np.ndarray, layout: Layout, angle_deg: float) -> None:
    x, y, w, h = layout.door
    canvas[y : y + h, x : x + w] = layout.interior
    if angle_deg <= 0.2:
        if layout.leaf_alpha is None:
            canvas[y : y + h, x : x + w] = layout.leaf
        else:
            a = layout.leaf_alpha[..., None]
            canvas[y : y + h, x : x + w] = layout.leaf * a + canvas[y : y + h, x : x + w] * (1 - a)
        return
    theta = math.radians(angle_deg)
    hx = x if layout.hinge_left else x + w
    fx, top, bottom = _free_edge(layout, theta)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    if layout.hinge_left:
        dst = np.array([[hx, y], [fx, top], [fx, bottom], [hx, y + h]], np.float32)
    else:
        dst = np.array([[fx, top], [hx, y], [hx, y + h], [fx, bottom]], np.float32)
    leaf = layout.leaf * (0.75 + 0.25 * math.cos(theta))  # turned away from the corridor light
    # Warp only into the box the leaf can reach, not the whole frame.
    bx0, by0 = max(0, int(dst[:, 0].min()) - 1), max(0, int(dst[:, 1].min()) - 1)
    bx1 = min(canvas.shape[1], int(dst[:, 0].max()) + 2)
    by1 = min(canvas.shape[0], int(dst[:, 1].max()) + 2)
    if layout.inward:  # behind the wall: only what the doorway shows
        bx0, by0, bx1, by1 = max(bx0, x), max(by0, y), min(bx1, x + w), min(by1, y + h)
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        return
    matrix = cv2.getPerspectiveTransform(src, dst - np.array([bx0, by0], np.float32))
    size = (bx1 - bx0, by1 - by0)
    warped = cv2.warpPerspective(leaf, matrix, size, flags=cv2.INTER_LINEAR)
    opacity = np.ones((h, w), np.float32) if layout.leaf_alpha is None else layout.leaf_alpha
    mask = cv2.warpPerspective(opacity, matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    box = canvas[by0:by1, bx0:bx1]
    np.copyto(box, box * (1 - mask) + warped * mask)


def _draw_person(canvas: np.ndarray, layout: Layout, cx: float, depth: float, phase: float, person: Person) -> None:
    _, y, _, h = layout.door
    feet = layout.floor_y + depth * (layout.height - layout.floor_y) * 0.9
    tall = h * (0.82 + 0.55 * depth)
    body_w = tall * 0.24
    head_r = tall * 0.075
    torso_top, torso_bottom = feet - tall + 2 * head_r, feet - tall * 0.45
    cv2.rectangle(canvas, (int(cx - body_w / 2), int(torso_top)), (int(cx + body_w / 2), int(torso_bottom)), person.colour, -1)
    swing = math.sin(phase) * body_w * 0.35
    leg_w = max(2, int(body_w * 0.2))
    for side, sway in ((-1, swing), (1, -swing)):
        hip = (int(cx + side * body_w * 0.25), int(torso_bottom))
        cv2.line(canvas, hip, (int(cx + side * body_w * 0.25 + sway), int(feet)), person.legs, leg_w)
    cv2.circle(canvas, (int(cx), int(torso_top - head_r)), int(head_r), (60, 70, 90), -1)


def _person_at(person: Person, t: float, width: int) -> tuple[float, float, float] | None:
    if person.path is not None:
        return person.path(t)
    if t < person.start_s:
        return None
    dt = t - person.start_s
    start_x = -0.15 if person.speed > 0 else 1.15
    if person.stop is not None:
        stop_x, stop_s = person.stop
        reach_s = abs((stop_x - start_x) / person.speed)
        if reach_s <= dt < reach_s + stop_s:
            return stop_x * width, person.depth, 0.0
        if dt >= reach_s + stop_s:
            dt -= stop_s
    x = start_x + person.speed * dt
    if not -0.2 <= x <= 1.2:
        return None
    return x * width, person.depth, dt * 9.0


def _swing(t0: float, open_s: float, hold_s: float, close_s: float, peak: float) -> Callable[[float], float]:
    def angle(t: float) -> float:
        if t < t0:
            return 0.0
        if t < t0 + open_s:
            return peak * (t - t0) / open_s
        if t < t0 + open_s + hold_s:
            return peak
        if t < t0 + open_s + hold_s + close_s:
            return peak * (1 - (t - t0 - open_s - hold_s) / close_s)
        return 0.0

    return angle


def _openings(rng: np.random.Generator, seconds: float, count: int, partial: bool = False, after: float = 0.15,
              swing_s: tuple[float, float] | None = None) -> tuple[Callable[[float], float], list[dict[str, float | None]]]:
    swings = []
    labels: list[dict[str, float | None]] = []
    slot = (seconds * (1 - after) - 0.5) / count
    free_from = seconds * after  # a door stays shut a while between cycles: nobody reopens it at once
    for i in range(count):
        t0 = max(free_from, seconds * after + i * slot + rng.uniform(0, slot * 0.25))
        peak = rng.uniform(20, 35) if partial else rng.uniform(55, 100)
        open_s, close_s = rng.uniform(0.4, 1.2), rng.uniform(0.5, 1.3)
        if swing_s is not None:  # drawn after the plain ones so plain clips keep their timings
            open_s, close_s = rng.uniform(*swing_s), rng.uniform(*swing_s)
        hold_s = min(rng.uniform(1.0, 5.0), seconds * after + (i + 1) * slot - t0 - open_s - close_s - 1.5)
        hold_s = max(0.6, hold_s)
        free_from = t0 + open_s + hold_s + close_s + 1.5
        if swing_s is not None and t0 + open_s > seconds - 1.0:
            break  # slow swings pushed this cycle past the clip's end: it never happens
        swings.append(_swing(t0, open_s, hold_s, close_s, peak))
        start = t0 + open_s * _GAP_VISIBLE_DEG / peak
        end = t0 + open_s + hold_s + close_s * (1 - _GAP_VISIBLE_DEG / peak)
        labels.append({"start_s": round(start, 2), "end_s": round(end, 2) if end < seconds else None, "moved_s": round(t0, 2)})

    def angle(t: float) -> float:
        return max((s(t) for s in swings), default=0.0)

    return angle, labels


def _lights(rng: np.random.Generator, seconds: float) -> Callable[[float], float]:
    """Corridor light on a timer: off, flickering start-up, on; the camera's exposure lags a little."""
    low = rng.uniform(0.3, 0.5)
    switches = sorted(rng.uniform(0.15, 0.85, 2) * seconds)
    flicker = rng.uniform(0.5, 1.2)

    def gain(t: float) -> float:
        on_at, off_at = switches
        if on_at <= t < off_at:
            if t - on_at < flicker:
                return 1.0 if int((t - on_at) * 13) % 2 == 0 else low + 0.2
            return 1.0
        return low

    return gain


def _plan(scenario: str, rng: np.random.Generator, seconds: float, layout: Layout, variant: Variant = PLAIN) -> Plan:
    plan = Plan(exposure_pump=variant.exposure_pump)
    swing_s = variant.swing_s
    width = layout.width
    door_cx = (layout.door[0] + layout.door[2] / 2) / width

    def passer(start: float, depth: float | None = None) -> Person:
        speed = rng.uniform(0.12, 0.3) * (1 if rng.integers(0, 2) else -1)
        return Person(start, speed, rng.uniform(0.0, 0.9) if depth is None else depth, _colour(rng), _colour(rng, 10, 90))

    if scenario in ("full_open", "night_open", "lights_and_open"):
        after = 0.55 if scenario == "lights_and_open" else rng.uniform(0.15, 0.4)
        plan.angle, plan.door_open = _openings(rng, seconds, 1, after=after, swing_s=swing_s)
    elif scenario == "brief_partial":
        plan.angle, plan.door_open = _openings(rng, seconds, 1, partial=True, after=rng.uniform(0.2, 0.4), swing_s=swing_s)
    elif scenario == "cycles":
        plan.angle, plan.door_open = _openings(rng, seconds, int(rng.integers(2, 4)), after=0.08, swing_s=swing_s)
    if scenario in ("lights_only", "lights_and_open"):
        plan.gain = _lights(rng, seconds * (0.5 if scenario == "lights_and_open" else 1.0))
    if scenario in ("night_open", "night_passers"):
        plan.night = True
    if scenario in ("passers_only", "night_passers"):
        plan.people = [passer(rng.uniform(0.1, 0.8) * seconds) for _ in range(int(rng.integers(2, 4)))]
    if scenario == "passer_and_open":
        plan.people = [passer(seconds * rng.uniform(0.08, 0.25))]
        plan.angle, plan.door_open = _openings(rng, seconds, 1, after=0.5, swing_s=swing_s)
    if scenario == "doorway_stand":
        # Someone waits at the closed door for a long time (a delivery, a neighbour), shifting on their
        # feet, then goes; the door never opens.
        person = passer(seconds * rng.uniform(0.05, 0.15), depth=rng.uniform(0.0, 0.25))
        start_x = -0.15 if person.speed > 0 else 1.15
        reach_s = abs((door_cx - start_x) / person.speed)
        stay_s = seconds * rng.uniform(0.45, 0.65)
        sway, period = rng.uniform(0.005, 0.02), rng.uniform(1.5, 4.0)

        def wait(t: float, person: Person = person) -> tuple[float, float, float] | None:
            dt = t - person.start_s
            if dt < 0:
                return None
            if dt < reach_s:
                return (start_x + person.speed * dt) * width, person.depth, dt * 9.0
            if dt < reach_s + stay_s:
                return (door_cx + sway * math.sin(2 * math.pi * (dt - reach_s) / period)) * width, person.depth, 0.0
            x = door_cx + person.speed * (dt - reach_s - stay_s)
            return (x * width, person.depth, dt * 9.0) if -0.2 <= x <= 1.2 else None

        person.path = wait
        plan.people = [person]
    if scenario == "bag_left":
        person = passer(seconds * 0.25, depth=rng.uniform(0.05, 0.3))
        person.stop = (door_cx, rng.uniform(1.5, 3.0))
        plan.people = [person]
        stop_reach = abs((door_cx - (-0.15 if person.speed > 0 else 1.15)) / person.speed)
        plan.bag_from = person.start_s + stop_reach + 0.5
    if scenario == "drift_shadow":
        base = rng.uniform(0.75, 0.9)
        plan.gain = lambda t: base + (1 - base) * t / seconds
        t_shadow = seconds * rng.uniform(0.25, 0.5)
        speed = rng.uniform(0.2, 0.5) * (1 if rng.integers(0, 2) else -1)
        plan.shadow = lambda t: (-0.2 if speed > 0 else 1.2) + speed * (t - t_shadow) if t >= t_shadow else None
    if scenario == "shake_only":
        start = seconds * rng.uniform(0.3, 0.6)
        plan.shake = (start, start + rng.uniform(1.0, 2.5))
    if scenario == "covered":
        start = seconds * rng.uniform(0.3, 0.45)
        end = start + seconds * rng.uniform(0.25, 0.4)
        plan.covered = (start, end)
        plan.tamper = [{"reason": "covered", "start_s": round(start, 2), "end_s": round(end, 2)}]
    if scenario == "defocus":
        start = seconds * rng.uniform(0.3, 0.45)
        end = start + seconds * rng.uniform(0.25, 0.4)
        plan.defocus = (start, end)
        plan.tamper = [{"reason": "defocus", "start_s": round(start, 2), "end_s": round(end, 2)}]
    if scenario == "bumped":
        start = seconds * rng.uniform(0.35, 0.6)
        plan.moved_from = start
        plan.tamper = [{"reason": "moved", "start_s": round(start, 2), "end_s": None}]
    if scenario == "exit":
        plan.angle, plan.door_open = _openings(rng, seconds, 1, after=0.15, swing_s=swing_s)
        opened = float(plan.door_open[0]["start_s"] or 0.0)
        closed = float(plan.door_open[0]["end_s"] or seconds)
        appear = opened + 0.8
        leave_dir = 1 if rng.integers(0, 2) else -1
        walk_out = max(1.0, (closed - appear) * 0.35)

        def path(t: float) -> tuple[float, float, float] | None:
            if t < appear:
                return None
            dt = t - appear
            if dt < walk_out:  # out of the doorway toward the camera
                return door_cx * width, -0.25 + 0.75 * dt / walk_out, dt * 9.0
            x = door_cx + leave_dir * 0.3 * (dt - walk_out)
            return (x * width, 0.5, dt * 9.0) if -0.2 <= x <= 1.2 else None

        plan.people = [Person(appear, 0.0, 0.0, _colour(rng), _colour(rng, 10, 90), path=path)]
        plan.exits = [round(appear + walk_out * 0.6, 2)]
    return plan


_GRAIN: dict[tuple[int, int], np.ndarray] = {}


def _grain(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit sensor noise, a fresh-looking field per frame: a random window of a cached larger field."""
    h, w = shape
    if shape not in _GRAIN:
        _GRAIN[shape] = np.random.default_rng(shape).standard_normal((h + 64, w + 64)).astype(np.float32)
    dy, dx = rng.integers(0, 64, 2)
    return _GRAIN[shape][dy : dy + h, dx : dx + w, None]


def _pump_exposure(canvas: np.ndarray, layout: Layout, plan: Plan, t: float) -> None:
    """The room behind the door is far brighter than the corridor: as the door opens, auto-exposure
    (lagging about half a second) darkens the whole picture and white balance shifts toward the
    room's light; the room itself stays near white."""
    x, y, w, h = layout.door
    strength = plan.exposure_pump
    # The room is lit several times brighter than the corridor: it clips until exposure comes down.
    room = np.asarray(canvas[y : y + h, x : x + w])
    interior = np.all(np.abs(room - np.array(layout.interior, np.float32) * plan.gain(t)) < 1.0, axis=2)
    room[interior] = np.array([235, 245, 255], np.float32) * (1 + 1.5 * strength)
    seen = np.mean([min(1.0, plan.angle(t - lag) / 60.0) for lag in (0.0, 0.15, 0.3, 0.45, 0.6)])
    exposure = 1.0 / (1.0 + 0.8 * strength * seen)
    balance = np.array([1 + 0.12 * strength * seen, 1.0, 1 - 0.12 * strength * seen], np.float32)
    canvas *= exposure * balance


def _render(layout: Layout, plan: Plan, t: float, rng: np.random.Generator) -> np.ndarray:
    canvas = layout.wall.copy()
    _draw_leaf(canvas, layout, plan.angle(t))
    x, y, w, h = layout.door
    if plan.bag_from is not None and t >= plan.bag_from:
        bw = int(w * 0.3)
        bx = x + w // 2 - bw // 2
        cv2.rectangle(canvas, (bx, layout.floor_y - int(bw * 0.8)), (bx + bw, layout.floor_y + 2), (40, 90, 160), -1)
    for person in plan.people:
        where = _person_at(person, t, layout.width)
        if where is None:
            continue
        cx, depth, phase = where
        if depth < 0:  # still inside the flat: only what the doorway shows
            clip = canvas.copy()
            _draw_person(clip, layout, cx, 0.0, phase, person)
            canvas[y : y + h, x : x + w] = clip[y : y + h, x : x + w]
        else:
            _draw_person(canvas, layout, cx, depth, phase, person)
    centre = plan.shadow(t)
    if centre is not None:
        xs = np.arange(layout.width, dtype=np.float32) / layout.width
        band = 1 - 0.45 * np.exp(-(((xs - centre) / 0.08) ** 2))
        canvas *= band[None, :, None]
    canvas *= plan.gain(t)
    if plan.exposure_pump > 0:
        _pump_exposure(canvas, layout, plan, t)
    frame: np.ndarray = cv2.warpPerspective(canvas, layout.tilt, (layout.width, layout.height),
                                            borderMode=cv2.BORDER_REPLICATE)
    if plan.shake and plan.shake[0] <= t < plan.shake[1]:
        amp = layout.width * 0.008
        m = np.array([[1, 0, rng.uniform(-amp, amp)], [0, 1, rng.uniform(-amp, amp)]], np.float32)
        frame = cv2.warpAffine(frame, m, (layout.width, layout.height), borderMode=cv2.BORDER_REPLICATE)
    if plan.moved_from is not None and t >= plan.moved_from:
        turn: np.ndarray = cv2.getRotationMatrix2D((layout.width / 2, layout.height / 2), 7.0, 1.08)
        turn[:, 2] += (layout.width * 0.06, layout.height * 0.04)
        frame = cv2.warpAffine(frame, turn, (layout.width, layout.height), borderMode=cv2.BORDER_REFLECT)
    if plan.defocus and plan.defocus[0] <= t < plan.defocus[1]:
        frame = cv2.GaussianBlur(frame, (0, 0), layout.width / 110)
    if plan.covered:
        start, end = plan.covered
        cover = np.clip(min(t - start, end - t) / 0.6 + 0.5, 0, 1) if start - 0.3 <= t < end + 0.3 else 0.0
        if cover > 0:  # a hand or tape over the lens: dark, and far too close to be in focus
            hand = cv2.GaussianBlur(frame, (0, 0), layout.width / 15) * 0.08 + 4
            frame = frame * (1 - cover) + hand * cover
    noise = 2.5
    if plan.night:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        grey = 95 + (grey - grey.mean()) * 0.45
        frame = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        noise = 9.0
    grain = _grain(frame.shape[:2], rng)
    frame += grain * noise
    return np.clip(frame, 0, 255, out=frame).astype(np.uint8)


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16) * np.sqrt(2 / 8)
    m[0] /= np.sqrt(2)
    return m.astype(np.float32)


_DCT = _dct_matrix()


class LowBitrate:
    """A stand-in for H.264 at 250-500 kbit/s (no encoder ships with OpenCV's wheels).

    Inter frames skip each 16x16 macroblock whose mean change from the last decoded picture is small
    (it stays stale, so slow changes arrive in steps) and code the others' residual as 8x8 DCT blocks
    quantised coarsely; every `gop_s` a keyframe codes the whole picture afresh with a finer
    quantiser, so the picture jumps a little everywhere at once (the keyframe pulse).
    """

    def __init__(self, fps: float, rng: np.random.Generator, gop_s: float = 2.0) -> None:
        self.gop = max(1, int(round(gop_s * fps)))
        self.q_key = float(rng.uniform(10, 16))
        self.q_inter = float(rng.uniform(20, 32))
        self.skip = float(rng.uniform(3.0, 6.0))
        self._decoded: np.ndarray | None = None
        self._index = 0

    def _quantise(self, image: np.ndarray, q: float) -> np.ndarray:
        h, w, c = image.shape
        blocks = image.reshape(h // 8, 8, w // 8, 8, c).transpose(0, 2, 4, 1, 3)
        coeff = _DCT @ blocks @ _DCT.T
        step = np.full((8, 8), q, np.float32)
        step[0, 0] = q / 2  # the DC term is kept finer, as encoders do
        step += np.add.outer(np.arange(8), np.arange(8)).astype(np.float32) * q / 6  # high frequencies coarser
        coeff = np.round(coeff / step) * step
        return (_DCT.T @ coeff @ _DCT).transpose(0, 3, 1, 4, 2).reshape(h, w, c)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        H, W = (h + 15) // 16 * 16, (w + 15) // 16 * 16
        padded = cv2.copyMakeBorder(frame, 0, H - h, 0, W - w, cv2.BORDER_REPLICATE).astype(np.float32)
        if self._decoded is None or self._index % self.gop == 0:
            decoded = self._quantise(padded, self.q_key)
        else:
            residual = padded - self._decoded
            change = np.abs(residual).reshape(H // 16, 16, W // 16, 16, 3).mean(axis=(1, 3, 4))
            coded = np.repeat(np.repeat(change >= self.skip, 16, axis=0), 16, axis=1)[..., None]
            decoded = self._decoded + self._quantise(residual, self.q_inter) * coded
        self._decoded = np.clip(decoded, 0, 255)
        self._index += 1
        return self._decoded[:h, :w].astype(np.uint8)


def generate_clip(
    path: Path | str,
    scenario: str,
    seed: int = 0,
    width: int = 640,
    height: int = 480,
    fps: float = 10.0,
    seconds: float = 20.0,
    variant: Variant | None = None,
) -> dict[str, Any]:
    """Write an mp4 (mp4v) of `scenario` and return its labels; also writes them beside it as JSON."""
    if scenario not in ALL_SCENARIOS:
        raise SceneError(f"unknown scenario {scenario!r}; choose from {', '.join(ALL_SCENARIOS)}")
    if width < 64 or height < 64 or fps <= 0 or seconds <= 2:
        raise SceneError("clip needs width, height >= 64, fps > 0 and more than 2 seconds")
    variant = variant or PLAIN
    kind = ALL_SCENARIOS.index(scenario)
    rng = np.random.default_rng([seed, kind])
    night = scenario.startswith("night")
    if variant.door_seed is None:
        layout = _layout(rng, width, height, night, variant, np.random.default_rng([seed, kind, 17]))
    else:  # the door's look from door_seed alone, whatever the scenario; the events from seed
        door_rng = np.random.default_rng([variant.door_seed, 17])
        layout = _layout(door_rng, width, height, night, variant, door_rng)
    plan = _plan(scenario, rng, seconds, layout, variant)
    codec = LowBitrate(fps, np.random.default_rng([seed, kind, 23])) if variant.lowbit else None
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SceneError(f"cannot write {path}")
    try:
        for i in range(int(round(seconds * fps))):
            frame = _render(layout, plan, i / fps, rng)
            writer.write(frame if codec is None else codec(frame))
    finally:
        writer.release()
    labels = {
        "clip": path.name,
        "roi": _roi(layout),
        "fps": fps,
        "seconds": seconds,
        "door_open": plan.door_open,
        "camera_tamper": plan.tamper,
        "exit": plan.exits,
    }
    path.with_suffix(".json").write_text(json.dumps(labels, indent=1))
    return labels


@dataclass(frozen=True)
class DoorClass:
    """A kind of door clip the detector must handle: a scenario, a variant, an orientation."""

    scenario: str
    variant: Variant = PLAIN
    portrait: bool = False

    def size(self, width: int, height: int) -> tuple[int, int]:
        """A landscape camera size turned to this class's orientation."""
        long_side, short_side = max(width, height), min(width, height)
        return (short_side, long_side) if self.portrait else (long_side, short_side)


# What `bench/accuracy.py` measures and tuning may look at. Held-out seeds and combinations of these
# live in tests/edge/test_door_classes.py and are never used while tuning.
DOOR_CLASSES: dict[str, DoorClass] = {
    "plain": DoorClass("full_open"),
    "fast": DoorClass("full_open", Variant(swing_s=(0.3, 0.5))),
    "slow": DoorClass("full_open", Variant(swing_s=(1.5, 3.0))),
    "slow_loose_roi": DoorClass("full_open", Variant(swing_s=(1.0, 2.5), roi_margin=(0.12, 0.2))),
    "inward": DoorClass("full_open", Variant(inward=True)),
    "toward_close": DoorClass("full_open", Variant(camera_distance=(1.3, 2.2))),
    "glass": DoorClass("full_open", Variant(leaf="glass")),
    "glass_walkthrough": DoorClass("exit", Variant(leaf="glass", swing_s=(0.6, 1.5))),
    "portrait": DoorClass("full_open", portrait=True),
    "exposure_pump": DoorClass("full_open", Variant(exposure_pump=0.8)),
    "lowbit_cycles": DoorClass("cycles", Variant(lowbit=True)),
    "doorway_stand": DoorClass("doorway_stand"),
    "passers": DoorClass("passers_only"),
    "lights": DoorClass("lights_only"),
}
