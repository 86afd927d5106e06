-- A worker finished running a job. The outcome is stored only if the job is still this
-- worker's run (not canceled, not re-queued after a missed heartbeat). The slot is freed
-- either way. A retry of the same finish (same ``now``: its reply was lost) answers the same
-- and counts nothing twice. Returns 1 if the outcome was stored, 0 if it was discarded.
local removed = redis.call('LREM', worker_active, 0, job_id)
local s = redis.call('HMGET', job, 'state', 'worker', 'attempt', 'finished_at_s')
if removed == 0 and s[1] == state and s[2] == worker_id and s[3] == attempt and s[4] == now then
  return 1
end
local accepted = 0
if s[1] == running and s[2] == worker_id and s[3] == attempt then
  end_job(job, job_id, state, status, now, retention_s, done_channel, field, payload)
  accepted = 1
end
-- Nothing left to free: a retry of a finish whose job had been canceled, or a run whose job the
-- reaper took back (and counted nothing for). Counting here would count a retried finish twice.
if removed == 0 and accepted == 0 then return 0 end
local w = redis.call('HMGET', worker_info, 'id', 'ewma_run_s')
if w[1] then  -- still registered
  local e = tonumber(w[2])
  local run = tonumber(run_s)
  if e then run = 0.8 * e + 0.2 * run end
  redis.call('HSET', worker_info, 'ewma_run_s', tostring(run), 'last_job_at', now)
  redis.call('HINCRBY', worker_info, 'jobs_done', 1)
end
-- A finished run counts for the autoscaler's run-time estimate whether or not its outcome was kept
-- (a canceled job's run counts).
redis.call('HINCRBY', counters, 'completions', 1)
redis.call('HINCRBYFLOAT', counters, 'run_s', run_s)
redis.call('PUBLISH', dispatch_channel, event)
return accepted
