-- Prepended to the scripts that read keys which may hold another type of value: a GET that
-- reports a key of the wrong type (returns false, true) instead of failing, and lets every other
-- error (an ACL denial, say) fail the script, which every script meets before its first write.
local function get_string(key)
  local ok, value = pcall(redis.call, 'GET', key)
  if ok then return value, false end
  -- Redis 7.0 hands pcall the error as a string, later versions as a table {err = ...}.
  local text = type(value) == 'table' and value.err or tostring(value)
  if string.sub(text, 1, 9) == 'WRONGTYPE' then return false, true end
  error(redis.error_reply(text))  -- the server's reply, code first, as if not caught
end
