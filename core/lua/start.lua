-- A worker took a job from its queue (BLMOVE into its active list): mark it running.
-- A retry of the same start (same worker, same ``now``: its reply was lost) answers the same
-- and counts no new execution; a job this worker already runs but lost track of (it took the
-- job again from its active list) counts a new one.
-- Returns {data, timeout_s, attempt} or false when the job is no longer this worker's to run.
local s = redis.call('HMGET', job, 'state', 'worker', 'expires_at_s', 'data', 'timeout_s', 'attempt', 'started_at_s')
if s[1] == running and s[2] == worker_id then
  if s[7] ~= now then
    redis.call('HSET', job, 'started_at_s', now)
    redis.call('HINCRBY', job, 'executions', 1)
  end
  return {s[4], s[5], s[6]}
end
if s[1] ~= dispatched or s[2] ~= worker_id then
  redis.call('LREM', worker_active, 0, job_id)
  return false
end
if s[3] and tonumber(s[3]) < tonumber(now) then
  end_job(job, job_id, expired, expired_status, now, retention_s, done_channel, 'error', expired_error)
  redis.call('LREM', worker_active, 0, job_id)
  return false
end
redis.call('HSET', job, 'state', running, 'status', running_status, 'started_at_s', now)
redis.call('HINCRBY', job, 'executions', 1)
return {s[4], s[5], s[6]}
