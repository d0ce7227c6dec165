-- 0013: silences of life-safety kinds are explicit (flagged, bounded, with a reason) and the end of a
-- silence names who ended it.
ALTER TABLE silences
    ADD COLUMN life_safety  boolean NOT NULL DEFAULT false,
    ADD COLUMN ended_by     text;
