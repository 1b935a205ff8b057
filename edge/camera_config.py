"""The camera section of the edge config: door ROI, reference frame and detector knobs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from edge.door_teach import TaughtDoor


class DetectorSettings(BaseModel):
    """Sensitivity knobs; defaults suit a corridor door at 5-30 fps, tune with `isowatch detect`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    structure_threshold: float = Field(
        0.4, ge=0.05, le=0.95, description="Edge-structure distance from the closed door above which a cell counts as changed"
    )
    brightness_threshold: float = Field(
        0.35, ge=0.05, le=3.0, description="Log-brightness change (after removing the global light change) above which a cell counts as changed"
    )
    colour_threshold: float = Field(
        0.08, ge=0.01, le=1.0, description="Chromaticity change (after removing the global colour cast) above which a lit cell counts as changed"
    )
    column_coverage: float = Field(
        0.7, gt=0.3, le=1.0, description="Share of a door column's height that must change: a swinging leaf changes whole columns"
    )
    min_open_area: float = Field(0.06, gt=0.0, lt=1.0, description="Share of the ROI that must change to call the door open")
    open_confirm_s: float = Field(0.3, ge=0.0, le=5.0, description="Seconds the open evidence must persist before the door is called open")
    close_confirm_s: float = Field(0.4, ge=0.0, le=5.0, description="Seconds the door must look closed before an opening ends")
    occluder_hold_s: float = Field(0.6, ge=0.0, le=10.0, description="Seconds after something moved beside or below the door during which no opening is called")
    reference_tau_s: float = Field(20.0, ge=1.0, le=3600.0, description="Time constant for following slow light drift while the door is closed and still")
    tamper_confirm_s: float = Field(1.0, ge=0.1, le=30.0, description="Seconds a tamper condition must last before it is reported")
    moved_confirm_s: float = Field(2.0, ge=0.2, le=60.0, description="Seconds the scene must stay displaced before 'moved' is reported (longer than a shake)")
    no_signal_after_s: float = Field(5.0, ge=0.5, le=600.0, description="Seconds without frames before 'no_signal' tamper is reported")
    snapshot_quality: int = Field(80, ge=10, le=100, description="JPEG quality of event snapshots")


class CameraConfig(DetectorSettings):
    """`[camera]` in the edge TOML: what `isowatch calibrate` writes and the edge agent reads."""

    roi: tuple[int, int, int, int] = Field(description="Door region in pixels: x, y, width, height")
    reference_frame: Path | None = Field(None, description="Frame of the closed door saved by calibrate, relative to the config file")
    source: str | None = Field(None, description="Camera device or video the reference was taken from")
    teach: Path | None = Field(
        None, description="This door's taught open appearance (`isowatch calibrate --teach`), relative to the config file"
    )

    @field_validator("roi")
    @classmethod
    def _roi_positive(cls, roi: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x, y, w, h = roi
        if x < 0 or y < 0 or w < 8 or h < 8:
            raise ValueError("roi needs x, y >= 0 and width, height >= 8 pixels")
        return roi

    def settings(self) -> DetectorSettings:
        return DetectorSettings(**{name: getattr(self, name) for name in DetectorSettings.model_fields})

    def taught_door(self) -> "TaughtDoor | None":
        """The taught door model when calibrate saved one (a file that has gone raises OSError)."""
        if self.teach is None:
            return None
        from edge.door_teach import TaughtDoor  # numpy and the detector only for a configured camera

        return TaughtDoor.load(self.teach)
