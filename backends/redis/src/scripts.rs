//! The Lua scripts: each contract operation is one script, one round trip,
//! atomic on the server (the TTL is set inside the same script).

use std::sync::LazyLock;

use redis::Script;

/// Lua shared by the scripts that meet documents someone else may have
/// written: the index keys a document's JSON implies under a term rule
/// (`list`, `field`, index key prefix; `list` empty = no rule). A value
/// that is not JSON, or not of that shape, implies none.
const DERIVED: &str = r#"
local function derived(value, list, field, prefix)
  local out = {}
  if list == '' or not value then return out end
  local ok, d = pcall(cjson.decode, value)
  if not ok or type(d) ~= 'table' or type(d[list]) ~= 'table' then return out end
  for _, item in ipairs(d[list]) do
    if type(item) == 'table' and type(item[field]) == 'string' then
      out[#out + 1] = prefix .. item[field]
    end
  end
  return out
end
-- whether a document's bytes are still what this library last wrote: the
-- metadata keeps their SHA-1 ('h') in namespaces with a rule
local function ours(value, meta_terms, meta_hash)
  return meta_terms and meta_hash and redis.sha1hex(value) == meta_hash
end
-- the index keys a live document implies: under a rule, unless its bytes
-- are still ours, what its JSON implies (the other system wrote or changed
-- it); else this library's metadata; nil when neither says
local function implied(value, meta_terms, meta_hash, list, field, prefix)
  if list ~= '' and not ours(value, meta_terms, meta_hash) then
    return derived(value, list, field, prefix)
  end
  if meta_terms then return cjson.decode(meta_terms) end
  return nil
end
-- the index keys a stored document had: this library's metadata's, and
-- what its JSON implies when the other system wrote or changed it
local function old_index_keys(doc, exists, meta_terms, meta_hash, list, field, prefix)
  local old = {}
  if meta_terms then
    for _, ik in ipairs(cjson.decode(meta_terms)) do old[ik] = true end
  end
  if exists and list ~= '' then
    local value = redis.call('GET', doc)
    if not ours(value, meta_terms, meta_hash) then
      for _, ik in ipairs(derived(value, list, field, prefix)) do old[ik] = true end
    end
  end
  return old
end
"#;

/// Lua shared by the scripts that keep index sets' expiry sets: the expiry
/// key of an index key, given the prefix of expiry keys (`Layout::expiry_arg`).
const EXPIRIES: &str = r#"
local function exp_key(ep, ik) return ep .. string.sub(ik, #ep - 2) end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{DERIVED}{EXPIRIES}{body}"))
}

/// KEYS: doc, meta, by_key, by_created, then every new index key.
/// ARGV: key, value, precondition (any|absent|present|version), expected
/// version, pttl (ms, 0 = none), new index keys as JSON (sorted, so equal
/// term sets compare equal as text), the namespace's term rule
/// (`Layout::term_rule`), then the value's fingerprint to keep in the
/// metadata (its SHA-1 in hex under a rule, else empty), computed by the
/// client: a value that enters Lua costs the server a pass over every
/// byte per use (Redis hashes every byte of each string it interns), and
/// `redis.sha1hex` would add a second pass; then the prefix of expiry keys
/// (`Layout::expiry_arg`, empty where none are kept).
/// Returns {status, version, created}; status ok|exists|missing|conflict.
///
/// Old index entries removed are those of the metadata and, under a rule,
/// those the old document's JSON implies, so a document the other system
/// wrote or changed loses exactly its entries.
///
/// Where expiry sets are kept, each index set's expiry set holds its
/// members with a TTL scored by the ms their document expires at (the
/// document is given that very time, `PXAT`): a write with a TTL scores
/// its key in each of its sets, one without removes it (where it may have
/// one), a dropped term takes its entry along, and an expiry set lives as
/// long as its index set, and a second more. There, a write that must
/// extend an index set's TTL extends it a quarter of its own TTL further
/// (at most a minute), so the writes after it with the same TTL extend
/// neither set.
pub static PUT: LazyLock<Script> = LazyLock::new(|| script(PUT_BODY));

const PUT_BODY: &str = r#"
local doc, meta, by_key, by_created = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local key, value, pre = ARGV[1], ARGV[2], ARGV[3]
local expected, pttl, terms = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local ep = ARGV[11]
local exists = redis.call('EXISTS', doc) == 1
local m = redis.call('HMGET', meta, 'v', 'c', 't', 'x', 'h')
local oldv = tonumber(m[1]) or 0
if pre == 'absent' and exists then return {'exists', oldv, 0} end
if (pre == 'present' or pre == 'version') and not exists then return {'missing', 0, 0} end
if pre == 'version' and oldv ~= expected then return {'conflict', oldv, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = math.max(now, oldv + 1)
-- when a document with a TTL expires, in ms: the document, its metadata
-- and its expiry entries all say this one time
local at = math.floor(now / 1000) + pttl
-- how far past `at` an index set's TTL goes when a write extends it:
-- where expiry sets are kept, a little, so the writes that follow with
-- the same TTL extend neither set (the seed's layout keeps its exact TTLs)
local slack = 0
if ep ~= '' then slack = math.min(math.floor(pttl / 4), 60000) end
-- a live document this library wrote (the seed's have no metadata)
local known = exists and m[2]
local created
if known then
  created = tonumber(m[2])
else
  -- unique and increasing within the namespace
  local last = redis.call('ZRANGE', by_created, -1, -1, 'WITHSCORES')
  created = now
  if last[2] then created = math.max(now, tonumber(last[2]) + 1) end
  v = math.max(v, created)
end
local had_ttl = m[4] == '1'
local new = {}
for i = 5, #KEYS do new[KEYS[i]] = true end
local stale = false
for ik in pairs(old_index_keys(doc, exists, m[3], m[5], ARGV[7], ARGV[8], ARGV[9])) do
  if not new[ik] then
    redis.call('SREM', ik, key)
    if ep ~= '' and had_ttl then redis.call('ZREM', exp_key(ep, ik), key) end
    stale = true
  end
end
local same_terms = known and m[3] == terms and not stale
-- metadata left by a document someone else deleted starts over
if m[1] and not known then redis.call('DEL', meta) end
if pttl > 0 then
  redis.call('SET', doc, value, 'PXAT', at)
  redis.call('HSET', meta, 'v', v, 'c', created, 't', terms, 'x', '1', 'h', ARGV[10])
  redis.call('PEXPIREAT', meta, at)
else
  redis.call('SET', doc, value)
  redis.call('HSET', meta, 'v', v, 'c', created, 't', terms, 'x', '0', 'h', ARGV[10])
  if had_ttl then redis.call('PERSIST', meta) end
end
for i = 5, #KEYS do
  local ik = KEYS[i]
  if not same_terms then redis.call('SADD', ik, key) end
  if pttl == 0 then
    -- a member without TTL: the set must outlive every TTL
    if had_ttl or not same_terms then
      local had_expiry = redis.call('PERSIST', ik) == 1
      if ep ~= '' then
        -- an entry left by a version of this key that had a TTL (one that
        -- expired leaves its entry behind, even if the set went with it)
        local ek = exp_key(ep, ik)
        redis.call('ZREM', ek, key)
        -- and the expiry set must now outlive its set, as long as it
        if had_expiry then redis.call('PERSIST', ek) end
      end
    end
  else
    local cur = redis.call('PTTL', ik)
    local extended = false
    if cur == -1 then
      -- persistent set: give it a TTL only if we are its only member
      extended = redis.call('SCARD', ik) == 1
    else
      extended = cur < pttl
    end
    if extended then
      cur = pttl + slack
      redis.call('PEXPIREAT', ik, at + slack)
    end
    if ep ~= '' then
      -- the expiry set outlives its index set: a new entry may have made
      -- it, and it follows each extension
      local ek = exp_key(ep, ik)
      if (redis.call('ZADD', ek, at, key) == 1 or extended) and cur >= 0 then
        redis.call('PEXPIRE', ek, cur + 1000)
      end
    end
  end
end
if not known then
  redis.call('ZADD', by_key, 0, key)
  redis.call('ZADD', by_created, created, key)
end
return {'ok', v, created}
"#;

/// KEYS: doc, meta, by_key, by_created. ARGV: key, precondition, expected,
/// the namespace's term rule, then the prefix of expiry keys (as [`PUT`]).
/// Returns {status, removed}; status ok|missing|conflict.
pub static REMOVE: LazyLock<Script> = LazyLock::new(|| script(REMOVE_BODY));

const REMOVE_BODY: &str = r#"
local doc, meta, by_key, by_created = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local key, pre, expected = ARGV[1], ARGV[2], tonumber(ARGV[3])
local exists = redis.call('EXISTS', doc) == 1
local m = redis.call('HMGET', meta, 'v', 't', 'h', 'x')
local oldv = tonumber(m[1]) or 0
if exists and pre == 'version' and oldv ~= expected then return {'conflict', oldv} end
-- remove the document, or the leftovers of one that expired
local ep = ARGV[7]
for ik in pairs(old_index_keys(doc, exists, m[2], m[3], ARGV[4], ARGV[5], ARGV[6])) do
  redis.call('SREM', ik, key)
  if ep ~= '' and m[4] == '1' then redis.call('ZREM', exp_key(ep, ik), key) end
end
redis.call('DEL', doc, meta)
redis.call('ZREM', by_key, key)
redis.call('ZREM', by_created, key)
if not exists then
  if pre == 'any' then return {'ok', 0} end
  return {'missing', 0}
end
return {'ok', 1}
"#;

/// What both transaction scripts share. `tx_writes(put_args,
/// removal_args)` reads the writes from ARGV[1] (one letter per write, `p`
/// put or `r` removal) and, per write, the number of its keys and its ARGV
/// (`put_args` for a put, `removal_args` for a removal); KEYS are every
/// write's keys in order.
/// `tx_check(calls, removal_pre)` checks every precondition (a put's at
/// ARGV 3 and 4, a removal's at `removal_pre` and the next) against the
/// write's first two keys, document and metadata: nil, or the failing
/// write's reply.
const TX_WRITES: &str = r#"
local function tx_writes(put_args, removal_args)
  local kinds = ARGV[1]
  local calls = {}
  local ki, ai = 1, 2
  for i = 1, #kinds do
    local kind = string.sub(kinds, i, i)
    local nk = tonumber(ARGV[ai])
    ai = ai + 1
    local na = removal_args
    if kind == 'p' then na = put_args end
    local k, a = {}, {}
    for j = 1, nk do k[j] = KEYS[ki + j - 1] end
    for j = 1, na do a[j] = ARGV[ai + j - 1] end
    ki, ai = ki + nk, ai + na
    calls[i] = {kind, k, a}
  end
  return calls
end
local function tx_check(calls, removal_pre)
  for i, c in ipairs(calls) do
    local k, a = c[2], c[3]
    local at = removal_pre
    if c[1] == 'p' then at = 3 end
    local pre, expected = a[at], tonumber(a[at + 1])
    local exists = redis.call('EXISTS', k[1]) == 1
    local oldv = tonumber(redis.call('HGET', k[2], 'v')) or 0
    if pre == 'absent' and exists then return {'exists', i, oldv, {}} end
    if (pre == 'present' or pre == 'version') and not exists then return {'missing', i, 0, {}} end
    if pre == 'version' and oldv ~= expected then return {'conflict', i, oldv, {}} end
  end
  return nil
end
"#;

/// A transaction: [`PUT`] and [`REMOVE`] as functions over their own KEYS
/// and ARGV, every precondition checked before any runs.
/// ARGV[1]: one letter per write, `p` put or `r` remove; then per write
/// the number of its keys and its ARGV (11 for a put, 7 for a removal);
/// KEYS: every write's keys in order.
/// Returns {status, write number (1-based), number, {outcomes}}: `ok` with
/// each put's version or each removal's 1/0, or the failing write's
/// exists|missing|conflict and its stored version.
pub static TRANSACT: LazyLock<Script> =
    LazyLock::new(|| transaction(PUT_BODY, REMOVE_BODY, TRANSACT_BODY));

/// A transaction script: [`TX_WRITES`], the single-write scripts `put`
/// and `remove` as the functions `put_one` and `remove_one` over their own
/// KEYS and ARGV, then `body`.
fn transaction(put: &str, remove: &str, body: &str) -> Script {
    script(&format!(
        "{TX_WRITES}local function put_one(KEYS, ARGV)\n{put}\nend\n\
         local function remove_one(KEYS, ARGV)\n{remove}\nend\n{body}"
    ))
}

const TRANSACT_BODY: &str = r#"
local calls = tx_writes(11, 7)
local failed = tx_check(calls, 2)
if failed then return failed end
local out = {}
for i, c in ipairs(calls) do
  local r
  if c[1] == 'p' then r = put_one(c[2], c[3]) else r = remove_one(c[2], c[3]) end
  out[i] = r[2]
end
return {'ok', 0, 0, out}
"#;

/// KEYS: doc, meta. ARGV: sliding TTL in ms (0 = none); with one, the key,
/// the prefix of expiry keys (as [`PUT`]), and '1' where the index sets
/// live in other slots (a cluster).
/// Returns nil, or {value, version, created, pttl}; with a sliding TTL, a
/// document that has a TTL gets it renewed, with its index sets and its
/// expiry entries. On a cluster the script cannot reach the index sets:
/// the reply's fifth element is then the index keys (JSON) the caller
/// renews, or '' for none.
///
/// Metadata outliving its document (the other system deleted it) is
/// removed; metadata whose TTL the other system's write left behind
/// follows the document's.
pub static GET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local value = redis.call('GET', KEYS[1])
if not value then
  redis.call('DEL', KEYS[2])
  return nil
end
local m = redis.call('HMGET', KEYS[2], 'v', 'c', 't')
local pttl = redis.call('PTTL', KEYS[1])
if m[1] then
  local mt = redis.call('PTTL', KEYS[2])
  if pttl < 0 and mt >= 0 then
    redis.call('PERSIST', KEYS[2])
    redis.call('HSET', KEYS[2], 'x', '0')
  elseif pttl >= 0 and (mt < 0 or math.abs(mt - pttl) > 1000) then
    redis.call('PEXPIRE', KEYS[2], pttl)
    redis.call('HSET', KEYS[2], 'x', '1')
  end
end
local sliding = tonumber(ARGV[1])
if sliding > 0 and pttl > 0 then
  local t = redis.call('TIME')
  local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + sliding
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('PEXPIREAT', KEYS[2], at)
  if m[3] and ARGV[4] == '1' then
    return {value, tonumber(m[1]) or 0, tonumber(m[2]) or 0, sliding, m[3]}
  elseif m[3] then
    local ep = ARGV[3]
    for _, ik in ipairs(cjson.decode(m[3])) do
      local cur = redis.call('PTTL', ik)
      if cur >= 0 and cur < sliding then
        redis.call('PEXPIREAT', ik, at)
        cur = sliding
      end
      if ep ~= '' then
        local ek = exp_key(ep, ik)
        if redis.call('ZADD', ek, 'XX', 'CH', at, ARGV[2]) == 1 and cur >= 0 then
          redis.call('PEXPIRE', ek, cur + 1000)
        end
      end
    end
  end
  pttl = sliding
end
if ARGV[4] == '1' then return {value, tonumber(m[1]) or 0, tonumber(m[2]) or 0, pttl, ''} end
return {value, tonumber(m[1]) or 0, tonumber(m[2]) or 0, pttl}
"#,
    )
});

/// KEYS: doc, meta. ARGV: the namespace's term rule. Returns {version,
/// index keys as JSON} for a live document (the keys its metadata holds
/// or, under the rule, what its JSON implies if the other system wrote
/// it), nil for none.
pub static TERMS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local value = redis.call('GET', KEYS[1])
if not value then return nil end
local m = redis.call('HMGET', KEYS[2], 'v', 't', 'h')
local keys = implied(value, m[2], m[3], ARGV[1], ARGV[2], ARGV[3]) or {}
if #keys == 0 then return {tonumber(m[1]) or 0, '[]'} end
return {tonumber(m[1]) or 0, cjson.encode(keys)}
"#,
    )
});

/// KEYS: the index set. ARGV: document key prefix, metadata key prefix,
/// then the term rule when the set is the rule's index (else empty), then
/// '1' to return the values too. Returns {created, key, created, key, ...}
/// (with '1': {created, key, value, ...}) for the members whose document
/// exists and carries the term, and removes the others from the set
/// (entries that outlived a document, or a term the document dropped),
/// checked here, atomically, so a concurrent writer is never undone.
/// The metadata says what a document carries while its bytes are still
/// what this library wrote (SHA-1 in the metadata); under a rule, a
/// document the other system wrote or changed is read for its terms.
pub static LOOKUP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local out = {}
local ik = KEYS[1]
-- the bytes are needed only to return them or to apply a rule; otherwise
-- whether the document exists is enough (no copy of every value)
local read = ARGV[6] == '1' or ARGV[3] ~= ''
for _, k in ipairs(redis.call('SMEMBERS', ik)) do
  local doc = ARGV[1] .. k
  local value
  if read then value = redis.call('GET', doc) else value = redis.call('EXISTS', doc) == 1 end
  local carries = value ~= false
  if carries then
    local m = redis.call('HMGET', ARGV[2] .. k, 'c', 't', 'h')
    local keys = implied(value, m[2], m[3], ARGV[3], ARGV[4], ARGV[5])
    if keys then
      carries = false
      for _, d in ipairs(keys) do
        if d == ik then carries = true break end
      end
    end
    if carries then
      out[#out + 1] = tonumber(m[1]) or 0
      out[#out + 1] = k
      if ARGV[6] == '1' then out[#out + 1] = value end
    end
  end
  if not carries then redis.call('SREM', ik, k) end
end
return out
"#,
    )
});

/// KEYS: the index set, its expiry set, the namespace's set of counted
/// index sets (`Layout::counted`). ARGV: document key prefix, metadata key
/// prefix, then the most expired entries one call sweeps (0 where the
/// namespace keeps no expiry sets). Returns how many members [`LOOKUP`]
/// would return, without a rule (namespaces where only this library
/// writes), reading no document.
///
/// A counted set answers with `SCARD` once the entries of its expiry set
/// whose time has passed are swept, each removing its key from the set:
/// an entry is the expiry of the last write that gave its key this term
/// with a TTL (a later write rescores or removes it), so a passed one is
/// a member whose document is gone. Work: O(log n) plus the entries
/// swept, each once. A set not counted yet, or one with more passed
/// entries than a call sweeps, is checked member by member as [`LOOKUP`]
/// checks (the metadata, where there is some, still lists the set;
/// without metadata, the document exists): one call per member, the
/// metadata expiring with its document, no term list decoded unless the
/// set's key needs JSON escaping. That check removes the stale members,
/// gives each live member with a TTL its expiry entry, and enters the set
/// among the counted ones.
pub static COUNT_TERM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local ik, ek, counted = KEYS[1], KEYS[2], KEYS[3]
local sweep = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- expired: the document's time is before now (Redis keeps a key through
-- its expiry's own ms)
local passed = '(' .. now
if sweep > 0 and redis.call('SISMEMBER', counted, ik) == 1 then
  local gone = redis.call('ZRANGEBYSCORE', ek, '-inf', passed, 'LIMIT', 0, sweep + 1)
  if #gone <= sweep then
    if #gone > 0 then
      redis.call('SREM', ik, unpack(gone))
      redis.call('ZREMRANGEBYSCORE', ek, '-inf', passed)
    end
    local n = redis.call('SCARD', ik)
    if n == 0 then redis.call('SREM', counted, ik) end
    return n
  end
end
-- the set's key as it appears in a metadata term list (JSON text written
-- by the client): a plain search finds it exactly unless JSON escapes it
local quoted = nil
if not string.find(ik, '[%c"\\]') then quoted = '"' .. ik .. '"' end
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', ik)) do
  -- metadata lives and expires with its document, so one call answers
  -- for most members; a document without metadata counts if it exists
  local m = redis.call('HMGET', ARGV[2] .. k, 't', 'x')
  local carries
  if not m[1] then
    carries = redis.call('EXISTS', ARGV[1] .. k) == 1
  elseif quoted then
    carries = string.find(m[1], quoted, 1, true) ~= nil
  else
    carries = false
    for _, d in ipairs(cjson.decode(m[1])) do
      if d == ik then carries = true break end
    end
  end
  if carries then
    n = n + 1
    if sweep > 0 and m[2] == '1' then
      -- rounded up: swept no sooner than the document expires
      local left = redis.call('PTTL', ARGV[1] .. k)
      if left > 0 then redis.call('ZADD', ek, 'NX', now + left + 1, k) end
    end
  else
    redis.call('SREM', ik, k)
    if sweep > 0 then redis.call('ZREM', ek, k) end
  end
end
if sweep > 0 then
  -- every stale member is gone from the set: so can its passed entries
  redis.call('ZREMRANGEBYSCORE', ek, '-inf', passed)
  local left = redis.call('PTTL', ik)
  if left > 0 then redis.call('PEXPIRE', ek, left + 1000) end
  if n > 0 then
    redis.call('SADD', counted, ik)
  else
    redis.call('SREM', counted, ik)
  end
end
return n
"#,
    )
});

/// Cluster mode, where only a document and its metadata share a slot.
/// KEYS: doc, meta. ARGV as [`PUT`]. Returns {status, version, created,
/// old index keys (JSON, metadata's and the rule's), known (1 if this
/// library wrote it before)}; the caller updates index and order sets
/// around it.
pub static PUT_DOC: LazyLock<Script> = LazyLock::new(|| script(PUT_DOC_BODY));

const PUT_DOC_BODY: &str = r#"
local doc, meta = KEYS[1], KEYS[2]
local value, pre = ARGV[2], ARGV[3]
local expected, pttl, terms = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local exists = redis.call('EXISTS', doc) == 1
local m = redis.call('HMGET', meta, 'v', 'c', 't', 'x', 'h')
local oldv = tonumber(m[1]) or 0
if pre == 'absent' and exists then return {'exists', oldv, 0, '', 0} end
if (pre == 'present' or pre == 'version') and not exists then return {'missing', 0, 0, '', 0} end
if pre == 'version' and oldv ~= expected then return {'conflict', oldv, 0, '', 0} end
local t = redis.call('TIME')
local v = math.max(tonumber(t[1]) * 1000000 + tonumber(t[2]), oldv + 1)
local known = exists and m[2]
local created = v
if known then created = tonumber(m[2]) end
local old = {}
for ik in pairs(old_index_keys(doc, exists, exists and m[3], m[5], ARGV[7], ARGV[8], ARGV[9])) do
  old[#old + 1] = ik
end
local old_terms = '[]'
if #old > 0 then old_terms = cjson.encode(old) end
if m[1] and not known then redis.call('DEL', meta) end
if pttl > 0 then
  redis.call('SET', doc, value, 'PX', pttl)
  redis.call('HSET', meta, 'v', v, 'c', created, 't', terms, 'x', '1', 'h', ARGV[10])
  redis.call('PEXPIRE', meta, pttl)
else
  redis.call('SET', doc, value)
  redis.call('HSET', meta, 'v', v, 'c', created, 't', terms, 'x', '0', 'h', ARGV[10])
  if m[4] == '1' then redis.call('PERSIST', meta) end
end
local k = 0
if known then k = 1 end
return {'ok', v, created, old_terms, k}
"#;

/// Cluster mode. KEYS: doc, meta. ARGV: precondition, expected, then the
/// term rule. Returns {status, removed, old index keys (JSON)}.
pub static REMOVE_DOC: LazyLock<Script> = LazyLock::new(|| script(REMOVE_DOC_BODY));

const REMOVE_DOC_BODY: &str = r#"
local doc, meta = KEYS[1], KEYS[2]
local pre, expected = ARGV[1], tonumber(ARGV[2])
local exists = redis.call('EXISTS', doc) == 1
local m = redis.call('HMGET', meta, 'v', 't', 'h')
local oldv = tonumber(m[1]) or 0
if exists and pre == 'version' and oldv ~= expected then return {'conflict', oldv, '[]'} end
local old = {}
for ik in pairs(old_index_keys(doc, exists, m[2], m[3], ARGV[3], ARGV[4], ARGV[5])) do
  old[#old + 1] = ik
end
local old_terms = '[]'
if #old > 0 then old_terms = cjson.encode(old) end
redis.call('DEL', doc, meta)
if not exists then
  if pre == 'any' then return {'ok', 0, old_terms} end
  return {'missing', 0, old_terms}
end
return {'ok', 1, old_terms}
"#;

/// Cluster mode: [`TRANSACT`] for writes whose keys share one hash slot.
/// KEYS: doc, meta per write. ARGV[1]: one letter per write, `p` (put) or
/// `r` (removal); then per write its number of keys (2) and its ARGV, as
/// [`PUT_DOC`] (10) or [`REMOVE_DOC`] (5) take them. Every precondition is checked before
/// anything is written. Returns {status, write number (1-based), number,
/// {replies}}: `ok` with each write's reply as {number, created, old index
/// keys (JSON), known} (a put's version, a removal's 1/0), or the failing
/// write's exists|missing|conflict and its stored version. The caller then
/// updates index and order sets as for single writes.
pub static TRANSACT_DOCS: LazyLock<Script> =
    LazyLock::new(|| transaction(PUT_DOC_BODY, REMOVE_DOC_BODY, TRANSACT_DOCS_BODY));

const TRANSACT_DOCS_BODY: &str = r#"
local calls = tx_writes(10, 5)
local failed = tx_check(calls, 1)
if failed then return failed end
local out = {}
for i, c in ipairs(calls) do
  if c[1] == 'p' then
    local r = put_one(c[2], c[3])
    out[i] = {r[2], r[3], r[4], r[5]}
  else
    local r = remove_one(c[2], c[3])
    out[i] = {r[2], 0, r[3], 0}
  end
end
return {'ok', 0, 0, out}
"#;

/// Cluster mode. KEYS: one index set. ARGV: key, pttl. Adds the key and
/// keeps the set alive at least as long as the document (as [`PUT`] does).
pub static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ik, pttl = KEYS[1], tonumber(ARGV[2])
redis.call('SADD', ik, ARGV[1])
local cur = redis.call('PTTL', ik)
if pttl == 0 then
  if cur >= 0 then redis.call('PERSIST', ik) end
elseif cur == -1 then
  if redis.call('SCARD', ik) == 1 then redis.call('PEXPIRE', ik, pttl) end
elseif cur < pttl then
  redis.call('PEXPIRE', ik, pttl)
end
return 1
"#,
    )
});

/// Cluster mode. KEYS: doc, meta. ARGV: the term rule when the lookup is
/// of the rule's index (else empty). Returns {exists, created or false,
/// index keys JSON or false}: what a lookup needs to verify a hint (under
/// a rule, the keys the document's JSON implies).
pub static CHECK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local m = redis.call('HMGET', KEYS[2], 'c', 't', 'h')
local value = redis.call('GET', KEYS[1])
if not value then return {0, m[1] or false, m[2] or false} end
if ARGV[1] ~= '' and not ours(value, m[2], m[3]) then
  local d = derived(value, ARGV[1], ARGV[2], ARGV[3])
  local keys = '[]'
  if #d > 0 then keys = cjson.encode(d) end
  return {1, m[1] or false, keys}
end
return {1, m[1] or false, m[2] or false}
"#,
    )
});

/// KEYS: doc, meta, by_key, by_created. ARGV: key. If the document is gone
/// (the other system deleted it, or it expired), removes its metadata and
/// order entries and returns 1; else changes nothing and returns 0.
pub static FORGET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"#,
    )
});
