-- 0011: the registry's whole life. Entries are retired, not deleted (tickets and readings keep
-- pointing at them); an import lists an entry again to bring it back. A household's personal data
-- can be erased on request (its contacts go, its tickets stay, anonymised).
ALTER TABLE grids      ADD COLUMN retired_at timestamptz;
ALTER TABLE buildings  ADD COLUMN retired_at timestamptz;
ALTER TABLE households ADD COLUMN retired_at timestamptz, ADD COLUMN erased_at timestamptz;
ALTER TABLE devices    ADD COLUMN retired_at timestamptz;
ALTER TABLE workers    ADD COLUMN retired_at timestamptz;
CREATE INDEX devices_active ON devices (id) WHERE retired_at IS NULL;
