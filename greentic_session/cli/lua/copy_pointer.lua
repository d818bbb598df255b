-- copy-to-cluster: a user pointer in another slot than its session (written after it).
-- KEYS[1] the pointer
-- ARGV[1] '1' for a dry run; ARGV[2] the session key; ARGV[3] PTTL ms ('' = none)
-- Returns 1 written (dry run: would be), 0 it already names the session, -1 it holds anything
-- else (left alone).
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then
  if ARGV[1] ~= '1' then
    if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
    else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
  end
  return 1
end
if kind == 'string' and redis.call('GET', KEYS[1]) == ARGV[2] then return 0 end
return -1
