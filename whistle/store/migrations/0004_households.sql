-- 0004: what the household models need. Declared absences (a family or a grid worker reports that a
-- lone elder is away: inactivity alerts are suppressed inside the span) and the daily features of
-- every household, recomputed from readings as late data arrives.
CREATE TABLE household_absences (
    id            bigserial PRIMARY KEY,
    household_id  text NOT NULL REFERENCES households (id) ON DELETE CASCADE,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    note          text NOT NULL DEFAULT '',
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX household_absences_household ON household_absences (household_id, ends_at);

CREATE TABLE household_days (
    household_id       text NOT NULL,
    day                date NOT NULL,               -- local date, Asia/Shanghai
    water_l            double precision,
    kwh                double precision,
    night_water_share  double precision,
    night_kwh_share    double precision,
    water_intervals    integer NOT NULL DEFAULT 0,  -- intervals covered by readings (coverage)
    power_intervals    integer NOT NULL DEFAULT 0,
    computed_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (household_id, day)
);
CREATE INDEX household_days_day ON household_days (day);
