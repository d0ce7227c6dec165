-- 0018: the newest committed registry version. The sequence hands a version out before its change commits
-- (sequences are not transactional), so a reader of the sequence could record a version whose change it
-- cannot see yet, and then skip that change's announcement. This row is written inside the change's own
-- transaction: whoever reads it sees exactly the changes it counts.
CREATE TABLE registry_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO registry_head (version)
SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM registry_version;
