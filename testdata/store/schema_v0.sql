-- duebridge store at schema version 0: a database whose version table was
-- created but that was never migrated. Portable SQL (SQLite and PostgreSQL).
-- FROZEN: this is what old databases look like; never edit it.
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (0);
