-- Give a worker's jobs back to the front of their model queues.
-- mode 'dead':  the worker's heartbeat expired. Its running jobs get attempt+1 (failed past
--               max_attempts), its dispatched jobs go back as they were, and its records go.
-- mode 'drain': the worker is shutting down; only its not-yet-started jobs go back.
-- mode 'gone':  the worker is deregistering: like 'dead' without the heartbeat check, so
--               whatever it still holds (normally nothing) is never orphaned.
-- KEYS: 1 worker queue, 2 worker active, 3 worker info, 4 worker alive, 5 workers set,
--       6-8 model queues (high, normal, low), 9 worker cancel set, 10 expiry zset
-- ARGV: 1 worker id, 2 job key prefix, 3 now, 4 retention s, 5 mode, 6 done channel,
--       7 dispatch channel, 8 event payload (room:<model>)
-- Returns {requeued, failed}, or {-1, 0} if a 'dead' worker turned out to be alive.
local mode = ARGV[5]
if mode == 'dead' and redis.call('EXISTS', KEYS[4]) == 1 then return {-1, 0} end
local wid, prefix, now = ARGV[1], ARGV[2], ARGV[3]
local front = {high = {}, normal = {}, low = {}}
local queue_of = {high = KEYS[6], normal = KEYS[7], low = KEYS[8]}
local requeued, failed = 0, 0

local function give_back(id, ran)
  local jk = prefix .. id
  local s = redis.call('HMGET', jk, 'state', 'worker', 'attempt', 'max_attempts', 'priority', 'expires_at_s')
  if s[2] ~= wid or (s[1] ~= 'running' and s[1] ~= 'dispatched') then return end
  local attempt = tonumber(s[3]) or 1
  if ran then
    attempt = attempt + 1
    if attempt > (tonumber(s[4]) or 1) then
      redis.call('HSET', jk, 'state', 'failed', 'status', 'failed', 'finished_at_s', now, 'attempt', attempt - 1,
        'error', 'worker ' .. wid .. ' died while running this job; gave up after ' .. (attempt - 1) .. ' attempt(s)')
      redis.call('EXPIRE', jk, ARGV[4])
      redis.call('PUBLISH', ARGV[6], id)
      failed = failed + 1
      return
    end
    redis.call('HSET', jk, 'lost_from', wid)
  end
  redis.call('HSET', jk, 'state', 'queued', 'status', 'queued', 'worker', '', 'attempt', attempt,
    'dispatched_at_s', '', 'started_at_s', '')
  if s[6] then redis.call('ZADD', KEYS[10], s[6], id) end
  local p = s[5]
  if not front[p] then p = 'normal' end
  table.insert(front[p], id)
  requeued = requeued + 1
end

if mode ~= 'drain' then
  for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do give_back(id, true) end
end
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do give_back(id, false) end
for p, ids in pairs(front) do
  for i = #ids, 1, -1 do redis.call('LPUSH', queue_of[p], ids[i]) end
end
redis.call('DEL', KEYS[1])
if mode ~= 'drain' then
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[9])
  redis.call('SREM', KEYS[5], wid)
end
if requeued > 0 then redis.call('PUBLISH', ARGV[7], ARGV[8]) end
return {requeued, failed}
