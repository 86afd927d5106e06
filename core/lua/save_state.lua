-- Write the autoscaler's state only while this token holds the lease: a tick that outlived
-- its lease must not overwrite the state of the run that took it over. Returns 1 if written.
if redis.call('GET', lock) ~= token then return 0 end
redis.call('SET', state, text)
return 1
