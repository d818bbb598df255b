-- copy-to-cluster: one session's keys in its slot, all or nothing.
-- KEYS[1] the blob, then the session's other keys in that slot
-- ARGV[1] '1' for a dry run (check, write nothing); then three ARGV per key, from ARGV[2]:
--         op, value, PTTL ms ('' = none)
-- ops: B the blob (KEYS[1]) and S a meta, hint or wait scope key: written only if absent; P a
-- user pointer: written if absent, left alone (and counted as taken) if it holds anything else;
-- A a wait SET: the value added, the SET's expiry extended to cover it (never shortened).
-- Returns {status, pointers written, pointers taken}: status 1 written (dry run: would be), 0
-- the blob is there with these very bytes (a previous copy: nothing to do), -1 the blob holds
-- other data, -2 another of the session's keys exists (or a SET key holds another type): then
-- nothing is written.
local dry = ARGV[1] == '1'
local function field(i, n) return ARGV[1 + 3 * (i - 1) + n] end
local blob_type = redis.call('TYPE', KEYS[1]).ok
if blob_type ~= 'none' then
  if blob_type == 'string' and redis.call('GET', KEYS[1]) == field(1, 2) then return {0, 0, 0} end
  return {-1, 0, 0}
end
local written, taken, absent = 0, 0, {}
for i = 2, #KEYS do
  local op, kind = field(i, 1), redis.call('TYPE', KEYS[i]).ok
  if op == 'S' and kind ~= 'none' then return {-2, 0, 0} end
  if op == 'A' and kind ~= 'none' and kind ~= 'set' then return {-2, 0, 0} end
  if op == 'P' then
    if kind == 'none' then
      absent[i], written = true, written + 1
    elseif not (kind == 'string' and redis.call('GET', KEYS[i]) == field(i, 2)) then
      taken = taken + 1
    end
  end
end
if dry then return {1, written, taken} end
for i = 1, #KEYS do
  local op, value, pttl = field(i, 1), field(i, 2), field(i, 3)
  if op == 'A' then
    local left = redis.call('PTTL', KEYS[i])
    redis.call('SADD', KEYS[i], value)
    if pttl == '' then
      if left >= 0 then redis.call('PERSIST', KEYS[i]) end
    elseif left == -2 or (left >= 0 and left < tonumber(pttl)) then
      redis.call('PEXPIRE', KEYS[i], pttl)
    end
  elseif op ~= 'P' or absent[i] then
    if pttl == '' then redis.call('SET', KEYS[i], value)
    else redis.call('SET', KEYS[i], value, 'PX', pttl) end
  end
end
return {1, written, taken}
