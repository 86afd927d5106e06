-- Give the lease up, if this token still holds it. Returns 1 if it did.
if redis.call('GET', lock) == token then return redis.call('DEL', lock) end
return 0
