-- Concurrency for the group-rental model: the busiest 15 minutes of each household day.
ALTER TABLE household_days
    ADD COLUMN IF NOT EXISTS peak_water_l double precision,  -- litres in the day's busiest interval
    ADD COLUMN IF NOT EXISTS peak_kw      double precision;  -- mean kW over the day's busiest interval
