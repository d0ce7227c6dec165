"""Every number the CREST-based generator chooses, with where it comes from.

Sources are marked on each field: ``DOMAIN l.N`` is a line of /work/shared/DOMAIN.md, ``BRIEF`` the
generator's brief, ``CREST`` the Richardson/CREST model as shipped in richardsonpy 0.2.3 (its data
files and code), ``assumed`` a choice of ours with the reasoning next to it. PARAMS.md lists the
same numbers as a table with the measured outcome.

Ranges are ``(low, high)`` and drawn uniformly unless the comment says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Range = tuple[float, float]


@dataclass(frozen=True)
class Params:
    """The generator's parameters (frozen; tests and the command line read the defaults)."""

    # --- district composition (shares of all households; counts are rounded, not drawn) ---
    lone_elder_share: float = 0.10  # BRIEF (~10 %)
    group_rental_share: float = 0.05  # BRIEF (~5 %)
    large_family_share: float = 0.03  # assumed; DOMAIN l.25 names large families as a confounder
    shop_share: float = 0.02  # assumed; DOMAIN l.25 (shops run from flats)
    shift_worker_share: float = 0.03  # assumed; BRIEF names shift workers as a confounder
    ebike_share: float = 0.30  # BRIEF (~30 % of households carry an e-bike circuit sensor)
    ebike_weight_group_rental: float = 2.5  # assumed: delivery riders share group rentals
    rental_tag_share: float = 0.20  # assumed: share of ordinary flats tagged `rental`
    group_rental_rental_tag: float = 0.85  # BRIEF ("mostly rental tagged")
    # ordinary household sizes 1..5 (assumed, close to Shanghai's mean of ~2.3 persons per household)
    size_weights: tuple[float, ...] = (0.25, 0.33, 0.25, 0.10, 0.07)
    unregistered_occupant_share: float = 0.05  # assumed: registry one person short (actual = registered + 1)
    visitors_share: float = 0.08  # assumed: ordinary flats with one visit during the run
    visit_days: tuple[int, int] = (2, 7)  # assumed (BRIEF: "visitors for a few days")
    visit_guests: tuple[int, int] = (1, 4)  # assumed
    contact_share_others: float = 0.30  # assumed: non-elder households with an emergency contact

    # --- CREST use ---
    # richardsonpy ElectricLoad.standard_consumption["MFH"] (kWh/year by household size 1..5): used only
    # for its shape (economies of scale per person); the level is set by kwh_per_person_day.
    crest_mfh_kwh: tuple[float, ...] = (1500.0, 2200.0, 3000.0, 3400.0, 4100.0)
    kwh_per_person_day: float = 1.7  # DOMAIN l.10 (869.5 TWh / 1.39 bn people / 365)
    crest_appliance_share: float = 0.91  # CREST/richardsonpy: ~9 % of demand is lighting
    # CREST's calibration assumes a mean active occupancy of 0.459; measured over our runs the appliances
    # come out at this fraction of the target, so targets are divided by it (assumed, by measurement).
    crest_calibration_gain: float = 1.0
    household_power_sd: float = 0.25  # assumed: lognormal sigma of a household's level
    elder_power_factor: float = 0.8  # assumed: lone elders use less than the per-person average
    flat_meter_power_factor: float = 0.6  # assumed
    led_factor: Range = (0.15, 0.35)  # assumed: CREST's UK bulbs (incandescent-era watts) as LED/CFL
    bulbs_per_flat: tuple[int, int] = (6, 14)  # assumed: a Shanghai flat has fewer lamps than a UK house
    power_fine_resolution_share: float = 0.8  # assumed: 0.001 kWh registers; the rest 0.01 kWh (DL/T 645)
    power_initial_kwh: Range = (500.0, 40000.0)  # assumed: meters are not new

    # --- water (litres); components add up to about 125 L per person per day (DOMAIN l.7) ---
    toilet_litres: Range = (6.0, 9.0)  # BRIEF (6-9 L flush); per household cistern, +/- 0.3 L a flush
    toilet_per_active_hour: float = 0.55  # assumed: ~4-5 flushes a day at home for 8-10 active hours
    handwash_litres: Range = (1.0, 2.0)  # BRIEF
    handwash_after_toilet: float = 0.6  # assumed
    handwash_per_active_hour: float = 0.35  # assumed
    tap_per_active_hour: float = 1.0  # assumed: end-use studies count far more short faucet uses than flushes
    tap_litres: Range = (0.3, 1.0)  # assumed
    night_toilet_elder: float = 0.7  # assumed: nocturia in older adults (visits a night, Poisson)
    night_toilet_other: float = 0.12  # assumed: visits per person-night
    night_window_min: tuple[int, int] = (30, 330)  # assumed: 00:30-05:30 local
    showers_per_person_day: float = 0.8  # assumed (Shanghai autumn/winter: most shower daily)
    shower_minutes: Range = (5.0, 12.0)  # assumed
    shower_lpm: Range = (6.0, 9.0)  # assumed: household shower head flow, L/min
    kitchen_prep_p: float = 0.8  # assumed
    kitchen_prep_p_elder: float = 0.5  # DOMAIN l.80 (meals that need no running water)
    kitchen_prep_litres: Range = (2.0, 6.0)  # assumed
    dishes_p: float = 0.8  # assumed; 0.2 with a dishwasher
    dishes_p_elder: float = 0.6  # assumed
    dishes_litres: Range = (8.0, 20.0)  # assumed, times 1 + 0.3 (n - 1)
    dishes_delay_min: tuple[int, int] = (20, 60)  # assumed
    meal_gap_min: int = 45  # assumed: CREST cooking starts closer than this are one meal
    kettle_fill_litres: Range = (1.0, 1.7)  # assumed
    washer_fill_litres: Range = (12.0, 18.0)  # assumed (drum washer ~45-60 L a cycle)
    washer_rinse_litres: Range = (8.0, 11.0)  # assumed, at CREST's four rinse phases
    dishwasher_litres: Range = (10.0, 14.0)  # assumed
    cleaning_p: float = 0.3  # assumed: a mop bucket on 30 % of household-days
    cleaning_litres: Range = (8.0, 15.0)  # assumed
    household_water_sd: float = 0.2  # assumed: lognormal sigma on showers and kitchen
    water_fine_resolution_share: float = 0.85  # BRIEF: a small share of registers count whole litres
    water_initial_m3: Range = (20.0, 900.0)  # assumed

    # --- lone elders (DOMAIN l.78-82) ---
    elder_weekend_chain: bool = True  # assumed: retired, so CREST's weekend chain every day
    # CREST's one-person chain is a UK adult of any age: between 07:00 and 21:00 it is inactive (out
    # or asleep) 44 % of the time, and with DOMAIN's outings and naps on top an elder went without
    # water for 8 h or more on a quarter of days. A retired person living alone is more homebound
    # (assumed): leaving becomes 0.5x and coming back 2x as likely, CREST's time-of-day shape kept.
    elder_leave_factor: float = 0.5
    elder_return_factor: float = 2.0
    elder_homebound_slots: tuple[int, int] = (42, 126)  # 07:00-21:00
    nap_p: float = 0.75  # DOMAIN l.78 ("most older adults in Chinese surveys nap")
    nap_start_min: tuple[int, int] = (720, 810)  # assumed: 12:00-13:30
    nap_habit_min: Range = (30.0, 90.0)  # DOMAIN l.79 (usually 30-90 min); a person's median
    nap_day_sd: float = 0.25  # assumed: lognormal day-to-day spread
    long_nap_p: float = 0.03  # assumed: share of elder-days with a long nap
    long_nap_min: Range = (180.0, 300.0)  # BRIEF (3-5 h)
    outing_p: float = 0.6  # assumed
    outing_start_min: tuple[int, int] = (360, 540)  # DOMAIN l.79: morning exercise or market 06:00-09:00
    outing_min: Range = (60.0, 180.0)  # DOMAIN l.79 (1-3 h)
    quiet_afternoon_share: float = 0.3  # DOMAIN l.81 ("ordinary for some people")
    quiet_afternoon_p: float = 0.6  # assumed: share of such a person's days
    quiet_afternoon_start_min: tuple[int, int] = (780, 900)  # assumed: 13:00-15:00
    quiet_afternoon_min: Range = (240.0, 360.0)  # DOMAIN l.81 (4-6 h)
    flat_meter_share: float = 0.25  # DOMAIN l.80 (standby only in daylight); assumed share
    trip_rate_per_day: float = 1.0 / 60.0  # assumed: a trip away every two months
    trip_days: tuple[int, int] = (1, 5)  # BRIEF
    trip_declared_p: float = 0.6  # assumed
    trip_leave_min: tuple[int, int] = (480, 960)  # assumed: leaves 08:00-16:00
    trip_return_min: tuple[int, int] = (600, 1200)  # assumed: back 10:00-20:00
    declared_pad_before_h: Range = (0.0, 2.0)  # assumed: families declare a little wider than the trip
    declared_pad_after_h: Range = (0.0, 6.0)  # assumed

    # --- lone-elder inactivity incidents ---
    incident_rate_per_elder_day: float = 0.01  # BRIEF (about 1 per 100 elder-days), times --incident-scale
    incident_warmup_days: int = 7  # assumed: a learned routine needs a week of history
    incident_found_h: Range = (12.0, 24.0)  # BRIEF
    incident_lamp_p: float = 0.4  # assumed
    incident_lamp_w: Range = (10.0, 60.0)  # BRIEF
    incident_night_flush_p: float = 0.5  # assumed: a night fall follows a toilet visit
    hospital_p: float = 0.5  # assumed: found elders taken to hospital, declared by the family
    hospital_days: Range = (2.0, 6.0)  # assumed

    # --- group rentals, shops, shift workers, large families ---
    group_rental_people: tuple[int, int] = (5, 10)  # BRIEF
    group_rental_registered: tuple[int, int] = (1, 2)  # BRIEF
    group_rental_from_day_p: float = 0.4  # assumed: over-occupied from a day on, else the whole run
    group_rental_shift_p: float = 0.35  # assumed: extra units on late/early shifts (BRIEF: night and early)
    group_rental_shift_slots: tuple[int, int] = (36, 72)  # assumed: 6-12 h later than CREST's day
    shift_worker_slots: tuple[int, int] = (60, 72)  # assumed: night shift, 10-12 h later
    shop_open_min: tuple[int, int] = (480, 600)  # assumed: opens 08:00-10:00
    shop_close_min: tuple[int, int] = (1140, 1260)  # assumed: closes 19:00-21:00
    shop_closed_weekday_p: float = 0.6  # assumed: one closing day a week
    shop_base_w: Range = (200.0, 600.0)  # assumed: lights, equipment, air conditioning
    shop_burst_w: Range = (1000.0, 2500.0)  # assumed: hair dryers / induction hobs
    shop_bursts_per_hour: Range = (0.8, 2.0)  # assumed
    shop_burst_min: Range = (3.0, 15.0)  # assumed
    shop_draws_per_hour: Range = (3.0, 8.0)  # assumed
    shop_draw_litres: Range = (3.0, 12.0)  # assumed (~250-700 L a day)

    # --- e-bike circuit (DOMAIN l.57-77) ---
    circuit_fridge_p: float = 0.3  # assumed shares of circuits carrying each appliance
    circuit_kettle_p: float = 0.4
    circuit_rice_p: float = 0.35
    circuit_tv_p: float = 0.35
    circuit_computer_p: float = 0.3
    circuit_heater_p: float = 0.25
    fridge_w: Range = (80.0, 150.0)  # DOMAIN l.71
    tv_w: Range = (40.0, 150.0)  # DOMAIN l.69
    tv_picture_sd: Range = (0.04, 0.08)  # DOMAIN l.69 (+/-5-15 % with the picture; clipped at 15 %)
    tv_evening_p: float = 0.5  # assumed: evenings with a long session on a TV circuit
    tv_evening_start_min: tuple[int, int] = (1110, 1260)  # assumed: 18:30-21:00
    tv_evening_min: Range = (120.0, 300.0)  # DOMAIN l.70 (2-5 h)
    laptop_w: Range = (30.0, 90.0)  # DOMAIN l.70
    desktop_w: Range = (60.0, 250.0)  # DOMAIN l.70
    monitor_w: Range = (15.0, 40.0)  # DOMAIN l.70
    laptop_p: float = 0.7  # assumed: a computer on the circuit is a laptop, else a desktop + monitor
    kettle_w: Range = (1500.0, 2200.0)  # DOMAIN l.72
    rice_p: float = 0.6  # assumed: meals with rice on a rice-cooker circuit
    rice_cook_w: Range = (500.0, 1000.0)  # DOMAIN l.71
    rice_cook_min: Range = (20.0, 40.0)  # DOMAIN l.71
    rice_warm_w: Range = (30.0, 80.0)  # DOMAIN l.72
    rice_warm_min: Range = (20.0, 120.0)  # assumed
    heater_w: Range = (800.0, 2200.0)  # DOMAIN l.72
    heater_day_p: float = 0.3  # assumed, times CREST's monthly temperature modifier (capped at 0.9)
    heater_min: Range = (120.0, 420.0)  # assumed (DOMAIN: "for hours")
    heater_cycling_p: float = 0.6  # assumed: thermostat-cycling rather than flat
    heater_on_min: Range = (5.0, 20.0)  # assumed
    heater_off_min: Range = (3.0, 15.0)  # assumed
    circuit_base_w: Range = (0.0, 6.0)  # assumed: router, phone charger
    charges_indoors_p: float = 0.65  # assumed: e-bike sensor households that ever charge indoors
    charges_indoors_p_group_rental: float = 0.9  # assumed
    charge_night_p: Range = (0.15, 0.6)  # assumed: share of nights such a household charges
    charge_night_p_group_rental: Range = (0.5, 0.9)  # assumed
    charger_kinds: tuple[float, float, float] = (0.55, 0.40, 0.05)  # assumed: lead-acid, lithium, fast
    lead_acid_w: Range = (100.0, 200.0)  # DOMAIN l.74 (48 V at 1.8-3 A)
    lithium_w: Range = (100.0, 300.0)  # DOMAIN l.75 (2-5 A)
    fast_w: Range = (400.0, 600.0)  # DOMAIN l.75 ("up to ~600 W")
    cc_noise_sd: float = 0.006  # BRIEF (+/-1-2 % minute to minute)
    cc_rise: Range = (0.0, 0.06)  # assumed: pack voltage rises during constant current
    cc_min: Range = (60.0, 300.0)  # assumed: depth of discharge
    taper_min: Range = (60.0, 180.0)  # DOMAIN l.76 (1-3 h)
    lead_float_w: Range = (3.0, 8.0)  # DOMAIN l.59 (float at ~50 mA) plus charger losses
    lithium_idle_w: Range = (0.5, 2.0)  # assumed: charger cut off, idle draw
    session_h: Range = (4.0, 10.0)  # DOMAIN l.76
    charge_evening_p: float = 0.8  # DOMAIN l.77 (most start in the evening, 18:00-23:00)
    charge_day_p: float = 0.12  # assumed (11:00-16:00); the rest start late (23:00-01:00)
    unplug_min: tuple[int, int] = (390, 510)  # assumed: unplugged 06:30-08:30
    sensor_noise_sd: float = 0.003  # assumed: relative noise of the 60-s mean
    sensor_noise_w: float = 0.2  # assumed: absolute noise floor
    circuit_confounder_min: int = 60  # assumed: TV/laptop/heater sessions this long are recorded

    # --- continuous flow (water.continuous_flow) ---
    flow_rate_per_household_day: float = 0.001  # assumed ("a few households"), times --incident-scale
    flow_lph: Range = (20.0, 200.0)  # BRIEF
    flow_h: Range = (3.0, 30.0)  # BRIEF

    # --- uploads (NB-IoT meters once a day; e-bike sensors hourly) ---
    early_window_min: tuple[int, int] = (120, 240)  # BRIEF: water 02:00-04:00 the next day
    late_window_min: tuple[int, int] = (360, 600)  # BRIEF: power 06:00-10:00 the next day
    power_first_share: float = 0.25  # BRIEF: the order reversed for ~25 % of households
    upload_jitter_min: float = 10.0  # assumed: a meter's daily slot wanders by +/- 10 min
    ebike_send_delay_s: tuple[int, int] = (2, 60)  # assumed: hourly batch sent this long after the hour

    # --- sky (lighting input): Shanghai clear sky, cloud by day ---
    latitude: float = 31.21  # BRIEF (district near 121.46 E, 31.21 N)
    longitude: float = 121.46
    sky_kinds: tuple[float, float, float] = (0.35, 0.35, 0.30)  # assumed: clear, broken, overcast days
    sky_clearness: tuple[Range, Range, Range] = field(default=((0.85, 1.0), (0.45, 0.8), (0.12, 0.35)))


DEFAULT = Params()
