-- Online petition platform: staff accounts (人员, GET /api/v1/staff), their postings and training
-- records. Idempotent: applied before every staff load, after ddl.sql.

-- One row per staff account, its latest version, upserted by the staff code (the code events
-- carry as handler_code). A row changes only when a newer (or corrected) version arrives:
-- batch_id and last_loaded_at name the load that brought the version held. Pseudonymised:
-- person_key is the HMAC of the phone; name and phone are masked (raw values in restricted).
CREATE TABLE IF NOT EXISTS raw.online_staff (
    staff_code text PRIMARY KEY,
    staff_kind text NOT NULL,  -- 局机关, 乡镇专职, 乡镇兼职, 网格员
    unit_code text NOT NULL,  -- home unit (postings elsewhere are in raw.online_staff_postings)
    grid_code text,  -- grid workers only
    full_time boolean NOT NULL,
    in_post_from date NOT NULL,
    in_post_to date,  -- last day in post; null while in post
    promoted_on date,
    person_key text NOT NULL,
    name_masked text NOT NULL,
    phone_masked text NOT NULL,
    updated_at timestamp NOT NULL,  -- the platform's gxsj, bureau time
    posting_count integer NOT NULL,
    training_count integer NOT NULL,
    record_sha256 text NOT NULL,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    first_loaded_at timestamptz NOT NULL,
    last_loaded_at timestamptz NOT NULL
);

-- Postings (挂职: a bureau cadre sent to a town; 跟岗: a township cadre brought up to the
-- bureau) of the version held in raw.online_staff: replaced as a whole when a newer version
-- of the staff record is loaded. Dates are inclusive.
CREATE TABLE IF NOT EXISTS raw.online_staff_postings (
    staff_code text NOT NULL,
    posting_kind text NOT NULL,
    unit_code text NOT NULL,
    start_date date NOT NULL,
    end_date date NOT NULL,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    loaded_at timestamptz NOT NULL,
    PRIMARY KEY (staff_code, posting_kind, start_date)
);

-- Training classes attended, of the version held; replaced with it like the postings.
CREATE TABLE IF NOT EXISTS raw.online_staff_trainings (
    staff_code text NOT NULL,
    class_code text NOT NULL,
    class_name text NOT NULL,
    start_date date NOT NULL,
    end_date date NOT NULL,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    loaded_at timestamptz NOT NULL,
    PRIMARY KEY (staff_code, class_code)
);

-- Raw name and phone of each staff account; nobody but the owner reads this schema.
CREATE TABLE IF NOT EXISTS restricted.online_staff (
    staff_code text PRIMARY KEY,
    person_key text NOT NULL,
    name text NOT NULL,
    phone text NOT NULL,
    batch_id bigint NOT NULL REFERENCES ops.load_batches (batch_id),
    loaded_at timestamptz NOT NULL
);
