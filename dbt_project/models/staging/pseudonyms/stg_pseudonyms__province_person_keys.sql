select
    person_key,
    province_person_key,
    key_id as province_key_id
from {{ source('pseudonyms', 'province_person_keys') }}
