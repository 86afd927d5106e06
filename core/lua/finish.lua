-- A worker finished running a job. The outcome is stored only if the job is still this
-- worker's run (not canceled, not re-queued after a missed heartbeat). The slot is freed
-- either way.
-- KEYS: 1 job hash, 2 worker active list, 3 worker info hash
-- ARGV: 1 job id, 2 worker id, 3 attempt, 4 state (succeeded|failed), 5 rq status,
--       6 field (output|error), 7 payload, 8 now, 9 retention s, 10 run_s, 11 done channel,
--       12 dispatch channel, 13 event payload (free:<model>:<worker>)
redis.call('LREM', KEYS[2], 0, ARGV[1])
local s = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempt')
local accepted = 0
if s[1] == 'running' and s[2] == ARGV[2] and s[3] == ARGV[3] then
  redis.call('HSET', KEYS[1], 'state', ARGV[4], 'status', ARGV[5], ARGV[6], ARGV[7], 'finished_at_s', ARGV[8])
  redis.call('EXPIRE', KEYS[1], ARGV[9])
  redis.call('PUBLISH', ARGV[11], ARGV[1])
  accepted = 1
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  local e = tonumber(redis.call('HGET', KEYS[3], 'ewma_run_s'))
  local run = tonumber(ARGV[10])
  if e then run = 0.8 * e + 0.2 * run end
  redis.call('HSET', KEYS[3], 'ewma_run_s', tostring(run), 'last_job_at', ARGV[8])
  redis.call('HINCRBY', KEYS[3], 'jobs_done', 1)
end
redis.call('PUBLISH', ARGV[12], ARGV[13])
return accepted
