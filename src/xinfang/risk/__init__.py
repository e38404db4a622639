"""Risk analysis of petitions: category tagging of free text (`xinfang.risk.tagging`).

`xinfang.risk.labelled_csv` reads labelled CSV files with errors that name the
file, row and column; `xinfang.risk.tag_eval` is the body of the
`xinfang risk tag-eval` command.
"""
