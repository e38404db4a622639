select
    staff_code,
    class_code,
    class_name,
    start_date,
    end_date
from {{ source('online', 'online_staff_trainings') }}
