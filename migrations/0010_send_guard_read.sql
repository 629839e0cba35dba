-- The send guard's read (handlers/sends.py, adapters/db/sends.py), so a check is one round trip.

-- What the guard reads, as flat rows: kind 'c' = a content asked for, kind 'h' = one of the
-- fan's live sends (reserved, sent, unknown) with its content's perceptual hash. Plain SQL,
-- STABLE: the planner inlines it into the calling query (its plan shows in EXPLAIN); PARALLEL
-- SAFE, or a query using it (suggest-ppv's candidates) could not use parallel workers at all.
CREATE FUNCTION send_guard_rows(ids uuid[], p_creator text, p_platform text, p_fan text)
RETURNS TABLE (kind text, id uuid, attempt_id uuid, content_id uuid, phash text, status text,
               reserved_at timestamptz, sent_at timestamptz, message_uuid text, price_cents integer,
               generation integer, creator text, platform text, fanvue_media_uuid text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT 'c', c.id, NULL::uuid, c.id, c.phash, c.status, NULL::timestamptz, NULL::timestamptz, NULL::text,
           c.price_cents, NULL::integer, c.creator, c.platform, c.fanvue_media_uuid
    FROM content c WHERE c.id = ANY(ids)
    UNION ALL
    SELECT 'h', s.id, s.attempt_id, s.content_id, c.phash, s.status, s.reserved_at, s.sent_at, s.message_uuid,
           s.price_cents, s.generation, NULL, NULL, NULL
    FROM sends s LEFT JOIN content c ON c.id = s.content_id
    WHERE s.creator = p_creator AND s.platform = p_platform AND s.fan_id = p_fan AND s.status <> 'failed'
$$;

-- Take the fan's advisory lock, THEN read. The lock is session-level: it outlives this
-- statement and is held until the sender's connection goes back to the pool (the pool's reset
-- runs pg_advisory_unlock_all), i.e. through the reservation that follows. VOLATILE plpgsql on
-- purpose: in READ COMMITTED each statement of a volatile function takes a fresh snapshot, so
-- the read after a lock wait sees the sends a concurrent sender committed meanwhile. One plain
-- statement doing both would not: its snapshot is taken before it waits for the lock.
-- Generic plans: the index plans do not depend on the values, and re-planning the read each
-- call (what `auto` does here, the array confuses its cost comparison) costs more than running it.
CREATE FUNCTION send_guard_read(lock_key bigint, ids uuid[], p_creator text, p_platform text, p_fan text)
RETURNS TABLE (kind text, id uuid, attempt_id uuid, content_id uuid, phash text, status text,
               reserved_at timestamptz, sent_at timestamptz, message_uuid text, price_cents integer,
               generation integer, creator text, platform text, fanvue_media_uuid text)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        -- Under REPEATABLE READ / SERIALIZABLE the snapshot predates the lock wait.
        RAISE EXCEPTION 'send_guard_read needs READ COMMITTED, not %', current_setting('transaction_isolation');
    END IF;
    PERFORM pg_advisory_lock(lock_key);
    RETURN QUERY SELECT * FROM send_guard_rows(ids, p_creator, p_platform, p_fan);
END
$$;
