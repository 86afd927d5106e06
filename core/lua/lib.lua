-- Shared by every script; core/store/scripts.py puts it after the prelude and before the body.

-- A job ends: its terminal state, rq status and end time, plus any field/value pairs given
-- (output or error, ...), in one HSET; it is kept for retention_s, and its waiters are woken.
local function end_job(jk, id, state, status, now, retention_s, done_channel, ...)
  redis.call('HSET', jk, 'state', state, 'status', status, 'finished_at_s', now, ...)
  redis.call('EXPIRE', jk, retention_s)
  redis.call('PUBLISH', done_channel, id)
end
