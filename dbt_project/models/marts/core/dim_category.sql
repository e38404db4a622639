-- Content categories with their path: top level (national 602xxx) and sub-category.
select
    child.category_code,
    child.category_name,
    child.level as category_level,
    coalesce(parent.category_code, child.category_code) as top_category_code,
    coalesce(parent.category_name, child.category_name) as top_category_name,
    coalesce(parent.category_name || ' / ', '') || child.category_name as category_path
from {{ ref('categories') }} as child
left join {{ ref('categories') }} as parent
    on child.parent_code = parent.category_code
