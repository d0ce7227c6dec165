-- 0008: every change of the registry (an import, an absence, a tag) gets a version; the change is announced
-- on the bus with it, so every role takes the new registry before it judges any reading sent after it.
CREATE SEQUENCE registry_version;
