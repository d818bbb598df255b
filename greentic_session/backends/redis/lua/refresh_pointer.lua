-- Give a user pointer a TTL only if it still names the session the caller wrote (on a cluster,
-- the second step of an update or touch of a key whose pointer lives in another slot).
-- KEYS[1]  user pointer key;  ARGV[1] the session key;  ARGV[2] the TTL in ms
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
