-- A worker took a job from its queue (BLMOVE into its active list): mark it running.
-- KEYS: 1 job hash, 2 worker active list
-- ARGV: 1 job id, 2 worker id, 3 now, 4 retention s, 5 done channel
-- Returns {data, timeout_s, attempt} or false when the job is no longer this worker's to run.
local s = redis.call('HMGET', KEYS[1], 'state', 'worker', 'expires_at_s', 'data', 'timeout_s', 'attempt')
if s[1] ~= 'dispatched' or s[2] ~= ARGV[2] then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  return false
end
if s[3] and tonumber(s[3]) < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'expired', 'status', 'canceled', 'finished_at_s', ARGV[3],
    'error', 'expired: waited longer than its ttl_s before a worker started it')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('LREM', KEYS[2], 0, ARGV[1])
  redis.call('PUBLISH', ARGV[5], ARGV[1])
  return false
end
redis.call('HSET', KEYS[1], 'state', 'running', 'status', 'started', 'started_at_s', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'executions', 1)
return {s[4], s[5], s[6]}
