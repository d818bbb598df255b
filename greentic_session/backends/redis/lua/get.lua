-- Prepended to the scripts that read keys which may hold another type of value: a GET that
-- reports a key of the wrong type (returns false, true) instead of failing, and lets every other
-- error (an ACL denial, say) fail the script, which every script meets before its first write.
local function get_string(key)
  local ok, value = pcall(redis.call, 'GET', key)
  if ok then return value, false end
  if type(value) == 'table' and string.find(value.err or '', 'WRONGTYPE', 1, true) then
    return false, true
  end
  error(value)
end
