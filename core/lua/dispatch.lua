-- Move the head job of a model's queues to one worker's queue, if that worker is alive,
-- ready and under its prefetch bound. Atomic: a job is in exactly one list at any time.
-- Returns {'ok', id} | {'empty'} | {'full'} | {'dead'} | {'draining'} | {'moved'}
if redis.call('EXISTS', worker_alive) == 0 then return {'dead'} end
if redis.call('HGET', worker_info, 'state') ~= ready then return {'draining'} end
if redis.call('LLEN', worker_queue) + redis.call('LLEN', worker_active) >= tonumber(bound) then return {'full'} end
local now_s = tonumber(now)
for _, queue in ipairs({high, normal, low}) do
  while true do
    local id = redis.call('LINDEX', queue, 0)
    if not id then break end
    if expected ~= '' and id ~= expected then return {'moved'} end
    redis.call('LPOP', queue)
    local jk = job_prefix .. id
    local s = redis.call('HMGET', jk, 'state', 'expires_at_s')
    if s[1] == queued then
      redis.call('ZREM', expiry, id)
      if s[2] and tonumber(s[2]) < now_s then
        end_job(jk, id, expired, expired_status, now, retention_s, done_channel, 'error', expired_error)
      else
        redis.call('RPUSH', worker_queue, id)
        redis.call('HSET', jk, 'state', dispatched, 'dispatched_at_s', now, 'worker', worker_id)
        return {'ok', id}
      end
    end
    -- Anything else (canceled, expired, gone) was already finalised: drop the stale id.
  end
end
return {'empty'}
