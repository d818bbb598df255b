-- Prepended to every script that creates, writes or touches a session: expiry with the server's
-- clock, by greentic_session/expiry.py's rule: TTL = min(idle_ttl, what is left of max_lifetime).
-- The meta key (keys.RedisKeys.meta) exists only when the store has an expiry option: its value is
-- the session's user-pointer suffix ('' for none), its PTTL the remaining lifetime when
-- max_lifetime is set (set once, at creation). `idle` and `life` are whole milliseconds as
-- strings, '' when that option is off. Nothing here raises after a write: reads that could fail
-- on a key of the wrong type are pcall'd, and SET/PEXPIRE work on any key.

-- A new session: write its meta key; returns its TTL, or nil when the store has no expiry.
local function expiry_start(meta_key, suffix, idle, life)
  local i, l = tonumber(idle), tonumber(life)
  if not i and not l then return nil end
  local ttl = i
  if l and (not ttl or l < ttl) then ttl = l end
  redis.call('SET', meta_key, suffix, 'PX', l or ttl)
  return ttl
end

-- An existing session about to be written or touched (reads only): returns nil when the store
-- has no expiry, else {ttl, suffix, reset}. `fallback` is the pointer suffix to use when the meta
-- key is missing (a session another runtime wrote): then a lifetime starts now.
local function expiry_plan(meta_key, fallback, idle, life)
  local i, l = tonumber(idle), tonumber(life)
  if not i and not l then return nil end
  local ok, suffix = pcall(redis.call, 'GET', meta_key)
  if not ok then suffix = false end
  local plan = {ttl = i, suffix = suffix or fallback, reset = true, life = l}
  if l then
    local left = -2
    if suffix then left = redis.call('PTTL', meta_key) end
    if left >= 0 then plan.reset = false else left = l end
    if not plan.ttl or left < plan.ttl then plan.ttl = left end
  end
  if plan.ttl < 1 then plan.ttl = 1 end
  return plan
end

-- Apply a plan after the session's own key got plan.ttl: the meta key, and the user pointer if it
-- still names this session (a newer session's pointer keeps the newer session's expiry).
local function expiry_apply(plan, meta_key, user_prefix, session_key)
  if plan.reset then
    redis.call('SET', meta_key, plan.suffix, 'PX', plan.life or plan.ttl)
  end
  if plan.suffix ~= '' then
    local pointer = user_prefix .. plan.suffix
    local ok, current = pcall(redis.call, 'GET', pointer)
    if ok and current == session_key then redis.call('PEXPIRE', pointer, plan.ttl) end
  end
end
