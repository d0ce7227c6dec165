"""Every number the simulator uses, in frozen dataclasses, with where it comes from.

Sources: ../shared/DOMAIN.md (water, power, e-bike, elevator and smoke figures) and the seed case
of 瑞金二路街道 (1.93 km², 3 comprehensive grids, 16 residential areas, 40 micro-grids, 658
building groups, 25,639 addresses, 42 % of residents aged 60+, 72 % of dwellings not
self-contained, smoke detectors in every public kitchen and 11,000 alarms from them in 2022).

Anything here can be overridden from a JSON file (`whistle simulate --params FILE`) shaped
`{"district": {...}, "behaviour": {...}, "incidents": {...}}`; see `Params.from_overrides`.
Incident rates marked "evaluation" are raised far above real life on purpose, so that a few
simulated weeks hold enough incidents to score a detector; set them lower for realism.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BuildingType:
    """A kind of building in the street, with its share of building groups."""

    name: str
    share: float  # of building groups
    floors: tuple[int, int]  # inclusive range
    households: tuple[float, float]  # relative size of the building group (households, before scaling)
    shared_kitchen: float  # share of its households cooking in a public kitchen (不成套)
    electric_water_heater: float  # share heating shower water electrically (the rest: gas)
    stairs: tuple[int, int]


BUILDING_TYPES: tuple[BuildingType, ...] = (
    # 石库门 / old lane houses: two or three floors, many families per house, shared kitchens.
    BuildingType("shikumen", 0.45, (2, 3), (22.0, 50.0), 1.0, 0.45, (3, 8)),
    # 新式里弄 / garden lane houses.
    BuildingType("new_lane", 0.15, (3, 4), (12.0, 30.0), 0.8, 0.35, (2, 5)),
    # 老公房: 1950s-80s walk-ups, five or six floors (no lift).
    BuildingType("old_public", 0.27, (4, 6), (30.0, 60.0), 0.8, 0.3, (2, 4)),
    # 小高层 and 高层: self-contained flats with lifts.
    BuildingType("mid_rise", 0.05, (7, 11), (40.0, 80.0), 0.0, 0.2, (1, 2)),
    BuildingType("high_rise", 0.08, (12, 30), (60.0, 160.0), 0.0, 0.15, (1, 2)),
)


@dataclass(frozen=True, slots=True)
class DistrictParams:
    """The street's shape at full scale, and who lives there."""

    street_id: str = "RJ"
    street_name: str = "瑞金二路街道"
    center: tuple[float, float] = (121.4665, 31.2115)  # lon, lat near 瑞金二路 / 永嘉路, Huangpu
    reference_households: int = 25_000  # ~25,639 addresses, some of them shops and offices
    reference_area_km2: float = 1.93
    reference_comprehensive_grids: int = 3
    reference_residential_areas: int = 16
    reference_micro_grids: int = 40
    reference_buildings: int = 658
    min_micro_grids: int = 4  # a small demo street still has a few micro-grids to show
    building_types: tuple[BuildingType, ...] = BUILDING_TYPES
    # Registered household size 1..7 (central Shanghai: mean ≈ 2.3; many one- and two-person elder homes).
    household_size_weights: tuple[float, ...] = (0.28, 0.33, 0.21, 0.10, 0.055, 0.02, 0.005)
    single_elder_share: float = 0.55  # of one-person households: an elder living alone (独居老人)
    couple_elder_share: float = 0.55  # of two-person households: an elder couple
    elder_in_family_share: float = 0.65  # of 3+ households: a grandparent at home
    rental_share: float = 0.16  # declared rentals (tag `rental`)
    vacant_share: float = 0.04  # registered but nobody lives there (人户分离)
    away_member_share: float = 0.08  # one registered member lives elsewhere
    kitchen_households: tuple[int, int] = (3, 7)  # households sharing one public kitchen
    corridor_floor_step: int = 3  # one corridor detector every this many floors of a stairwell (4+ floors)
    ebike_household_sensor_share: float = 0.08  # flats with a 电管家 sensor on a socket circuit
    ebike_corridor_sensor_share: float = 0.6  # building groups with a sensor on the ground-floor corridor circuit
    elevator_households: int = 60  # one lift per this many households (at least one per stairwell above 6 floors)
    workers_per_micro_grid: int = 3  # ~140 social workers over 40 micro-grids
    street_center_workers: int = 3
    elevator_maintainers: int = 3
    property_companies: int = 6


@dataclass(frozen=True, slots=True)
class BehaviourParams:
    """Household routines and appliances; per-capita results land in DOMAIN.md's ranges."""

    # water (litres)
    toilet_per_home_hour: float = 0.42
    cistern_litres: tuple[float, ...] = (4.5, 6.0, 9.0)
    cistern_weights: tuple[float, ...] = (0.35, 0.4, 0.25)
    tap_per_home_hour: float = 0.5
    tap_litres: tuple[float, float] = (1.0, 4.0)
    shower_prob_summer: float = 1.0
    shower_prob_winter: float = 0.6
    shower_litres_median: float = 52.0
    shower_litres_sigma: float = 0.35
    meal_litres: tuple[float, float] = (6.0, 4.0)  # per meal: fixed + per person present
    laundry_loads_per_person: float = 0.18
    laundry_litres: tuple[float, float] = (45.0, 90.0)
    mop_prob: float = 0.25
    water_habit_sigma: float = 0.22  # per-household lognormal spread
    water_scale: float = 1.06
    # power (watts)
    standby_w: tuple[float, float] = (5.0, 16.0)
    fridge_w: tuple[float, float] = (70.0, 120.0)
    fridge_period_min: tuple[int, int] = (35, 60)
    fridge_duty: tuple[float, float] = (0.28, 0.4)
    light_base_w: float = 20.0
    light_per_person_w: float = 22.0
    daylight_factor: float = 0.35
    tenant_room_w: float = 45.0
    rice_cooker_w: tuple[float, float] = (500.0, 800.0)
    rice_cooker_keep_warm_w: float = 55.0
    kettle_w: tuple[float, float] = (1700.0, 2200.0)
    kettle_per_day: tuple[float, float] = (0.8, 0.5)  # fixed + per person
    microwave_prob: float = 0.25
    water_heater_kw: tuple[float, float] = (2.0, 3.0)
    laundry_w: tuple[float, float] = (250.0, 420.0)
    ac_units: tuple[float, ...] = (0.12, 0.38, 0.35, 0.15)  # weights of 0..3 units
    ac_w: tuple[float, float] = (300.0, 650.0)  # average draw of one cycling inverter unit
    ac_cycle_min: tuple[int, int] = (10, 20)
    heater_share: float = 0.45  # households heating with an electric heater (else the AC's heat pump)
    heater_w: tuple[float, float] = (800.0, 2000.0)
    dehumidifier_share: float = 0.2
    dehumidifier_w: tuple[float, float] = (180.0, 320.0)
    power_habit_sigma: float = 0.25
    power_scale: float = 1.0
    # Daily mean temperature of Shanghai by month (°C); a day's temperature varies around it.
    monthly_temp_c: tuple[float, ...] = (4.8, 6.6, 10.2, 15.6, 20.9, 24.7, 28.8, 28.4, 24.6, 19.5, 13.8, 7.6)
    temp_noise_c: float = 2.5
    cooling_from_c: float = 25.0
    heating_below_c: float = 11.0
    # e-bikes: households (without a sensor) that charge indoors now and then, shown in the power meter
    ebike_indoor_share: float = 0.05
    ebike_session_prob: float = 0.4
    # elevators
    trips_per_household: float = 2.4
    elevator_heartbeat_s: int = 300
    # smoke detectors: battery % at install and % lost per day (a 5-10 year lithium cell)
    smoke_battery_start: tuple[float, float] = (18.0, 100.0)
    smoke_battery_per_day: tuple[float, float] = (0.025, 0.06)
    low_battery_pct: float = 20.0


@dataclass(frozen=True, slots=True)
class IncidentParams:
    """How often incidents and confounders happen, and how they look."""

    # group rentals (群租): flats whose real occupants are far above the registered ones
    group_rental_share: float = 0.015  # of households, already there when the run starts
    group_rental_new_per_household_day: float = 0.00002  # new ones starting during the run
    group_rental_actual: tuple[int, int] = (6, 14)
    group_rental_night_shift_share: float = 0.35
    group_rental_ebike_share: float = 0.15  # tenants (delivery riders) charging an e-bike in the flat
    group_rental_from_rental_share: float = 0.6  # the rest are in flats not declared as rentals
    # confounders of group rental
    large_family_min_registered: int = 5
    shop_share: float = 0.008  # flats run as a shop (商居融合): hair salon, eatery, online shop, tailor
    visitors_per_household_day: float = 0.002  # relatives staying for about a week
    visitors_extra: tuple[int, int] = (2, 4)
    visitors_days: tuple[float, float] = (4.0, 10.0)
    # lone elders
    lone_elder_inactive_per_elder_day: float = 0.003  # evaluation: real life is far rarer
    lone_elder_found_after_h: float | None = None  # None: inactive until the end of the run
    elder_trip_per_elder_day: float = 0.006
    elder_trip_days: tuple[float, float] = (1.5, 9.0)
    elder_trip_declared_share: float = 0.5
    cleaning_day_per_household_day: float = 0.01
    cleaning_lpm: tuple[float, float] = (2.0, 4.5)
    cleaning_minutes: tuple[int, int] = (60, 150)
    # water left running (a tap, a cistern that never stops)
    tap_running_per_household_day: float = 0.0007
    tap_running_elder_factor: float = 3.0
    tap_running_lpm: tuple[float, float] = (0.6, 5.0)
    tap_running_hours: tuple[float, float] = (2.5, 14.0)
    # e-bikes charged indoors, on circuits with a sensor
    ebike_sensor_charger_share: float = 0.4  # sensor flats whose owner charges indoors
    ebike_sensor_session_prob: float = 0.45  # per such flat per day
    ebike_corridor_sessions_per_day: float = 0.3  # per corridor sensor
    # smoke
    fire_per_building_day: float = 0.0004  # evaluation (real fires are rarer); 1-3 detectors alarm
    kitchen_alarms_per_year_full_scale: float = 11_000.0  # 瑞金二路 2022, calibrates nuisance alarms
    corridor_nuisance_per_detector_day: float = 0.0008  # shower steam, dust, cigarette smoke
    smoke_fault_per_detector_day: float = 0.0003
    smoke_tamper_per_detector_day: float = 0.0002
    smoke_test_per_detector_day: float = 1 / 90
    # elevators
    trapped_per_elevator_day: float = 0.006  # evaluation
    fault_per_elevator_day: float = 0.01
    ebike_in_elevator_per_elevator_day: float = 0.03
    # devices
    offline_per_device_day: float = 0.0005
    # silent long enough to be noticed against the device's own reporting interval
    offline_hours: tuple[float, float] = (1.5, 36.0)  # meters (15 min)
    offline_hours_smoke: tuple[float, float] = (26.0, 72.0)  # daily heartbeat
    offline_hours_connected: tuple[float, float] = (0.5, 12.0)  # elevators, e-bike sensors (minutes)
    meter_reset_per_meter_day: float = 0.0002


@dataclass(frozen=True, slots=True)
class Params:
    district: DistrictParams = field(default_factory=DistrictParams)
    behaviour: BehaviourParams = field(default_factory=BehaviourParams)
    incidents: IncidentParams = field(default_factory=IncidentParams)

    @classmethod
    def from_overrides(cls, doc: dict[str, Any]) -> Params:
        """Defaults with the fields named in `doc` replaced; unknown names are an error."""
        parts: dict[str, Any] = {}
        for name, base in (
            ("district", DistrictParams()),
            ("behaviour", BehaviourParams()),
            ("incidents", IncidentParams()),
        ):
            over = doc.get(name, {})
            if not isinstance(over, dict):
                raise ValueError(f"params.{name} must be an object")
            known = {f.name: f for f in dataclasses.fields(base)}
            unknown = sorted(set(over) - set(known))
            if unknown:
                raise ValueError(f"unknown params.{name} fields: {', '.join(unknown)}")
            values = {k: _coerce(getattr(base, k), v) for k, v in over.items()}
            parts[name] = dataclasses.replace(base, **values)
        extra = sorted(set(doc) - {"district", "behaviour", "incidents"})
        if extra:
            raise ValueError(f"unknown params sections: {', '.join(extra)}")
        return cls(**parts)


def _coerce(default: Any, value: Any) -> Any:
    if isinstance(default, tuple) and isinstance(value, list):
        if default and isinstance(default[0], BuildingType):
            return tuple(
                BuildingType(
                    **{
                        **b,
                        "floors": tuple(b["floors"]),
                        "households": tuple(b["households"]),
                        "stairs": tuple(b["stairs"]),
                    }
                )
                for b in value
            )
        return tuple(value)
    return value
