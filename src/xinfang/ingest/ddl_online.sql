-- Online petition platform: current state, handling history, personal data.
-- Idempotent: applied before every load, after ddl.sql.

-- One row per petition (信访件), its latest state, upserted by the natural key.
-- A row changes only when a newer (or corrected) version arrives: batch_id and
-- last_loaded_at name the load that brought the version held.
CREATE TABLE IF NOT EXISTS raw.online_petitions (
    petition_no text PRIMARY KEY,
    channel text NOT NULL,
    registered_at timestamp NOT NULL,
    updated_at timestamp NOT NULL,
    status text NOT NULL,
    petitioner_key text NOT NULL,
    petitioner_phone_key text,
    petitioner_name_masked text NOT NULL,
    petitioner_id_masked text,
    petitioner_phone_masked text,
    petitioner_address_masked text NOT NULL,
    petitioner_region_code text,
    group_size integer NOT NULL,
    category_code text NOT NULL,
    purpose_code text NOT NULL,
    town_code text NOT NULL,
    grid_code text,
    title text NOT NULL,
    content text NOT NULL,
    hotline_work_order_no text,
    grid_event_id text,
    event_count integer NOT NULL,
    record_sha256 text NOT NULL,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    first_loaded_at timestamptz NOT NULL,
    last_loaded_at timestamptz NOT NULL
);

-- Added after the first release: the phone-based key that links petitioners to hotline callers.
ALTER TABLE raw.online_petitions ADD COLUMN IF NOT EXISTS petitioner_phone_key text;

-- Handling history: one row per (petition, event sequence number), insert-if-new,
-- so every status a petition went through stays visible.
CREATE TABLE IF NOT EXISTS raw.online_petition_events (
    petition_no text NOT NULL,
    seq integer NOT NULL,
    event_type text NOT NULL,
    event_at timestamp NOT NULL,
    unit_code text,
    from_unit_code text,
    rating text,
    note text NOT NULL,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    loaded_at timestamptz NOT NULL,
    PRIMARY KEY (petition_no, seq)
);

-- Added after the first release: the staff account (经办人, API field jbr) that handled the step;
-- null where the unit has no account on the platform. Appended, so column positions stay stable.
-- Checked first because ALTER TABLE takes an exclusive lock even when the column exists.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM information_schema.columns
        WHERE table_schema = 'raw' AND table_name = 'online_petition_events' AND column_name = 'handler_code'
    ) THEN
        ALTER TABLE raw.online_petition_events ADD COLUMN IF NOT EXISTS handler_code text;
    END IF;
END
$$;

-- Raw identifiers, keyed by petition and pseudonym; nobody but the owner reads this schema.
CREATE TABLE IF NOT EXISTS restricted.online_petitioners (
    petition_no text NOT NULL,
    person_key text NOT NULL,
    name text NOT NULL,
    id_number text,
    phone text,
    address text NOT NULL,
    region_code text,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    loaded_at timestamptz NOT NULL,
    PRIMARY KEY (petition_no, person_key)
);
