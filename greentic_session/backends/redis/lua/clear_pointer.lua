-- Delete a user pointer only if it still holds the stale session key the caller saw.
-- KEYS[1]  user pointer key;  ARGV[1] the stale session key
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
