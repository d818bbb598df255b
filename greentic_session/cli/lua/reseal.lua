-- reseal: compare-and-set one session blob, only if it still holds the very bytes read, so a
-- write made meanwhile is never lost (the caller reads again and retries).
-- KEYS[1] the blob, KEYS[2] its meta key
-- ARGV[1] the bytes read; ARGV[2] the blob resealed; ARGV[3] the pointer suffix of the
-- session's user ('' for none)
-- The blob keeps its expiry (KEEPTTL). A sealed blob hides its owner from the store's scripts,
-- so a sealing store records the pointer suffix in the meta key (the store's seal.lua): it is
-- written here when missing (NX), expiring with the blob (or never, as the blob).
-- Returns 1 written, 0 changed since it was read (nothing written), -1 gone, -2 no longer a
-- string.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return -1 end
if kind ~= 'string' then return -2 end
local raw = redis.call('GET', KEYS[1])
if raw ~= ARGV[1] then return 0 end
local left = redis.call('PTTL', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
if ARGV[3] ~= '' then
  if left > 0 then redis.call('SET', KEYS[2], ARGV[3], 'PX', left, 'NX')
  else redis.call('SET', KEYS[2], ARGV[3], 'NX') end
end
return 1
