-- Accept a job: idempotency check, backlog bound, record, enqueue, wake dispatchers. Atomic.
-- KEYS: 1 job hash, 2 target queue, 3 rq:queues, 4-6 model queues (high, normal, low),
--       7 idempotency key (or the job key when there is none), 8 expiry zset
-- ARGV: 1 job id, 2 max queue length, 3 idempotency ttl s (0: none), 4 expires_at_s,
--       5 dispatch channel, 6 event payload (job:<model>), 7.. field/value pairs of the job hash
local id = ARGV[1]
if ARGV[3] ~= '0' then
  local existing = redis.call('GET', KEYS[7])
  if existing then return {'dup', existing} end
end
local backlog = redis.call('LLEN', KEYS[4]) + redis.call('LLEN', KEYS[5]) + redis.call('LLEN', KEYS[6])
if backlog >= tonumber(ARGV[2]) then return {'full', tostring(backlog)} end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('RPUSH', KEYS[2], id)
redis.call('SADD', KEYS[3], KEYS[2])
redis.call('ZADD', KEYS[8], ARGV[4], id)
if ARGV[3] ~= '0' then redis.call('SET', KEYS[7], id, 'EX', ARGV[3]) end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {'ok', id}
