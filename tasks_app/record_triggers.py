"""The PostgreSQL triggers that keep TaskCount in step with TaskRecord, as the migrations install them.

Every statement that inserts, deletes or changes the state, queue or owner of task records adds
its grouped +/- deltas to TaskCount in the same transaction (TaskCount's docstring). The SQL is
here, beside tasks_app.records, and the migrations call it: 0002 the first row trigger, 0003 the
statement triggers with owner counts, 0005 the owner counts spread over slots, 0008 64 slots. A trigger is part
of the schema at one migration, so its table and column names are written out, not read from the
models: a change of definition (or a renamed column it names) is a new migration that installs a
new text, and the earlier texts stay as they were. COUNT_FUNCTIONS is what the database runs today
(tests/tasks_app/test_records.py checks the installed functions against it).
"""

# --- 0002: one row trigger, global counts over 8 slots -----------------------------------------------
# The two updates of a state change run in a fixed (state) order, so concurrent changes cannot deadlock.
COUNT_TRIGGER = """
CREATE OR REPLACE FUNCTION tasks_app_taskcount_add(q varchar, s varchar, delta integer) RETURNS void AS $$
BEGIN
    INSERT INTO tasks_app_taskcount (queue, state, slot, count)
    VALUES (q, s, floor(random() * 8)::int, delta)
    ON CONFLICT (queue, state, slot) DO UPDATE SET count = tasks_app_taskcount.count + EXCLUDED.count;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tasks_app_taskrecord_count() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM tasks_app_taskcount_add(NEW.queue, NEW.state, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM tasks_app_taskcount_add(OLD.queue, OLD.state, -1);
    ELSIF OLD.state IS DISTINCT FROM NEW.state OR OLD.queue IS DISTINCT FROM NEW.queue THEN
        IF OLD.state <= NEW.state THEN
            PERFORM tasks_app_taskcount_add(OLD.queue, OLD.state, -1);
            PERFORM tasks_app_taskcount_add(NEW.queue, NEW.state, 1);
        ELSE
            PERFORM tasks_app_taskcount_add(NEW.queue, NEW.state, 1);
            PERFORM tasks_app_taskcount_add(OLD.queue, OLD.state, -1);
        END IF;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tasks_app_taskrecord_truncated() RETURNS trigger AS $$
BEGIN
    DELETE FROM tasks_app_taskcount;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER tasks_app_taskrecord_count
AFTER INSERT OR UPDATE OF state, queue OR DELETE ON tasks_app_taskrecord
FOR EACH ROW EXECUTE FUNCTION tasks_app_taskrecord_count();

CREATE TRIGGER tasks_app_taskrecord_truncated
AFTER TRUNCATE ON tasks_app_taskrecord
FOR EACH STATEMENT EXECUTE FUNCTION tasks_app_taskrecord_truncated();

INSERT INTO tasks_app_taskcount (queue, state, slot, count)
SELECT queue, state, 0, count(*) FROM tasks_app_taskrecord GROUP BY queue, state;
"""

DROP_COUNT_TRIGGER = """
DROP TRIGGER IF EXISTS tasks_app_taskrecord_count ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS tasks_app_taskrecord_truncated ON tasks_app_taskrecord;
DROP FUNCTION IF EXISTS tasks_app_taskrecord_count();
DROP FUNCTION IF EXISTS tasks_app_taskrecord_truncated();
DROP FUNCTION IF EXISTS tasks_app_taskcount_add(varchar, varchar, integer);
"""

# --- 0003: statement triggers with transition tables, counts per owner too ----------------------------
# Row triggers fire once per row, each updating the same few counter rows: a bulk insert of a million
# records in one transaction piles a million row versions on them. Statement triggers add one grouped
# delta per statement, in (owner, queue, state) order so concurrent writers cannot deadlock.
DROP_ROW_TRIGGER = """
DROP TRIGGER IF EXISTS tasks_app_taskrecord_count ON tasks_app_taskrecord;
DROP FUNCTION IF EXISTS tasks_app_taskrecord_count();
"""

ROW_TRIGGER = """
CREATE OR REPLACE FUNCTION tasks_app_taskrecord_count() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM tasks_app_taskcount_add(NEW.queue, NEW.state, 1);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM tasks_app_taskcount_add(OLD.queue, OLD.state, -1);
    ELSIF OLD.state IS DISTINCT FROM NEW.state OR OLD.queue IS DISTINCT FROM NEW.queue THEN
        PERFORM tasks_app_taskcount_add(OLD.queue, OLD.state, -1);
        PERFORM tasks_app_taskcount_add(NEW.queue, NEW.state, 1);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER tasks_app_taskrecord_count
AFTER INSERT OR UPDATE OF state, queue OR DELETE ON tasks_app_taskrecord
FOR EACH ROW EXECUTE FUNCTION tasks_app_taskrecord_count();
"""

# deltas(owner, queue, state, d) -> upsert, global rows spread over 8 slots, owner rows in slot 0.
APPLY = """
INSERT INTO tasks_app_taskcount (owner, queue, state, slot, count)
SELECT owner, queue, state, CASE WHEN owner = -1 THEN floor(random() * 8)::int ELSE 0 END, sum(d)
FROM deltas GROUP BY owner, queue, state HAVING sum(d) <> 0 ORDER BY 1, 2, 3
ON CONFLICT (owner, queue, state, slot) DO UPDATE SET count = tasks_app_taskcount.count + EXCLUDED.count;
"""

STATEMENT_TRIGGERS = f"""
CREATE OR REPLACE FUNCTION tasks_app_taskcount_on_insert() RETURNS trigger AS $$
BEGIN
    WITH deltas AS (
        SELECT -1::bigint AS owner, queue, state, 1 AS d FROM new_rows
        UNION ALL SELECT submitted_by_id, queue, state, 1 FROM new_rows WHERE submitted_by_id IS NOT NULL
    ) {APPLY}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tasks_app_taskcount_on_delete() RETURNS trigger AS $$
BEGIN
    WITH deltas AS (
        SELECT -1::bigint AS owner, queue, state, -1 AS d FROM old_rows
        UNION ALL SELECT submitted_by_id, queue, state, -1 FROM old_rows WHERE submitted_by_id IS NOT NULL
    ) {APPLY}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tasks_app_taskcount_on_update() RETURNS trigger AS $$
BEGIN
    WITH changed AS (
        SELECT o.submitted_by_id AS o_owner, o.queue AS o_queue, o.state AS o_state,
               n.submitted_by_id AS n_owner, n.queue AS n_queue, n.state AS n_state
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.state, o.queue, o.submitted_by_id) IS DISTINCT FROM (n.state, n.queue, n.submitted_by_id)
    ), deltas AS (
        SELECT -1::bigint AS owner, o_queue AS queue, o_state AS state, -1 AS d FROM changed
        UNION ALL SELECT -1, n_queue, n_state, 1 FROM changed
        UNION ALL SELECT o_owner, o_queue, o_state, -1 FROM changed WHERE o_owner IS NOT NULL
        UNION ALL SELECT n_owner, n_queue, n_state, 1 FROM changed WHERE n_owner IS NOT NULL
    ) {APPLY}
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER tasks_app_taskrecord_count_insert AFTER INSERT ON tasks_app_taskrecord
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tasks_app_taskcount_on_insert();
CREATE TRIGGER tasks_app_taskrecord_count_update AFTER UPDATE ON tasks_app_taskrecord
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION tasks_app_taskcount_on_update();
CREATE TRIGGER tasks_app_taskrecord_count_delete AFTER DELETE ON tasks_app_taskrecord
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tasks_app_taskcount_on_delete();

INSERT INTO tasks_app_taskcount (owner, queue, state, slot, count)
SELECT submitted_by_id, queue, state, 0, count(*) FROM tasks_app_taskrecord
WHERE submitted_by_id IS NOT NULL GROUP BY submitted_by_id, queue, state;
"""

DROP_STATEMENT_TRIGGERS = """
DROP TRIGGER IF EXISTS tasks_app_taskrecord_count_insert ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS tasks_app_taskrecord_count_update ON tasks_app_taskrecord;
DROP TRIGGER IF EXISTS tasks_app_taskrecord_count_delete ON tasks_app_taskrecord;
DROP FUNCTION IF EXISTS tasks_app_taskcount_on_insert();
DROP FUNCTION IF EXISTS tasks_app_taskcount_on_update();
DROP FUNCTION IF EXISTS tasks_app_taskcount_on_delete();
DELETE FROM tasks_app_taskcount WHERE owner <> -1;
"""

# --- 0005: each owner's counts spread over the 8 slots too ----------------------------------------------
# The three functions of 0003 (the triggers that call them stay), with the slot chosen at random for every row.
COUNT_FUNCTIONS_0003 = STATEMENT_TRIGGERS.split("CREATE TRIGGER", maxsplit=1)[0]
COUNT_FUNCTIONS_0005 = COUNT_FUNCTIONS_0003.replace(
    "CASE WHEN owner = -1 THEN floor(random() * 8)::int ELSE 0 END", "floor(random() * 8)::int"
)
assert COUNT_FUNCTIONS_0005 != COUNT_FUNCTIONS_0003

# --- 0008: 64 slots -------------------------------------------------------------------------------------
# A count row's lock is held until the inserting transaction commits, and a commit waits for the disk
# (several ms). With 8 slots, 8 concurrent submitters (gunicorn's 4 x 2 threads) find another on the
# global row, or on their owner's row, in 1 - (7/8)^7 = 61% of their publishes, and then wait for its
# commit; with 64 slots in 1 - (63/64)^7 = 10%. Readers sum over the slots (a few hundred index rows).
COUNT_SLOTS = 64
COUNT_FUNCTIONS = COUNT_FUNCTIONS_0005.replace("floor(random() * 8)::int", f"floor(random() * {COUNT_SLOTS})::int")
assert COUNT_FUNCTIONS != COUNT_FUNCTIONS_0005
