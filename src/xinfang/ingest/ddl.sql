-- Raw layer, load bookkeeping and the restricted schema for personal data.
-- Idempotent: applied before every load.
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS ops;
CREATE SCHEMA IF NOT EXISTS restricted;

-- One row per file (or API page, later) handed to the loader.
CREATE TABLE IF NOT EXISTS ops.load_batches (
    batch_id bigserial PRIMARY KEY,
    source text NOT NULL,
    file_name text NOT NULL,
    file_sha256 text NOT NULL,
    file_date date,
    status text NOT NULL CHECK (status IN ('loaded', 'failed')),
    source_rows integer,
    loaded_rows integer,
    quarantined_rows integer,
    notes text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT load_batches_reconciled CHECK (
        status <> 'loaded' OR source_rows = loaded_rows + quarantined_rows
    )
);
CREATE UNIQUE INDEX IF NOT EXISTS load_batches_one_load_per_file
    ON ops.load_batches (source, file_sha256) WHERE status = 'loaded';

-- Rows that failed validation: where they came from and why. The raw record
-- itself may hold personal data, so it lives in restricted.quarantine_records.
CREATE TABLE IF NOT EXISTS ops.quarantine (
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    row_number integer NOT NULL,
    source text NOT NULL,
    file_name text NOT NULL,
    field text NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (batch_id, row_number)
);

-- API batches are pages, not files: where in the window a quarantined record sat.
-- row_number stays the record's position in the whole window (unique per batch).
-- Checked first because ALTER TABLE takes an exclusive lock even when the column exists.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM information_schema.columns
        WHERE table_schema = 'ops' AND table_name = 'quarantine' AND column_name = 'page_row'
    ) THEN
        ALTER TABLE ops.quarantine ADD COLUMN IF NOT EXISTS page integer;
        ALTER TABLE ops.quarantine ADD COLUMN IF NOT EXISTS page_row integer;
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS restricted.quarantine_records (
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    row_number integer NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (batch_id, row_number)
);

-- Hotline work orders as exported, pseudonymised. Append-only: a later file
-- carrying a status update adds a row; staging keeps the latest per order.
CREATE TABLE IF NOT EXISTS raw.hotline_work_orders (
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    source_row integer NOT NULL,
    file_date date NOT NULL,
    work_order_no text NOT NULL,
    received_at timestamp NOT NULL,
    caller_key text NOT NULL,
    caller_name_masked text NOT NULL,
    caller_phone_masked text NOT NULL,
    matter_type text NOT NULL,
    category_name text NOT NULL,
    district_name text NOT NULL,
    town_name text NOT NULL,
    address_masked text NOT NULL,
    content text NOT NULL,
    handling_unit text NOT NULL,
    status text NOT NULL,
    closed_at timestamp,
    callback_result text,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, source_row)
);

CREATE TABLE IF NOT EXISTS restricted.hotline_callers (
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    source_row integer NOT NULL,
    work_order_no text NOT NULL,
    caller_key text NOT NULL,
    caller_name text NOT NULL,
    caller_phone text NOT NULL,
    address text NOT NULL,
    PRIMARY KEY (batch_id, source_row)
);

-- The province's pseudonym of each person the city knows by person_key: an
-- HMAC of the same identifier under the key the provincial bureau issues
-- (xinfang.extract.person_keys fills it from restricted). Keys only, no
-- identities, hence outside restricted; key_id says which province key made it.
CREATE TABLE IF NOT EXISTS raw.province_person_keys (
    person_key text PRIMARY KEY,
    province_person_key text NOT NULL,
    key_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Reporting users read marts only; nobody but the owner reads restricted.
REVOKE ALL ON SCHEMA restricted FROM PUBLIC;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'xinfang_reporting') THEN
        CREATE ROLE xinfang_reporting NOLOGIN;
    END IF;
END
$$;

-- High-water marks of incremental sources (API updated_since, database updated_at).
CREATE TABLE IF NOT EXISTS ops.watermarks (
    source text PRIMARY KEY,
    watermark timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
