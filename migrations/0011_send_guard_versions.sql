-- The send guard without a lock held across round trips (handlers/sends.py, adapters/db/sends.py).
--
-- Before: the guard's read took a session advisory lock on the fan (send_guard_read), held
-- through the reservation and freed by the pool's reset: a check was two round trips even when
-- it refused. Now it is optimistic: each fan has a version, read in the same snapshot as the
-- fan's sends; the reservation is one statement that moves the version from the one read to
-- the next and inserts the rows only if it could. A concurrent sender that reserved in between
-- moved it first, so the late one inserts nothing and checks again, seeing the new rows (the
-- version row's lock serialises the two: READ COMMITTED re-evaluates the WHERE against the row
-- the other committed). A refused check is one round trip; an allowed one two.

-- Bookkeeping, not a projection: not derived from events, not compared by replay --rebuild,
-- carried over unchanged on --swap (rebuild.NOT_COMPARED).
CREATE TABLE send_guard_versions (
    creator  text   NOT NULL,
    platform text   NOT NULL,
    fan_id   text   NOT NULL,
    version  bigint NOT NULL CHECK (version > 0),  -- no row = 0: the first reservation inserts 1
    PRIMARY KEY (creator, platform, fan_id)
);

DROP FUNCTION send_guard_read(bigint, uuid[], text, text, text);

-- What the guard reads, in one snapshot: the fan's version (0 when none yet) on every row, a
-- row with kind NULL when there is nothing else, then send_guard_rows (0010). STABLE plpgsql:
-- both statements see the calling query's snapshot. Generic plans: the index plans do not
-- depend on the values, and re-planning the read each call (what `auto` does here, the array
-- confuses its cost comparison) costs more than running it.
CREATE FUNCTION send_guard_snapshot(ids uuid[], p_creator text, p_platform text, p_fan text)
RETURNS TABLE (version bigint, kind text, id uuid, attempt_id uuid, content_id uuid, phash text, status text,
               reserved_at timestamptz, sent_at timestamptz, message_uuid text, price_cents integer,
               generation integer, creator text, platform text, fanvue_media_uuid text)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v bigint;
BEGIN
    SELECT g.version INTO v FROM send_guard_versions g
    WHERE g.creator = p_creator AND g.platform = p_platform AND g.fan_id = p_fan;
    RETURN QUERY SELECT COALESCE(v, 0), r.* FROM (SELECT 1) one
                 LEFT JOIN send_guard_rows(ids, p_creator, p_platform, p_fan) r ON true;
END
$$;
