-- Create a session only if its key is free, with its user pointer and expiry, in one step.
-- KEYS[1] session blob key; KEYS[2] meta key; KEYS[3] user pointer key, or absent for none
-- ARGV[1] blob; ARGV[2] session key; ARGV[3] pointer suffix ('' for none);
-- ARGV[4] idle ms; ARGV[5] lifetime ms ('' when off; expiry.lua); ARGV[6] '1' when the data
-- names no user (the pointer is its creator's), else '0'
-- Returns 1 when created, 0 when a session already has that key.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local start = expiry_start(KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] == '1')
if start then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', start.at)
  if KEYS[3] then redis.call('SET', KEYS[3], ARGV[2], 'PXAT', start.at) end
else
  redis.call('SET', KEYS[1], ARGV[1])
  if KEYS[3] then redis.call('SET', KEYS[3], ARGV[2]) end
end
return 1
