-- Delete a session blob and, only if it still points at this session, its user pointer.
-- KEYS[1]  session blob key;  KEYS[2] (optional) user pointer key
-- ARGV[1]  session key
-- Returns 1 when the blob was deleted, 0 when it was already gone.
local removed = redis.call('DEL', KEYS[1])
if removed == 1 and KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return removed
