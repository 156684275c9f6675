-- How many of an active job's works still import. A finishing artifact that settles its work
-- counts it down, and the job completes at zero: the job's own row answers, where asking
-- whether any of its artifacts is still `initial` walked every artifact the job ever updated
-- (on PostgreSQL, the dead index entries of each one), once per settled work.
ALTER TABLE connection_jobs ADD COLUMN works_importing BIGINT NOT NULL DEFAULT 0;
UPDATE connection_jobs SET works_importing =
    (SELECT COUNT(*) FROM job_works w WHERE w.job_id = connection_jobs.id AND w.status = 'importing')
    WHERE status = 'active';
