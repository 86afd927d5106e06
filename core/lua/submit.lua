-- Accept a job: idempotency check, backlog bound, record, enqueue, wake dispatchers. Atomic.
-- Returns {'ok', id} | {'dup', the first job's id} | {'full', backlog}.
-- The job id is new for every request: if its hash exists, this is a replay of a call that
-- succeeded (its answer was lost with the connection), and it succeeded once.
if redis.call('EXISTS', job) == 1 then return {'ok', job_id} end
if idempotency_ttl_s ~= '0' then
  local existing = redis.call('GET', idempotency)
  if existing then return {'dup', existing} end
end
local backlog = redis.call('LLEN', high) + redis.call('LLEN', normal) + redis.call('LLEN', low)
if backlog >= tonumber(max_queue_len) then return {'full', tostring(backlog)} end
redis.call('HSET', job, unpack(fields))
redis.call('RPUSH', queue, job_id)
redis.call('SADD', rq_queues, queue)
redis.call('ZADD', expiry, expires_at_s, job_id)
if idempotency_ttl_s ~= '0' then redis.call('SET', idempotency, job_id, 'EX', idempotency_ttl_s) end
redis.call('HINCRBY', counters, 'arrivals', 1)
redis.call('PUBLISH', dispatch_channel, event)
return {'ok', job_id}
