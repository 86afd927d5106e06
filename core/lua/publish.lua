-- Publish one model's spec to the registry. The revision grows only when the digest changes,
-- so publishing the same settings again (every API start) changes nothing.
-- Returns {revision, 1 if this call changed the entry else 0}.
if redis.call('HGET', entry, 'digest') == digest then
  return {tonumber(redis.call('HGET', entry, 'revision')), 0}
end
local revision = redis.call('HINCRBY', entry, 'revision', 1)
redis.call('HSET', entry, 'digest', digest, 'spec', spec, 'published_at', published_at, 'source', source)
redis.call('SADD', registry, name)
return {revision, 1}
