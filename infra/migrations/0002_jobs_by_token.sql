-- The worker asks, for every outcome it feeds back, whether the token has a later job; jobs
-- that are done stay in the table, so that question needs an index over every status.
CREATE INDEX jobs_by_token ON jobs (tenant_id, instance_guid, token_id, id);
