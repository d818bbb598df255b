-- Prepended to every script (scripts.load_script): the sealing tail. A store that seals its blobs
-- (sealing.py) ends every call's ARGV with what its owner checks need (scripts.sealed_tail):
--   per owner the call may meet and per key id the store reads: key id, the owner's digest under
--   that key id, its verdict ('owner', 'live' or 'shared') and its pointer suffix ('' for none);
--   then how many such groups; then SEAL_MARK.
-- It is taken off ARGV here, so a script reads its own arguments as if there were none.
-- SEALED stays nil for a store that does not seal; else it maps key id .. '|' .. digest to
-- {verdict, suffix}, and SEALED_KIDS holds the key ids the call brought digests for.
local SEALED, SEALED_KIDS = nil, nil
if ARGV[#ARGV] == '\197greentic-sealed-v1' then
  local last = #ARGV
  local first = last - 1 - 4 * tonumber(ARGV[last - 1])
  SEALED, SEALED_KIDS = {}, {}
  for i = first, last - 2, 4 do
    SEALED[ARGV[i] .. '|' .. ARGV[i + 1]] = {ARGV[i + 2], ARGV[i + 3]}
    SEALED_KIDS[ARGV[i]] = true
  end
  for i = last, first, -1 do ARGV[i] = nil end
end

-- Whether a stored value is a sealed blob (sealing.MAGIC leads it; JSON never starts so).
local function is_sealed(raw)
  return string.byte(raw, 1) == 197
end

-- A sealed blob hides its owner: its header holds a keyed digest of it (bytes 4..19, sealing.py's
-- layout) and the key id that keys the digest (byte 20: its length, then the id). Its owner as
-- far as this call can tell: {sealed = true, verdict, suffix} from the digest the client sent for
-- that key id, verdict 'foreign' when the stored digest is none of those; nil when the header is
-- malformed or names a key id this call brought no digests for (unreadable here: corrupt), then
-- that key id ('' when malformed).
local function owner_of_sealed(text)
  if not SEALED or string.byte(text, 2) ~= 1 or #text < 20 then return nil, '' end
  -- Flags as sealing._parse reads them: compressed (1) and/or encrypted (2), and a key id
  -- exactly when encrypted.
  local flags, n = string.byte(text, 3), string.byte(text, 20)
  if flags < 1 or flags > 3 or (flags >= 2) ~= (n > 0) or #text < 20 + n then return nil, '' end
  local kid = string.sub(text, 21, 20 + n)
  if not SEALED_KIDS[kid] then return nil, kid end
  local hit = SEALED[kid .. '|' .. string.sub(text, 4, 19)]
  if hit then return {sealed = true, verdict = hit[1], suffix = hit[2]} end
  return {sealed = true, verdict = 'foreign', suffix = ''}
end
