-- End a job that no worker will finish normally (cancel, expiry sweep), if it is still in
-- the state the caller saw. Removes it from the list it waits in.
-- KEYS: 1 job hash, 2 list holding it (or the job key: none), 3 expiry zset,
--       4 worker cancel set (or the job key: none)
-- ARGV: 1 job id, 2 expected state, 3 expected worker, 4 new state, 5 rq status,
--       6 error ('' for none), 7 now, 8 retention s, 9 done channel
-- Returns 1 when done, 0 when the job moved on meanwhile (caller re-reads and retries).
local s = redis.call('HMGET', KEYS[1], 'state', 'worker')
if s[1] ~= ARGV[2] or (s[2] or '') ~= ARGV[3] then return 0 end
if KEYS[2] ~= KEYS[1] then redis.call('LREM', KEYS[2], 0, ARGV[1]) end
if KEYS[4] ~= KEYS[1] then
  redis.call('SADD', KEYS[4], ARGV[1])
  redis.call('EXPIRE', KEYS[4], ARGV[8])
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'status', ARGV[5], 'finished_at_s', ARGV[7])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[6]) end
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('PUBLISH', ARGV[9], ARGV[1])
return 1
