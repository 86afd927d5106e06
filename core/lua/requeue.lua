-- Give a worker's jobs back to the front of their model queues.
-- mode 'dead':  the worker's heartbeat expired. Its running jobs get attempt+1 (failed past
--               max_attempts), its dispatched jobs go back as they were, and its records go.
-- mode 'drain': the worker is shutting down; only its not-yet-started jobs go back.
-- mode 'gone':  the worker is deregistering: like 'dead' without the heartbeat check, so
--               whatever it still holds (normally nothing) is never orphaned.
-- Returns {requeued, failed}, or {-1, 0} if a 'dead' worker turned out to be alive.
if mode == 'dead' and redis.call('EXISTS', worker_alive) == 1 then return {-1, 0} end
local front = {high = {}, normal = {}, low = {}}
local queue_of = {high = high, normal = normal, low = low}
local requeued, gave_up = 0, 0

local function give_back(id, ran)
  local jk = job_prefix .. id
  local s = redis.call('HMGET', jk, 'state', 'worker', 'attempt', 'max_attempts', 'priority', 'expires_at_s')
  if s[2] ~= worker_id or (s[1] ~= running and s[1] ~= dispatched) then return end
  local attempt = tonumber(s[3]) or 1
  -- A job in the active list that never started (its start was never stored) did not run.
  if ran and s[1] == running then
    attempt = attempt + 1
    if attempt > (tonumber(s[4]) or 1) then
      end_job(jk, id, failed, failed_status, now, retention_s, done_channel, 'attempt', attempt - 1, 'error',
        'worker ' .. worker_id .. ' died while running this job; gave up after ' .. (attempt - 1) .. ' attempt(s)')
      gave_up = gave_up + 1
      return
    end
    redis.call('HSET', jk, 'lost_from', worker_id)
  end
  redis.call('HSET', jk, 'state', queued, 'status', queued_status, 'worker', '', 'attempt', attempt,
    'dispatched_at_s', '', 'started_at_s', '')
  if s[6] then redis.call('ZADD', expiry, s[6], id) end
  local p = s[5]
  if not front[p] then p = 'normal' end
  table.insert(front[p], id)
  requeued = requeued + 1
end

if mode ~= 'drain' then
  for _, id in ipairs(redis.call('LRANGE', worker_active, 0, -1)) do give_back(id, true) end
end
for _, id in ipairs(redis.call('LRANGE', worker_queue, 0, -1)) do give_back(id, false) end
for p, ids in pairs(front) do
  for i = #ids, 1, -1 do redis.call('LPUSH', queue_of[p], ids[i]) end
end
redis.call('DEL', worker_queue)
if mode ~= 'drain' then
  redis.call('DEL', worker_active, worker_info, worker_alive, cancels)
  redis.call('SREM', workers, worker_id)
end
if requeued > 0 then redis.call('PUBLISH', dispatch_channel, event) end
return {requeued, gave_up}
