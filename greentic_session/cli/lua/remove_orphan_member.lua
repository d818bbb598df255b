-- Remove an orphan member of a wait set, only if the session it names is still missing.
-- KEYS[1] a wait set, KEYS[2] the blob its member names
-- ARGV[1] the member
-- Returns 1 removed, 0 kept (the session is back), -1 nothing left to remove.
if redis.call('TYPE', KEYS[1]).ok ~= 'set' or redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return -1
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[1])
  return 1
end
return 0
