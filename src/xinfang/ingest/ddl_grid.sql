-- Raw tables of the grid management system (网格化管理系统), loaded incrementally
-- from its database by xinfang.ingest.grid. Idempotent: applied before every load,
-- after ddl.sql (which creates the schemas, ops.load_batches and ops.quarantine).

-- Screening events (矛盾纠纷排查) in their current state: one row per event,
-- upserted by the natural key. Free text has phones, ID numbers and the names
-- of known grid workers masked; the worker is referenced by staff code only.
CREATE TABLE IF NOT EXISTS raw.grid_screening_events (
    event_id text PRIMARY KEY,
    grid_code text NOT NULL,
    worker_code text NOT NULL,
    reported_at timestamp NOT NULL,
    category_code text NOT NULL,
    description text NOT NULL,
    people_involved integer NOT NULL,
    status text NOT NULL,
    resolved_at timestamp,
    escalated_petition_no text,
    source_updated_at timestamp NOT NULL,  -- the source's updated_at, bureau time
    first_batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),  -- last batch that changed it
    loaded_at timestamptz NOT NULL DEFAULT now()
);

-- Every version of an event the loader has loaded: the status history survives
-- the upsert of the current state. Append-only, one row per loaded source row
-- (batch, row): the rows of a batch are exactly its loaded rows, which is what
-- the reconciliation counts, and no later load can move or rewrite them, so
-- every batch's ledger stays true for good. When the source corrects a row in
-- place (same status and updated_at, other resolved_at or petition number),
-- the correction is a row of its own; the latest batch's row is the one in
-- force (as in raw.grid_screening_events).
CREATE TABLE IF NOT EXISTS raw.grid_event_status_history (
    event_id text NOT NULL,
    status text NOT NULL,
    source_updated_at timestamp NOT NULL,
    resolved_at timestamp,
    escalated_petition_no text,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    source_row integer NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, source_row)
);

-- Databases created before that keyed the history by (event_id, status,
-- source_updated_at) and rewrote a row when a corrected version came (taking
-- it from the batch that loaded it). Re-key them; (batch_id, source_row) is
-- unique in the old rows too. Checked first: ALTER TABLE takes an exclusive lock.
DO $$
BEGIN
    IF EXISTS (
        SELECT FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = 'raw.grid_event_status_history'::regclass
          AND i.indisprimary AND a.attname = 'event_id'
    ) THEN
        ALTER TABLE raw.grid_event_status_history DROP CONSTRAINT grid_event_status_history_pkey;
        ALTER TABLE raw.grid_event_status_history ADD PRIMARY KEY (batch_id, source_row);
        -- The new primary key serves lookups by batch.
        DROP INDEX IF EXISTS raw.grid_event_status_history_batch;
    END IF;
END
$$;
CREATE INDEX IF NOT EXISTS grid_event_status_history_event
    ON raw.grid_event_status_history (event_id, source_updated_at);

-- Reference snapshots, upserted by code when a row differs from what is stored.
CREATE TABLE IF NOT EXISTS raw.grid_grids (
    grid_code text PRIMARY KEY,
    grid_name text NOT NULL,
    community_code text,
    community_name text,
    town_code text NOT NULL,
    worker_code text,
    source_updated_at timestamp NOT NULL,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    loaded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS raw.grid_workers (
    worker_code text PRIMARY KEY,
    worker_key text NOT NULL,  -- HMAC pseudonym of the phone (or the code when there is none)
    name_masked text NOT NULL,
    phone_masked text NOT NULL,
    grid_code text,
    unit_code text,
    full_time boolean,
    hired_on date,
    left_on date,
    source_updated_at timestamp NOT NULL,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    loaded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS restricted.grid_workers (
    worker_code text PRIMARY KEY,
    worker_key text NOT NULL,
    name text NOT NULL,
    phone text NOT NULL,
    source_updated_at timestamp NOT NULL,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id)
);

-- Keyed fingerprints of every event row version already handled (loaded or
-- quarantined): rows re-read in the watermark overlap are recognised and left
-- out, so re-running a window records nothing new.
CREATE TABLE IF NOT EXISTS ops.grid_seen_versions (
    row_fingerprint text PRIMARY KEY,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    row_number integer NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('loaded', 'quarantined'))
);
