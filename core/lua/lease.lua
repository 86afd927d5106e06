-- Take the lease, or extend it when this token already holds it.
-- Returns 1 when the token holds the lease for ttl_ms from now, 0 when another does.
if redis.call('GET', lock) == token then
  redis.call('PEXPIRE', lock, ttl_ms)
  return 1
end
if redis.call('SET', lock, token, 'NX', 'PX', ttl_ms) then return 1 end
return 0
