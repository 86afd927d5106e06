-- End a job that no worker will finish normally (cancel, expiry sweep), if it is still in
-- the state the caller saw, and take it out of the list it waits in.
-- Returns 1 when done, 0 when the job moved on meanwhile (caller re-reads and retries).
local s = redis.call('HMGET', job, 'state', 'worker', 'finished_at_s')
-- The same end state at the same time: a replay of this very call, whose answer was lost.
if s[1] == state and s[3] == now then return 1 end
if s[1] ~= expected_state or (s[2] or '') ~= expected_worker then return 0 end
if holder ~= job then redis.call('LREM', holder, 0, job_id) end
if cancels ~= job then
  redis.call('SADD', cancels, job_id)
  redis.call('EXPIRE', cancels, retention_s)
end
redis.call('ZREM', expiry, job_id)
if reason ~= '' then
  end_job(job, job_id, state, status, now, retention_s, done_channel, 'error', reason)
else
  end_job(job, job_id, state, status, now, retention_s, done_channel)
end
return 1
