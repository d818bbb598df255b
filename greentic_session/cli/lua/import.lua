-- import: one call per batch, its steps packed into four arguments (redis-py spends far more
-- packing a million small arguments than Redis spends running the batch).
-- ARGV[1] one op letter per step
-- ARGV[2] the byte lengths of the fields, comma-separated
-- ARGV[3] the fields back to back, three per step: key, value, PTTL ('' = none)
-- ARGV[4] the record number of each step, comma-separated
-- ops: S = SET (replacing any value and expiry), D = DEL, A = SADD then PEXPIRE or PERSIST.
-- Like the store's scripts, it names keys at run time (Redis Cluster is not supported).
-- A record with a wait-set key that holds another type is written not at all; returns those
-- record numbers.
local ops, data = ARGV[1], ARGV[3]
local fields, pos = {}, 1
for length in string.gmatch(ARGV[2], '%d+') do
  local n = tonumber(length)
  fields[#fields + 1] = string.sub(data, pos, pos + n - 1)
  pos = pos + n
end
local records = {}
for number in string.gmatch(ARGV[4], '%d+') do records[#records + 1] = number end
local refused, failed = {}, {}
for i = 1, #ops do
  if string.sub(ops, i, i) == 'A' then
    local kind = redis.call('TYPE', fields[3 * i - 2]).ok
    if kind ~= 'set' and kind ~= 'none' and not refused[records[i]] then
      refused[records[i]] = true
      failed[#failed + 1] = records[i]
    end
  end
end
for i = 1, #ops do
  if not refused[records[i]] then
    local op = string.sub(ops, i, i)
    local key, value, pttl = fields[3 * i - 2], fields[3 * i - 1], fields[3 * i]
    if op == 'S' then
      if pttl == '' then redis.call('SET', key, value)
      else redis.call('SET', key, value, 'PX', pttl) end
    elseif op == 'D' then
      redis.call('DEL', key)
    else
      redis.call('SADD', key, value)
      if pttl == '' then redis.call('PERSIST', key)
      else redis.call('PEXPIRE', key, pttl) end
    end
  end
end
return failed
