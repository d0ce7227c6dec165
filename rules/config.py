"""Rule configuration: defaults from ../shared/DOMAIN.md, overridable per street, grid and device type.

The file is YAML:

    rules:                       # defaults for the whole deployment
      water.continuous_flow: {min_span_s: 7200}
    overrides:                   # applied from least to most specific
      - device_type: water
        street: RJ
        rules:
          water.continuous_flow: {min_span_s: 10800}
      - grid: RJ-G1-M03          # a grid also matches its micro-grids
        rules:
          device.offline: {intervals_s: {water: 5400}}

Every rule's parameters are a pydantic model that forbids unknown keys, so a typo is an error
naming the path (`overrides[0].rules.water.continuous_flow.min_span: unknown field`), never a
silently ignored setting. `RuleConfig.params(street, grids, device_type)` merges the matching
layers; the engine caches the result per (grid, device type). `ConfigWatcher` reloads the file
when it changes and keeps the previous configuration if the new one does not validate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rules.group_rental import GroupRentalParams
from whistle.domain import DeviceType

log = logging.getLogger(__name__)

DEFAULT_FILE = Path(__file__).with_name("default.yaml")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


class SmokeFireParams(_Params):
    """`smoke.fire` and the detector maintenance alarm it raises on repeated nuisance alarms."""

    nuisance_window_s: float = Field(default=60, gt=0, description="a lone clear within this is a nuisance")
    confirm_window_s: float = Field(default=300, gt=0, description="a second detector within this confirms")
    nuisance_repeat_count: int = Field(default=3, ge=2, description="self-cleared alarms that need maintenance")
    nuisance_repeat_days: float = Field(default=30, gt=0)


class SmokeDeviceParams(_Params):
    """`smoke.fault`, `smoke.tamper` and `smoke.low_battery` from events and status."""

    low_battery_pct: float = Field(default=20, ge=0, le=100)
    battery_ok_pct: float = Field(default=30, ge=0, le=100)

    @model_validator(mode="after")
    def _hysteresis(self) -> SmokeDeviceParams:
        if self.battery_ok_pct < self.low_battery_pct:
            raise ValueError("battery_ok_pct must be at least low_battery_pct")
        return self


class ElevatorParams(_Params):
    """`elevator.trapped`, `elevator.fault` (events and repeats) and `elevator.ebike`."""

    repeat_count: int = Field(default=3, ge=2, description="faults on one elevator that make it a repeat")
    repeat_window_h: float = Field(default=24, gt=0)


class EbikeParams(_Params):
    """`ebike.indoor_charging` from the 60-s `power_w` of a charging-circuit sensor (rules/ebike.py)."""

    min_step_w: float = Field(default=100, gt=0, description="a charger draws at least this above standby")
    max_step_w: float = Field(default=600, gt=0, description="and at most this")
    confirm_min: float = Field(default=12, gt=0, description="minutes a charging-like load must hold")
    steady_pct: float = Field(
        default=1.2, gt=0, description="a charger: the median minute-to-minute change under this % of its load"
    )
    jittery_pct: float = Field(default=2.0, gt=0, description="an appliance: above this % (a television, a computer)")
    max_hold_min: float = Field(default=60, gt=0, description="wait at most this for the two to be told apart")
    max_rise: float = Field(default=0.08, ge=0, description="a charger's floor does not move by more than this")
    cycling_confirm_min: float = Field(default=45, gt=0, description="hold needed on a circuit that cycles")
    likely_max_w: float = Field(default=450, gt=0, description="steps above this also need the longer hold")
    cycling_episodes: int = Field(default=2, ge=1, description="short episodes a day that mark a cycling load")
    warmup_h: float = Field(default=6, ge=0, description="a new sensor needs the longer hold this many hours")
    short_episode_min: float = Field(default=40, gt=0)
    stop_samples: int = Field(default=3, ge=1, description="samples back at standby that end a session")
    max_gap_s: float = Field(default=300, gt=0, description="a longer gap in samples restarts detection")

    @model_validator(mode="after")
    def _band(self) -> EbikeParams:
        if self.max_step_w <= self.min_step_w:
            raise ValueError("max_step_w must be above min_step_w")
        if self.jittery_pct <= self.steady_pct:
            raise ValueError("jittery_pct must be above steady_pct")
        if self.max_hold_min < self.cycling_confirm_min:
            raise ValueError("max_hold_min must be at least cycling_confirm_min")
        return self


def _default_intervals() -> dict[DeviceType, float]:
    return {
        DeviceType.SMOKE: 25 * 3600.0,  # NB-IoT detectors send a daily heartbeat (GB 20517: battery checked ≥ daily)
        DeviceType.ELEVATOR: 600.0,
        DeviceType.EBIKE: 600.0,
        DeviceType.WATER: 3 * 900.0,  # three missed 15-min readings
        DeviceType.POWER: 3 * 900.0,
    }


class OfflineParams(_Params):
    """`device.offline`: nothing received for longer than the device's reporting allows."""

    intervals_s: dict[DeviceType, float] = Field(default_factory=_default_intervals)
    batch_interval_s: float = Field(default=29 * 3600, gt=0, description="devices that upload buffered batches")
    batch_lag_s: float = Field(default=3600, gt=0, description="readings this late mark a batch uploader")
    will_grace_s: float = Field(default=300, ge=0, description="after an offline will, wait this for a return")

    @model_validator(mode="after")
    def _positive(self) -> OfflineParams:
        for t, v in self.intervals_s.items():
            if v <= 0:
                raise ValueError(f"intervals_s.{t.value} must be positive")
        return self

    def interval_ms(self, device_type: DeviceType) -> int:
        return int(self.intervals_s.get(device_type, _default_intervals()[device_type]) * 1000)


class ContinuousFlowParams(_Params):
    """`water.continuous_flow`: water used in every interval for longer than `min_span_s`."""

    min_span_s: float = Field(default=3 * 3600, gt=0)
    lone_elder_min_span_s: float = Field(default=2 * 3600, gt=0, description="for a lone_elder household")
    min_lpm: float = Field(default=0.4, gt=0, description="an interval below this rate (L/min) is a pause")
    max_gap_s: float = Field(default=3600, gt=0, description="a longer gap between readings is a gap, not flow")
    steady_fraction: float = Field(default=0.1, ge=0, le=1, description="lowest interval over the mean: steadiness")
    learn_days: int = Field(default=5, ge=1, le=14, description="days seen before the household's own spans count")
    margin: float = Field(default=1.2, ge=1, description="a span may last margin x the usual longest ...")
    slack_s: float = Field(default=1800, ge=0, description="... plus this")
    rank: int = Field(default=2, ge=1, le=14, description="the rank-th longest day's span is the usual one")
    max_span_s: float = Field(default=12 * 3600, gt=0, description="a span this long always raises")


class LoneElderParams(_Params):
    """`household.lone_elder_inactive`: a quiet spell longer than this person's routine allows (rules/lone_elder.py)."""

    min_litres: float = Field(default=1, gt=0, description="a water draw this big in an interval is activity")
    min_active_w: float = Field(
        default=25,
        gt=0,
        description="a rise of the interval's power this far above the last 2 h's lowest, beyond the night's",
    )
    min_step_w: float = Field(
        default=30, gt=0, description="or an hour's mean power this far above the hour before's (at least the night's)"
    )
    min_days: int = Field(default=7, ge=1, le=14, description="days of routine before it replaces the fixed rule")
    margin: float = Field(default=1.2, ge=1, description="a daytime quiet may last margin x the usual from this time")
    slack_h: float = Field(default=2.0, ge=0, description="... plus this")
    morning_slack_h: float = Field(default=1.0, ge=0, description="a night may last this long past its usual end")
    day_reach_h: float = Field(default=2.0, ge=0, le=6, description="quiet begun this close to this time of day counts")
    day_rank: int = Field(default=2, ge=1, le=14, description="the rank-th longest of the days' quiet is usual")
    min_nights: int = Field(default=3, ge=1, le=14, description="nights known before bedtime and waking count")
    night_rank: int = Field(default=3, ge=1, le=14, description="the rank-th earliest bedtime and latest waking")
    bed_slack_h: float = Field(default=1.5, ge=0, description="quiet begun this long before bedtime is a night")
    learn_max_h: float = Field(default=16.0, gt=0, description="a day's quiet longer than this is no routine")
    min_quiet_h: float = Field(default=2.0, gt=0, description="never alert on a shorter quiet spell")
    deep_night_hour: int = Field(default=3, ge=0, le=23, description="local hour that marks a quiet as a night")
    fixed_quiet_h: float = Field(default=12.0, gt=0, description="the fixed rule's window: never alert later")
    fixed_litres: float = Field(default=10.0, gt=0, description="the fixed rule: less than this in the window")
    backstop_fixed_rule: bool = Field(default=False, description="also raise whenever the fixed rule would")
    max_daily_m3: float = Field(default=2.0, gt=0, description="more in a local day raises continuous flow (major)")
    max_meter_skew_h: float = Field(
        default=30.0, gt=0, le=168, description="wait this long for a meter that uploads batches"
    )
    live_meter_skew_h: float = Field(default=2.0, gt=0, description="and this long for one that streams")

    @model_validator(mode="after")
    def _order(self) -> LoneElderParams:
        if self.min_quiet_h > self.fixed_quiet_h:
            raise ValueError("min_quiet_h must not exceed fixed_quiet_h")
        if self.live_meter_skew_h > self.max_meter_skew_h:
            raise ValueError("live_meter_skew_h must not exceed max_meter_skew_h")
        return self


_MODELS: dict[str, type[BaseModel]] = {
    "smoke.fire": SmokeFireParams,
    "smoke.device": SmokeDeviceParams,
    "elevator": ElevatorParams,
    "ebike.indoor_charging": EbikeParams,
    "device.offline": OfflineParams,
    "water.continuous_flow": ContinuousFlowParams,
    "household.lone_elder_inactive": LoneElderParams,
    "household.group_rental_suspected": GroupRentalParams,
}
RULE_NAMES = tuple(_MODELS)


@dataclass(frozen=True, slots=True)
class RuleParams:
    """The parameters every rule sees for one (street, grid, device type)."""

    smoke_fire: SmokeFireParams
    smoke_device: SmokeDeviceParams
    elevator: ElevatorParams
    ebike: EbikeParams
    offline: OfflineParams
    continuous_flow: ContinuousFlowParams
    lone_elder: LoneElderParams
    group_rental: GroupRentalParams


class ConfigError(ValueError):
    """A rule configuration that does not validate; the message names the path."""


class _Override(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    street: str | None = None
    grid: str | None = None
    device_type: DeviceType | None = None
    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def specificity(self) -> int:
        return (4 if self.grid else 0) + (2 if self.street else 0) + (1 if self.device_type else 0)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    overrides: list[_Override] = Field(default_factory=list)


def _merge(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in layer.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _format(where: str, exc: ValidationError) -> str:
    problems = []
    for e in exc.errors():
        path = ".".join(str(p) for p in (where, *e["loc"]) if p != "")
        problems.append(f"{path}: {e['msg']}")
    return "; ".join(problems)


class RuleConfig:
    """A validated rule configuration: defaults plus ordered overrides."""

    def __init__(self, doc: Mapping[str, Any] | None = None, *, source: str = "<config>") -> None:
        self.source = source
        try:
            parsed = _File.model_validate(doc or {})
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_format('', exc)}") from None
        self._defaults = parsed.rules
        self._overrides = sorted(parsed.overrides, key=lambda o: o.specificity)  # stable: file order on ties
        self._check(parsed)
        self._cache: dict[tuple[str | None, tuple[str, ...], DeviceType | None], RuleParams] = {}

    def _check(self, parsed: _File) -> None:
        layers: list[tuple[str, dict[str, dict[str, Any]]]] = [("rules", parsed.rules)]
        layers += [(f"overrides[{i}].rules", o.rules) for i, o in enumerate(parsed.overrides)]
        for where, rules in layers:
            for name, values in rules.items():
                model = _MODELS.get(name)
                if model is None:
                    raise ConfigError(f"{self.source}: {where}.{name}: unknown rule; known: {', '.join(RULE_NAMES)}")
                try:
                    model.model_validate(_merge(self._defaults.get(name, {}), values))
                except ValidationError as exc:
                    raise ConfigError(f"{self.source}: {_format(f'{where}.{name}', exc)}") from None

    @property
    def overrides(self) -> tuple[_Override, ...]:
        return tuple(self._overrides)

    @classmethod
    def load(cls, path: Path) -> RuleConfig:
        """Read and validate a YAML file."""
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if doc is not None and not isinstance(doc, dict):
            raise ConfigError(f"{path}: the top level must be a mapping with `rules` and `overrides`")
        return cls(doc, source=str(path))

    def params(
        self, *, street: str | None = None, grids: Sequence[str] = (), device_type: DeviceType | None = None
    ) -> RuleParams:
        """The merged parameters for a reading from `device_type` in grid `grids[0]` (ancestors after it)."""
        key = (street, tuple(grids), device_type)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        merged: dict[str, dict[str, Any]] = {name: dict(self._defaults.get(name, {})) for name in RULE_NAMES}
        for o in self._overrides:
            if o.street is not None and o.street != street:
                continue
            if o.grid is not None and o.grid not in grids:
                continue
            if o.device_type is not None and o.device_type != device_type:
                continue
            for name, values in o.rules.items():
                merged[name] = _merge(merged[name], values)
        built = RuleParams(
            smoke_fire=SmokeFireParams.model_validate(merged["smoke.fire"]),
            smoke_device=SmokeDeviceParams.model_validate(merged["smoke.device"]),
            elevator=ElevatorParams.model_validate(merged["elevator"]),
            ebike=EbikeParams.model_validate(merged["ebike.indoor_charging"]),
            offline=OfflineParams.model_validate(merged["device.offline"]),
            continuous_flow=ContinuousFlowParams.model_validate(merged["water.continuous_flow"]),
            lone_elder=LoneElderParams.model_validate(merged["household.lone_elder_inactive"]),
            group_rental=GroupRentalParams.model_validate(merged["household.group_rental_suspected"]),
        )
        self._cache[key] = built
        return built


DEFAULTS = RuleConfig()


class ConfigWatcher:
    """Reloads a rule file when its modification time changes; a bad edit keeps the last good config."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.errors = 0
        self.reloads = 0
        self.last_error: str | None = None
        self._stamp: tuple[int, int] | None = None
        self.config = DEFAULTS if path is None else RuleConfig.load(path)  # a bad file at start is fatal
        if path is not None:
            self._stamp = self._mtime()

    def _mtime(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def poll(self) -> bool:
        """Reload if the file changed; True when a new configuration was taken."""
        if self.path is None:
            return False
        stamp = self._mtime()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.config = RuleConfig.load(self.path)
        except ConfigError as exc:
            self.errors += 1
            self.last_error = str(exc)
            log.error("rule configuration not reloaded, keeping the previous one: %s", exc)
            return False
        self.reloads += 1
        self.last_error = None
        log.info("rule configuration reloaded from %s", self.path)
        return True
