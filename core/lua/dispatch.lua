-- Move the head job of a model's queues to one worker's queue, if that worker is alive,
-- ready and under its prefetch bound. Atomic: a job is in exactly one list at any time.
-- KEYS: 1-3 model queues (high, normal, low), 4 worker queue, 5 worker active list,
--       6 worker info hash, 7 worker alive key, 8 expiry zset
-- ARGV: 1 worker id, 2 prefetch bound, 3 now (epoch s), 4 expected job id ('' = any),
--       5 job key prefix, 6 retention s, 7 done channel
-- Returns {'ok', id} | {'empty'} | {'full'} | {'dead'} | {'draining'} | {'moved'}
if redis.call('EXISTS', KEYS[7]) == 0 then return {'dead'} end
if redis.call('HGET', KEYS[6], 'state') ~= 'ready' then return {'draining'} end
if redis.call('LLEN', KEYS[4]) + redis.call('LLEN', KEYS[5]) >= tonumber(ARGV[2]) then return {'full'} end
local now = tonumber(ARGV[3])
for i = 1, 3 do
  while true do
    local id = redis.call('LINDEX', KEYS[i], 0)
    if not id then break end
    if ARGV[4] ~= '' and id ~= ARGV[4] then return {'moved'} end
    redis.call('LPOP', KEYS[i])
    local jk = ARGV[5] .. id
    local s = redis.call('HMGET', jk, 'state', 'expires_at_s')
    if s[1] == 'queued' then
      redis.call('ZREM', KEYS[8], id)
      if s[2] and tonumber(s[2]) < now then
        redis.call('HSET', jk, 'state', 'expired', 'status', 'canceled', 'finished_at_s', ARGV[3],
          'error', 'expired: waited longer than its ttl_s before a worker took it')
        redis.call('EXPIRE', jk, ARGV[6])
        redis.call('PUBLISH', ARGV[7], id)
      else
        redis.call('RPUSH', KEYS[4], id)
        redis.call('HSET', jk, 'state', 'dispatched', 'dispatched_at_s', ARGV[3], 'worker', ARGV[1])
        return {'ok', id}
      end
    end
    -- Anything else (canceled, expired, gone) was already finalised: drop the stale id.
  end
end
return {'empty'}
