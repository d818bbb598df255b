-- Prepended (after waits.lua) to the deadline scripts: a wait's deadline record and its judging.
-- The record lives in the wait's own slot, `{ns}:due:{session key}` (keys.RedisKeys.due), a HASH:
--   reg      the registration's token (hex): the wait's index member is '{reg}:{session key}'
--   due      the deadline, ms since the epoch (the server's clock at registration + due_in)
--   attempt  how often a claim handed the wait out (absent before the first claim: 0)
--   lease    the current lease's id (absent before the first claim)
--   until    when that lease ends, ms (absent before the first claim)
--   scope    the wait's scope suffix: its scope pointer is '{scope pointer prefix}{scope}'
--   json     the ReplyScope registered, as JSON
-- The index (`{ns}:dueidx`, on a cluster one per shard: backends/redis/due.py) is a ZSET of
-- those members scored by when each next needs a claimer: its deadline, then its lease's end. A
-- member whose record is gone or names another registration is stale and pruned when met.

-- The server's clock, in whole milliseconds.
local function due_now()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Judge the index member `member`, met due at `now` (reads only). Returns
--   {verdict = 'deliver', key, record, blob, json, due, attempt (the new count), user, judge}
--     (`judge` only for a sealed blob: {env, tenant_id, team ('' none)} of the wait's scope)
--   {verdict = 'later', at}: leased, or not yet due by this node's clock: score it at `at`
--   {verdict = 'drop', record}: the member is stale; with `record`, its deadline is dead
--     (garbage fields, the wait gone, replaced or foreign) and the record goes too.
-- (A scope JSON that does not decode is the store's to find: it settles such a claim at once.)
-- A record key of another type is left alone (its member goes): not ours to delete.
local function due_judge(member, record_prefix, blob_prefix, scope_prefix, now)
  local reg, key = string.match(member, '^(%x+):(.+)$')
  if not reg then return {verdict = 'drop'} end
  local record = record_prefix .. key
  local f, wrong = W.read_typed('HMGET', record, 'reg', 'due', 'attempt', 'lease', 'until',
                                'scope', 'json')
  if wrong or f[1] ~= reg then return {verdict = 'drop'} end
  local due, attempt, ends = tonumber(f[2]), tonumber(f[3] or 0), tonumber(f[5] or 0)
  local suffix, json = f[6], f[7]
  if not due or not attempt or not ends or not suffix or not json then
    return {verdict = 'drop', record = record}
  end
  if ends > now then return {verdict = 'later', at = ends} end
  if due > now then return {verdict = 'later', at = due} end
  local env, tenant, team, user = string.match(suffix, '([^:]+):([^:]+):([^:]+):([^:]+):%x+$')
  -- On a cluster the scope pointer must share the record's slot (a record we wrote always does).
  if not env or (CLUSTER_TAGS and string.sub(suffix, 1, 10) ~= string.sub(key, 1, 10))
      or get_string(scope_prefix .. suffix) ~= key then
    return {verdict = 'drop', record = record}
  end
  if team == '-' then team = '' end
  -- The blob is read whole once (the claim returns it); its owner is read from its first bytes
  -- (a short copy: long strings are most of a claim's garbage), the whole only when that fails.
  local blob, blob_wrong = W.read_typed('GET', blob_prefix .. key)
  if blob_wrong or not blob then return {verdict = 'drop', record = record} end
  -- A sealed blob's owner is hidden and a claim holds no digests (it spans tenants): it is
  -- delivered with the scope's owner fields, and the claimer, who opens it, judges it.
  local judge = nil
  if is_sealed(blob) then
    judge = {env, tenant, team}
  else
    local owner = owner_of_head(string.sub(blob, 1, 512)) or owner_of_blob(blob)
    if not owner or wait_verdict(owner, env, tenant, team, user) == 'foreign' then
      return {verdict = 'drop', record = record}
    end
  end
  return {verdict = 'deliver', key = key, record = record, blob = blob, json = json, due = due,
          attempt = attempt + 1, user = user, judge = judge}
end
