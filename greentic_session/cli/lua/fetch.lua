-- The walk's read of one SCAN batch: one call, each key read atomically (no TYPE/GET race),
-- bounded by the batch size. The names come packed, as import's steps do (import.lua).
-- ARGV[1] the names' byte lengths, comma-separated
-- ARGV[2] the names back to back
-- ARGV[3] how many leading names to return values for (the rest: type only)
-- Returns type, PTTL and value (a string, a set's members, or nil) for each name.
local names, pos, data = {}, 1, ARGV[2]
for length in string.gmatch(ARGV[1], '%d+') do
  local n = tonumber(length)
  names[#names + 1] = string.sub(data, pos, pos + n - 1)
  pos = pos + n
end
local out, with_values = {}, tonumber(ARGV[3])
for i, key in ipairs(names) do
  local kind = redis.call('TYPE', key).ok
  local value = false
  if i <= with_values then
    if kind == 'string' then value = redis.call('GET', key)
    elseif kind == 'set' then value = redis.call('SMEMBERS', key) end
  end
  out[#out + 1] = kind
  out[#out + 1] = redis.call('PTTL', key)
  out[#out + 1] = value
end
return out
