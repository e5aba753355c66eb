-- A revision per webhook row, so a process can keep webhooks it has decoded (secret opened, URL
-- parsed) and know when its copy is stale.
--
-- Every statement that writes a webhook's fields (create, edit, disable) sets a fresh random
-- value; only the health column `failing_since` changes without one. Random rather than
-- counted, so a webhook deleted and created again under the same id never repeats a revision.
-- Rows written before this migration have revision 0 until their next write.
ALTER TABLE webhooks ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
